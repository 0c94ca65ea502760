package initcmd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/odoopbx/odoopbx/internal/version"
)

// HandshakeRequest is what the agent tells Odoo in the one-time handshake (contract §5.4).
type HandshakeRequest struct {
	OdooURL    string
	DB         string
	ServerID   int
	SystemName string
	AgentURL   string
	CertSHA256 string
}

// HandshakeResult is Odoo's 200 answer (contract §5.5).
type HandshakeResult struct {
	AgentToken   string `json:"agent_token"`
	OdooUser     string `json:"odoo_user"`
	OdooPassword string `json:"odoo_password"`
	OdooDB       string `json:"odoo_db"`
	ServerID     int    `json:"server_id"`
}

// HandshakeError is a refusal by Odoo or a failure to reach it; Fix says what the admin does next.
type HandshakeError struct {
	Status int    // HTTP status, 0 when no answer came
	Code   string // Odoo's "error" value, when it sent one
	Reason string
	Fix    string
}

func (e *HandshakeError) Error() string {
	if e.Fix == "" {
		return e.Reason
	}
	return e.Reason + ". " + e.Fix
}

// maxHandshakeBody bounds what init reads from Odoo's answer.
const maxHandshakeBody = 1 << 20

// HandshakeURL builds GET {odoo_url}/asterisk_plus/agent with its query parameters.
func HandshakeURL(req HandshakeRequest) (string, error) {
	base, err := parseOdooURL(req.OdooURL)
	if err != nil {
		return "", err
	}
	q := url.Values{}
	if req.DB != "" {
		q.Set("db", req.DB)
	}
	if req.ServerID > 0 {
		q.Set("server_id", strconv.Itoa(req.ServerID))
	}
	if req.SystemName != "" {
		q.Set("system_name", req.SystemName)
	}
	if req.AgentURL != "" {
		q.Set("agent_url", req.AgentURL)
	}
	if req.CertSHA256 != "" {
		q.Set("cert_sha256", req.CertSHA256)
	}
	q.Set("version", version.Version)
	u := *base
	u.Path = strings.TrimSuffix(u.Path, "/") + "/asterisk_plus/agent"
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// parseOdooURL accepts http(s)://host[:port][/prefix] and nothing else.
func parseOdooURL(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return nil, fmt.Errorf("odoo url %q: %v", raw, err)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return nil, fmt.Errorf("odoo url %q must start with https:// (or http:// for an Odoo on this host)", raw)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("odoo url %q has no host", raw)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("odoo url %q must be just scheme, host and an optional path", raw)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return u, nil
}

// isLoopbackHost says whether host (no port) names this machine.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// odooHTTPClient verifies Odoo's certificate against the system roots plus caFile, unless insecure.
func odooHTTPClient(caFile string, insecure bool) (*http.Client, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-file %s holds no PEM certificate", caFile)
		}
		tlsCfg.RootCAs = pool
	}
	tlsCfg.InsecureSkipVerify = insecure
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
	}
	return &http.Client{Transport: transport, Timeout: 60 * time.Second}, nil
}

// Handshake performs GET /asterisk_plus/agent and interprets every answer of contract §5.5.
func Handshake(ctx context.Context, client *http.Client, req HandshakeRequest) (HandshakeResult, error) {
	target, err := HandshakeURL(req)
	if err != nil {
		return HandshakeResult{}, &HandshakeError{Reason: err.Error()}
	}
	httpReq, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return HandshakeResult{}, &HandshakeError{Reason: err.Error()}
	}
	httpReq.Header.Set("User-Agent", version.UserAgent())
	httpReq.Header.Set("Accept", "application/json")
	resp, err := client.Do(httpReq)
	if err != nil {
		return HandshakeResult{}, transportError(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxHandshakeBody))
	if err != nil {
		return HandshakeResult{}, &HandshakeError{Status: resp.StatusCode, Reason: "reading Odoo's answer: " + err.Error(), Fix: "re-run init"}
	}
	if resp.StatusCode == http.StatusOK {
		return parseHandshakeOK(body)
	}
	return HandshakeResult{}, refusal(resp, body)
}

