// Package tlsutil loads or creates the agent's own TLS certificate (contract §1.4): a self-signed
// ECDSA P-256 certificate that Odoo pins by its SHA-256 fingerprint, served by the job API (L4) and
// the web console (L5).
package tlsutil

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Validity is how long a generated certificate lasts. Odoo pins the fingerprint, so a long life
// avoids a silent break the day it would expire; rotating is "delete the pair, re-run init".
const Validity = 10 * 365 * 24 * time.Hour

// LoadOrCreate returns the certificate in certFile/keyFile and its SHA-256 fingerprint (lower-case
// hex of the DER). When neither file exists it generates a self-signed ECDSA P-256 certificate whose
// SANs are this host's names and addresses (HostSANs) plus extraSANs, and writes the key (0600) and
// the certificate (0644) atomically. When only the key exists (a crash between the two writes) a new
// certificate is made for that key. When only the certificate exists it fails instead of replacing
// a certificate Odoo may have pinned.
func LoadOrCreate(certFile, keyFile string, extraSANs []string) (tls.Certificate, string, error) {
	certExists, err := exists(certFile)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	keyExists, err := exists(keyFile)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	switch {
	case certExists && keyExists:
		return Load(certFile, keyFile)
	case certExists:
		return tls.Certificate{}, "", fmt.Errorf("tlsutil: %s exists but its key %s does not: restore the key, or remove the certificate to generate a new pair (then re-pin it in Odoo)", certFile, keyFile)
	}
	var key *ecdsa.PrivateKey
	if keyExists {
		key, err = readECKey(keyFile)
		if err != nil {
			return tls.Certificate{}, "", err
		}
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return tls.Certificate{}, "", fmt.Errorf("tlsutil: generate key: %w", err)
		}
	}
	dnsNames, ips := HostSANs(extraSANs)
	der, err := SelfSigned(key, dnsNames, ips, time.Now())
	if err != nil {
		return tls.Certificate{}, "", err
	}
	if !keyExists {
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return tls.Certificate{}, "", fmt.Errorf("tlsutil: encode key: %w", err)
		}
		keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
		if err := WriteFileAtomic(keyFile, keyPEM, 0o600); err != nil {
			return tls.Certificate{}, "", err
		}
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := WriteFileAtomic(certFile, certPEM, 0o644); err != nil {
		return tls.Certificate{}, "", err
	}
	return Load(certFile, keyFile)
}

// Load reads an existing pair and returns it with the leaf's fingerprint.
func Load(certFile, keyFile string) (tls.Certificate, string, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("tlsutil: load %s and %s: %w", certFile, keyFile, err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		leaf, err = x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return tls.Certificate{}, "", fmt.Errorf("tlsutil: parse %s: %w", certFile, err)
		}
		cert.Leaf = leaf
	}
	return cert, Fingerprint(leaf), nil
}

// Fingerprint is the SHA-256 of the certificate's DER, lower-case hex without separators: the form
// Odoo stores in agent_cert_sha256.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// ServerConfig is the TLS configuration of the agent's listeners: TLS 1.2 at least (contract §1.4).
func ServerConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
	}
}

// SelfSigned returns the DER of a self-signed server certificate for key, valid from an hour before
// now (clock skew between the PBX and Odoo) for Validity.
func SelfSigned(key *ecdsa.PrivateKey, dnsNames []string, ips []net.IP, now time.Time) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("tlsutil: serial number: %w", err)
	}
	commonName := "odoopbx-agent"
	if len(dnsNames) > 0 {
		commonName = dnsNames[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"OdooPBX agent"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(Validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              dnsNames,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: create certificate: %w", err)
	}
	return der, nil
}

// HostSANs returns the SANs of a generated certificate: the hostname, its FQDN (from /etc/hosts;
// init does no DNS query), localhost, every non-loopback interface address, 127.0.0.1, ::1 and
// extra. Link-local addresses are left out: they need a zone in a URL and change with the link.
// Each entry of extra that parses as an IP is an IP SAN, anything else a DNS SAN.
func HostSANs(extra []string) (dnsNames []string, ips []net.IP) {
	var names []string
	if host, err := os.Hostname(); err == nil && host != "" {
		names = append(names, host)
		if hosts, err := os.ReadFile("/etc/hosts"); err == nil {
			if fqdn := FQDNFromHosts(hosts, host); fqdn != "" {
				names = append(names, fqdn)
			}
		}
	}
	names = append(names, "localhost", "127.0.0.1", "::1")
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			ipNet, ok := a.(*net.IPNet)
			if !ok || ipNet.IP.IsLoopback() || ipNet.IP.IsLinkLocalUnicast() {
				continue
			}
			names = append(names, ipNet.IP.String())
		}
	}
	names = append(names, extra...)
	return SplitSANs(names)
}

