# OdooPBX build targets. `make help` lists them.

GO      ?= go
BINARY  := bin/odoopbx-agent
DIST    := dist
# The version as git describes it (v1.2.3, v1.2.3-4-gabc1234-dirty, or a bare hash without tags).
# The .deb gets the Debian form of it (1.2.3+4.gabc1234.dirty), computed by deploy/mkdeb.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.0.0-dev)
ifeq ($(strip $(VERSION)),)
VERSION := 0.0.0-dev
endif
GOARCH  ?= $(shell $(GO) env GOARCH)
LDFLAGS := -s -w -X github.com/odoopbx/odoopbx/internal/version.Version=$(VERSION)
# Benchmarks are slow on a shared machine: narrow them with BENCH=... and PKG=...
BENCH   ?= .
PKG     ?= ./...

.PHONY: all build test vet fmt-check race addons-test demo deb bench clean help

all: build

## build: static binary bin/odoopbx-agent, version stamped from git describe
build:
	@mkdir -p $(dir $(BINARY))
	CGO_ENABLED=0 GOARCH=$(GOARCH) $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BINARY) ./cmd/odoopbx-agent

## test: go vet, gofmt check, go test -race, then the Odoo addon tests if scripts/test-addons.sh exists
test: vet fmt-check race addons-test

vet:
	$(GO) vet ./...

fmt-check:
	@unformatted="$$(gofmt -l . 2>&1)"; \
	if [ -n "$$unformatted" ]; then \
		echo "gofmt: these files are not formatted or do not parse (run gofmt -w on them):"; \
		echo "$$unformatted"; \
		exit 1; \
	fi

race:
	$(GO) test -race ./...

addons-test:
	@if [ -x scripts/test-addons.sh ]; then \
		scripts/test-addons.sh; \
	elif [ -f scripts/test-addons.sh ]; then \
		sh scripts/test-addons.sh; \
	else \
		echo "scripts/test-addons.sh not found: skipping the Odoo addon tests"; \
	fi

## demo: run the self-contained demo (fake Asterisk and Odoo in one process)
demo:
	$(GO) run ./cmd/odoopbx-agent demo

## deb: dist/odoopbx-agent_<debian-version>_<arch>.deb (nfpm as a library, see deploy/)
# mkdeb runs on the build host: clear GOOS/GOARCH for it, so `make deb GOARCH=arm64` cross-builds
# only the agent.
deb: build
	GOOS= GOARCH= $(GO) run ./deploy/mkdeb -config deploy/nfpm.yaml -version "$(VERSION)" -arch $(GOARCH) -binary $(BINARY) -target $(DIST)

## bench: go test -bench (narrow with BENCH=Name PKG=./internal/ami/...)
bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem $(PKG)

## clean: remove bin/ and dist/
clean:
	rm -rf bin $(DIST)

## help: this list
help:
	@echo "Targets:"
	@sed -n 's/^## \([a-z-]*\): \(.*\)/  \1\t\2/p' $(MAKEFILE_LIST) | expand -t 14
	@echo
	@echo "Variables: VERSION=$(VERSION) GOARCH=$(GOARCH)"
