# odoopbx-agent container image.
#
#   docker build --build-arg VERSION="$(git describe --tags --always --dirty)" -t odoopbx-agent .
#
# Run it on the Asterisk host's network (AMI is on loopback), with the config, the state
# and the recordings mounted, as the host's asterisk user so file ownership matches:
#
#   docker run -d --name odoopbx-agent --network host \
#     -v /etc/odoopbx:/etc/odoopbx:ro -v /var/lib/odoopbx-agent:/var/lib/odoopbx-agent \
#     -v /var/spool/asterisk:/var/spool/asterisk \
#     --user "$(id -u asterisk):$(id -g asterisk)" odoopbx-agent
#
# IP bans (security_enabled) need nftables in the HOST's network namespace: add
# `--cap-add NET_ADMIN --network host`. Docker puts an added capability only in the bounding and
# inheritable sets of a non-root user, so the bans also need `--user 0`; without the capability
# the agent keeps running and reports security as available: false.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first, so source edits do not invalidate the download layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=0.0.0-dev
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/odoopbx/odoopbx/internal/version.Version=${VERSION}" \
      -o /out/odoopbx-agent ./cmd/odoopbx-agent \
 && /out/odoopbx-agent version

FROM debian:12-slim
# ca-certificates: Odoo's certificate is verified against the system roots.
# lame: MP3 conversion of recordings (files.mp3_encoder); optional, WAV otherwise.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates lame \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system asterisk \
 && useradd --system --gid asterisk --home-dir /var/lib/odoopbx-agent --no-create-home \
      --shell /usr/sbin/nologin asterisk \
 && install -d -m 0750 -o asterisk -g asterisk /var/lib/odoopbx-agent \
 && install -d -m 0750 -o root -g asterisk /etc/odoopbx
COPY --from=build /out/odoopbx-agent /usr/bin/odoopbx-agent
USER asterisk
VOLUME ["/var/lib/odoopbx-agent"]
# 48000 job API (Odoo -> agent), 48002 status page and metrics (off by default, loopback).
# With --network host these are the host's ports.
EXPOSE 48000
ENTRYPOINT ["/usr/bin/odoopbx-agent"]
CMD ["run", "--config", "/etc/odoopbx/agent.yaml"]