func parseHandshakeOK(body []byte) (HandshakeResult, error) {
	var res HandshakeResult
	if err := json.Unmarshal(body, &res); err != nil {
		return HandshakeResult{}, &HandshakeError{Status: 200, Reason: "Odoo answered 200 but not with JSON (" + snippet(body) + ")",
			Fix: "check that the URL points at Odoo itself, not a login page or proxy"}
	}
	var missing []string
	if res.AgentToken == "" {
		missing = append(missing, "agent_token")
	}
	if res.OdooUser == "" {
		missing = append(missing, "odoo_user")
	}
	if res.OdooPassword == "" {
		missing = append(missing, "odoo_password")
	}
	if res.OdooDB == "" {
		missing = append(missing, "odoo_db")
	}
	if len(missing) > 0 {
		return HandshakeResult{}, &HandshakeError{Status: 200, Reason: "Odoo's answer lacks " + strings.Join(missing, ", "),
			Fix: "update the asterisk_plus addon, click \"Reset agent\" on the server form and re-run init"}
	}
	return res, nil
}

func refusal(resp *http.Response, body []byte) error {
	var payload struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(body, &payload)
	e := &HandshakeError{Status: resp.StatusCode, Code: payload.Error}
	switch resp.StatusCode {
	case http.StatusForbidden:
		switch payload.Error {
		case "already_initialized":
			e.Reason = "Odoo says this PBX server already has an initialized agent (403 already_initialized)"
			e.Fix = "If this is a reinstall, open PBX > Servers in Odoo, click \"Reset agent\" on the server (it invalidates the old token and allows initialization for 1 hour), then re-run init"
		case "not_permitted":
			e.Reason = "Odoo does not allow agent initialization right now (403 not_permitted)"
			e.Fix = "Open PBX > Servers in Odoo, click \"Allow agent initialization\" on the server (valid for 1 hour), then re-run init"
		default:
			e.Reason = "Odoo refused the handshake (403 " + orSnippet(payload.Error, body) + ")"
			e.Fix = "Check that a proxy or firewall in front of Odoo allows /asterisk_plus/agent"
		}
	case http.StatusNotFound:
		e.Reason = "Odoo answered 404 (" + orSnippet(payload.Error, body) + ")"
		switch payload.Error {
		case "server_id_required":
			e.Fix = "Odoo has several PBX servers: pass --server-id with the id of this one (shown in the server's URL in Odoo)"
		case "unknown_server":
			e.Fix = "No such PBX server: check --server-id, or create the server in Odoo (PBX > Servers) first"
		case "unknown_db":
			e.Fix = "Check --db (the database name) and that the asterisk_plus addon is installed in that database"
		default:
			e.Fix = "Check --db (the database name) and --server-id, and that the asterisk_plus addon is installed in that database"
		}
	case http.StatusTooManyRequests:
		e.Reason = "Odoo answered 429 (" + orSnippet(payload.Error, body) + "): too many attempts, or another init is running for this server"
		e.Fix = "Wait"
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			e.Fix += " " + ra + " seconds"
		} else {
			e.Fix += " a minute"
		}
		e.Fix += " and re-run init"
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		e.Reason = fmt.Sprintf("Odoo answered %d without a usable Location", resp.StatusCode)
		e.Fix = "Give init the final Odoo URL"
	default:
		e.Reason = fmt.Sprintf("Odoo answered HTTP %d (%s)", resp.StatusCode, orSnippet(payload.Error, body))
		if resp.StatusCode >= 500 {
			e.Fix = "Look at Odoo's log; the handshake is one-time, so check in Odoo whether the server shows an initialized agent before re-running init"
		} else {
			e.Fix = "Check the Odoo URL"
		}
	}
	return e
}

func transportError(err error) error {
	e := &HandshakeError{Reason: "could not reach Odoo: " + err.Error()}
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	switch {
	case errors.As(err, &certErr), errors.As(err, &unknownAuth), errors.As(err, &hostErr):
		e.Fix = "Odoo's TLS certificate is not trusted: give its CA with --ca-file, or fix the certificate; --insecure skips the check (not recommended)"
	case errors.Is(err, context.DeadlineExceeded):
		e.Fix = "Check the URL and that this host can reach Odoo (firewall, proxy)"
	default:
		e.Fix = "Check the URL, DNS, and that this host can reach Odoo"
	}
	return e
}

func orSnippet(code string, body []byte) string {
	if code != "" {
		return code
	}
	return snippet(body)
}

// snippet is the start of a body, on one line, for an error message.
func snippet(body []byte) string {
	s := strings.Join(strings.Fields(string(body)), " ")
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	if s == "" {
		return "empty body"
	}
	return strconv.Quote(s)
}
