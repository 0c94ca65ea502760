package initcmd

import (
	"bufio"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeAMI answers Challenge and Login with the bytes Asterisk 22 sent in the recorded fixtures
// 01b-login-md5-challenge (challenge 682645631) and 03a-failed-login-wrong-secret (error, then
// the socket is closed).
type fakeAMI struct {
	ln     net.Listener
	secret string

	mu      sync.Mutex
	actions []string
	wg      sync.WaitGroup
}

const fixtureChallenge = "682645631"

func startFakeAMI(t *testing.T, secret string) *fakeAMI {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeAMI{ln: ln, secret: secret}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				f.serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		f.wg.Wait()
	})
	return f
}

func (f *fakeAMI) addr() string { return f.ln.Addr().String() }

func (f *fakeAMI) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.actions...)
}

func (f *fakeAMI) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(c, "Asterisk Call Manager/11.0.0\r\n")
	r := bufio.NewReader(c)
	for {
		msg := map[string]string{}
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\r\n")
			if line == "" {
				break
			}
			if k, v, ok := strings.Cut(line, ": "); ok {
				msg[strings.ToLower(k)] = v
			}
		}
		if len(msg) == 0 {
			continue
		}
		action, id := msg["action"], msg["actionid"]
		f.mu.Lock()
		f.actions = append(f.actions, action)
		f.mu.Unlock()
		switch strings.ToLower(action) {
		case "challenge":
			fmt.Fprintf(c, "Response: Success\r\nActionID: %s\r\nChallenge: %s\r\n\r\n", id, fixtureChallenge)
		case "login":
			sum := md5.Sum([]byte(fixtureChallenge + f.secret))
			if msg["key"] != hex.EncodeToString(sum[:]) || msg["events"] != "off" {
				fmt.Fprintf(c, "Response: Error\r\nActionID: %s\r\nMessage: Authentication failed\r\n\r\n", id)
				return
			}
			fmt.Fprintf(c, "Response: Success\r\nActionID: %s\r\nMessage: Authentication accepted\r\n\r\n", id)
		case "ping":
			fmt.Fprintf(c, "Response: Success\r\nActionID: %s\r\nPing: Pong\r\nTimestamp: 1764091158.799000\r\n\r\n", id)
		case "logoff":
			fmt.Fprintf(c, "Response: Goodbye\r\nActionID: %s\r\n\r\n", id)
			return
		default:
			fmt.Fprintf(c, "Response: Error\r\nActionID: %s\r\nMessage: Permission denied\r\n\r\n", id)
		}
	}
}

func TestAMILoginAcceptedAndRefused(t *testing.T) {
	f := startFakeAMI(t, "odoo-secret")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := AMILogin(ctx, f.addr(), "odoo", "odoo-secret"); err != nil {
		t.Fatalf("good secret: %v", err)
	}
	if got := strings.Join(f.seen(), ","); !strings.HasPrefix(got, "Challenge,Login") {
		t.Fatalf("actions %s, want an MD5 login", got)
	}
	if err := AMILogin(ctx, f.addr(), "odoo", "wrong"); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("wrong secret: %v", err)
	}
}

func TestAMILoginNothingListening(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := AMILogin(ctx, addr, "u", "s"); err == nil {
		t.Fatal("login to a closed port succeeded")
	}
}

// TestAMILoginLive logs in to a real Asterisk when ODOOPBX_TEST_AMI=host:port is set (user and
// secret from ODOOPBX_TEST_AMI_USER / ODOOPBX_TEST_AMI_SECRET), the same variables as the ami package.
func TestAMILoginLive(t *testing.T) {
	addr := os.Getenv("ODOOPBX_TEST_AMI")
	if addr == "" {
		t.Skip("live Asterisk test skipped: ODOOPBX_TEST_AMI not set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := AMILogin(ctx, addr, os.Getenv("ODOOPBX_TEST_AMI_USER"), os.Getenv("ODOOPBX_TEST_AMI_SECRET")); err != nil {
		t.Fatalf("login: %v", err)
	}
	if err := AMILogin(ctx, addr, os.Getenv("ODOOPBX_TEST_AMI_USER"), "wrong-"+os.Getenv("ODOOPBX_TEST_AMI_SECRET")); err == nil {
		t.Fatal("a wrong secret was accepted")
	}
}
