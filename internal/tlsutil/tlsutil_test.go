package tlsutil

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadOrCreateGeneratesThenLoads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	certFile, keyFile := filepath.Join(dir, "agent.crt"), filepath.Join(dir, "agent.key")

	cert, fp, err := LoadOrCreate(certFile, keyFile, []string{"pbx.example.org", "192.0.2.7", "[2001:db8::5]"})
	if err != nil {
		t.Fatal(err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		t.Fatal("Leaf not set")
	}
	sum := sha256.Sum256(cert.Certificate[0])
	if want := hex.EncodeToString(sum[:]); fp != want {
		t.Fatalf("fingerprint %s, want %s", fp, want)
	}
	if len(fp) != 64 || strings.ToLower(fp) != fp {
		t.Fatalf("fingerprint %q is not 64 lower-case hex digits", fp)
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Fatalf("public key %T is not ECDSA P-256", leaf.PublicKey)
	}
	if leaf.NotAfter.Sub(leaf.NotBefore) < 10*365*24*time.Hour {
		t.Fatalf("validity %v is under 10 years", leaf.NotAfter.Sub(leaf.NotBefore))
	}
	for _, name := range []string{"localhost", "pbx.example.org"} {
		if err := leaf.VerifyHostname(name); err != nil {
			t.Errorf("SAN %s: %v", name, err)
		}
	}
	for _, ip := range []string{"127.0.0.1", "::1", "192.0.2.7", "2001:db8::5"} {
		if err := leaf.VerifyHostname(ip); err != nil {
			t.Errorf("IP SAN %s: %v", ip, err)
		}
	}
	if host, err := os.Hostname(); err == nil {
		if err := leaf.VerifyHostname(host); err != nil {
			t.Errorf("hostname SAN: %v", err)
		}
	}

	st, err := os.Stat(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v, want 0600", st.Mode().Perm())
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o750 {
		t.Fatalf("dir mode %v (%v), want 0750", st.Mode().Perm(), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("dir holds %d entries, want the two files (no temp left): %v", len(entries), entries)
	}

	// A second call loads the same pair instead of generating a new one.
	_, fp2, err := LoadOrCreate(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fp2 != fp {
		t.Fatalf("second call regenerated: %s != %s", fp2, fp)
	}
}

func TestServeAndPinFingerprint(t *testing.T) {
	dir := t.TempDir()
	cert, fp, err := LoadOrCreate(filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", ServerConfig(cert))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_ = c.(*tls.Conn).Handshake()
		c.Close()
	}()
	// Pin the way Odoo does in fingerprint mode: no chain check, compare the leaf's SHA-256.
	var seen string
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			sum := sha256.Sum256(raw[0])
			seen = hex.EncodeToString(sum[:])
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if seen != fp {
		t.Fatalf("served fingerprint %s, want %s", seen, fp)
	}

}

func TestServerConfigMinVersion(t *testing.T) {
	if got := ServerConfig(tls.Certificate{}).MinVersion; got != tls.VersionTLS12 {
		t.Fatalf("MinVersion %x", got)
	}
}

func TestLoadOrCreateKeyWithoutCertKeepsKey(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "agent.crt"), filepath.Join(dir, "agent.key")
	first, _, err := LoadOrCreate(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	keyBefore, _ := os.ReadFile(keyFile)
	if err := os.Remove(certFile); err != nil {
		t.Fatal(err)
	}
	second, _, err := LoadOrCreate(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	keyAfter, _ := os.ReadFile(keyFile)
	if !bytes.Equal(keyBefore, keyAfter) {
		t.Fatal("key was rewritten")
	}
	if !first.Leaf.PublicKey.(*ecdsa.PublicKey).Equal(second.Leaf.PublicKey) {
		t.Fatal("new certificate is not for the existing key")
	}
}

func TestLoadOrCreateCertWithoutKeyFails(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "agent.crt"), filepath.Join(dir, "agent.key")
	if _, _, err := LoadOrCreate(certFile, keyFile, nil); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(certFile)
	os.Remove(keyFile)
	_, _, err := LoadOrCreate(certFile, keyFile, nil)
	if err == nil || !strings.Contains(err.Error(), "tlsutil:") {
		t.Fatalf("err = %v, want a tlsutil error", err)
	}
	after, _ := os.ReadFile(certFile)
	if !bytes.Equal(before, after) {
		t.Fatal("certificate was replaced")
	}
}

func TestLoadOrCreateGarbageFails(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "agent.crt"), filepath.Join(dir, "agent.key")
	os.WriteFile(certFile, []byte("not a cert"), 0o644)
	os.WriteFile(keyFile, []byte("not a key"), 0o600)
	if _, _, err := LoadOrCreate(certFile, keyFile, nil); err == nil {
		t.Fatal("garbage pair loaded")
	}
	got, _ := os.ReadFile(keyFile)
	if string(got) != "not a key" {
		t.Fatal("bad key file was overwritten")
	}
}

func TestFingerprintMatchesOpenSSLForm(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := SelfSigned(key, []string{"a.example"}, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	sum := sha256.Sum256(der)
	if Fingerprint(c) != hex.EncodeToString(sum[:]) {
		t.Fatal("fingerprint is not sha256 of the DER")
	}
}

func TestSplitSANs(t *testing.T) {
	dns, ips := SplitSANs([]string{"pbx", " PBX ", "", "pbx.example.org.", "10.0.0.1", "::ffff:10.0.0.1", "[::1]", "::1"})
	if got := strings.Join(dns, ","); got != "pbx,pbx.example.org" {
		t.Fatalf("dns = %s", got)
	}
	var s []string
	for _, ip := range ips {
		s = append(s, ip.String())
	}
	if got := strings.Join(s, ","); got != "10.0.0.1,::1" {
		t.Fatalf("ips = %s", got)
	}
}

func TestHostSANsIncludeLoopbackAndExtras(t *testing.T) {
	dns, ips := HostSANs([]string{"extra.example"})
	has := func(list []string, v string) bool {
		for _, x := range list {
			if x == v {
				return true
			}
		}
		return false
	}
	if !has(dns, "localhost") || !has(dns, "extra.example") {
		t.Fatalf("dns SANs %v", dns)
	}
	var got []string
	for _, ip := range ips {
		if ip.IsLoopback() && !ip.Equal(net.ParseIP("127.0.0.1")) && !ip.Equal(net.IPv6loopback) {
			t.Errorf("unexpected loopback %s", ip)
		}
		if ip.IsLinkLocalUnicast() {
			t.Errorf("link-local %s included", ip)
		}
		got = append(got, ip.String())
	}
	if !has(got, "127.0.0.1") || !has(got, "::1") {
		t.Fatalf("ip SANs %v", got)
	}
}

func TestFQDNFromHosts(t *testing.T) {
	hosts := []byte(`# comment pbx.wrong.example
127.0.0.1	localhost
127.0.1.1	pbx.example.org pbx   # debian style
10.0.0.9 other.example.org other
`)
	cases := map[string]string{
		"pbx":              "pbx.example.org",
		"PBX":              "pbx.example.org",
		"other":            "other.example.org",
		"nohost":           "",
		"already.dotted.x": "already.dotted.x",
	}
	for host, want := range cases {
		if got := FQDNFromHosts(hosts, host); got != want {
			t.Errorf("FQDNFromHosts(%q) = %q, want %q", host, got, want)
		}
	}
}

func TestWriteFileAtomicReplacesAndKeepsMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "f")
	if err := WriteFileAtomic(path, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(path, []byte("two"), 0o640); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	st, _ := os.Stat(path)
	if string(got) != "two" || st.Mode().Perm() != 0o640 {
		t.Fatalf("content %q mode %v", got, st.Mode().Perm())
	}
}