// SplitSANs sorts names into DNS and IP SANs, dropping blanks and duplicates (case-insensitive for
// DNS names) and keeping the first-seen order.
func SplitSANs(names []string) (dnsNames []string, ips []net.IP) {
	seen := map[string]bool{}
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if ip := net.ParseIP(strings.Trim(n, "[]")); ip != nil {
			if v4 := ip.To4(); v4 != nil {
				ip = v4
			}
			if key := "ip:" + ip.String(); !seen[key] {
				seen[key] = true
				ips = append(ips, ip)
			}
			continue
		}
		n = strings.TrimSuffix(n, ".")
		if key := "dns:" + strings.ToLower(n); !seen[key] {
			seen[key] = true
			dnsNames = append(dnsNames, n)
		}
	}
	return dnsNames, ips
}

// FQDNFromHosts finds host in an /etc/hosts file and returns the first dotted name of that line (the
// canonical name, as `hostname -f` reports it), or "" when there is none. A host that already
// contains a dot is its own FQDN.
func FQDNFromHosts(hosts []byte, host string) string {
	if strings.Contains(host, ".") {
		return host
	}
	sc := bufio.NewScanner(bytes.NewReader(hosts))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		names := fields[1:]
		found := false
		for _, n := range names {
			if strings.EqualFold(n, host) || strings.HasPrefix(strings.ToLower(n), strings.ToLower(host)+".") {
				found = true
				break
			}
		}
		if !found {
			continue
		}
		for _, n := range names {
			if strings.Contains(n, ".") && strings.HasPrefix(strings.ToLower(n), strings.ToLower(host)+".") {
				return n
			}
		}
	}
	return ""
}

// WriteFileAtomic writes data to path through a temporary file in the same directory (created 0750
// when missing), synced and renamed over path, so a crash leaves either the old file or the new one.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("tlsutil: create %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("tlsutil: write %s: %w", path, err)
	}
	tmpName := tmp.Name()
	cleanup := func() { _ = os.Remove(tmpName) }
	// CreateTemp makes the file 0600; Chmod sets the final mode before any byte is written.
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		cleanup()
		return fmt.Errorf("tlsutil: chmod %s: %w", tmpName, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		cleanup()
		return fmt.Errorf("tlsutil: write %s: %w", tmpName, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		cleanup()
		return fmt.Errorf("tlsutil: sync %s: %w", tmpName, err)
	}
	if err := tmp.Close(); err != nil {
		cleanup()
		return fmt.Errorf("tlsutil: close %s: %w", tmpName, err)
	}
	if err := os.Rename(tmpName, path); err != nil {
		cleanup()
		return fmt.Errorf("tlsutil: rename to %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // make the rename durable; not every filesystem supports it
		d.Close()
	}
	return nil
}

func readECKey(keyFile string) (*ecdsa.PrivateKey, error) {
	data, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: read %s: %w", keyFile, err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("tlsutil: %s holds no PEM block", keyFile)
	}
	var parsed any
	switch block.Type {
	case "EC PRIVATE KEY":
		parsed, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		parsed, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("tlsutil: parse %s: %w", keyFile, err)
	}
	key, ok := parsed.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("tlsutil: %s is not an ECDSA key; remove it to generate a new pair", keyFile)
	}
	return key, nil
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("tlsutil: %w", err)
	}
}
