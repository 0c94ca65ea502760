package sim

import (
	"bufio"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/odoopbx/odoopbx/internal/ami"
	"github.com/odoopbx/odoopbx/internal/ami/amitest"
)

var testStart = time.Date(2026, 11, 25, 17, 19, 10, 0, time.UTC)

// startSim starts a simulator on a free loopback port with a manual clock, no login delay and
// user odoo/odoo-secret; edit adjusts the config.
func startSim(t testing.TB, edit func(*Config)) *Sim {
	t.Helper()
	cfg := Config{
		Listen:        "127.0.0.1:0",
		Users:         map[string]string{"odoo": "odoo-secret"},
		Start:         testStart,
		ManualClock:   true,
		AuthFailDelay: -1,
		Seed:          42,
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	return s
}

// client is a raw AMI client for tests: it writes actions and reads messages with ami.Reader.
type client struct {
	t      testing.TB
	conn   net.Conn
	r      *ami.Reader
	banner string
}

func dial(t testing.TB, s *Sim) *client {
	t.Helper()
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := &client{t: t, conn: conn, r: ami.NewReader(bufio.NewReader(conn))}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	c.banner, err = c.r.ReadBanner()
	if err != nil {
		t.Fatalf("banner: %v", err)
	}
	return c
}

func (c *client) send(pairs ...string) {
	c.t.Helper()
	if _, err := ami.NewMessage(pairs...).WriteTo(c.conn); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// read returns the next message, failing the test after 5 s.
func (c *client) read() *ami.Message {
	c.t.Helper()
	m, err := c.tryRead(5 * time.Second)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return m
}

func (c *client) tryRead(d time.Duration) (*ami.Message, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	return c.r.ReadMessage()
}

// readUntil reads messages until match returns true and returns every message read, the
// matching one last.
func (c *client) readUntil(match func(*ami.Message) bool) []*ami.Message {
	c.t.Helper()
	var out []*ami.Message
	for {
		m := c.read()
		out = append(out, m)
		if match(m) {
			return out
		}
	}
}

// drain reads until the response to a Ping, so everything queued before it has arrived.
func (c *client) drain(id string) []*ami.Message {
	c.t.Helper()
	c.send("Action", "Ping", "ActionID", id)
	msgs := c.readUntil(func(m *ami.Message) bool { return m.Kind() == ami.KindResponse && m.ActionID() == id })
	return msgs[:len(msgs)-1]
}

func (c *client) login(events string) {
	c.t.Helper()
	pairs := []string{"Action", "Login", "ActionID", "login-1", "Username", "odoo", "Secret", "odoo-secret"}
	if events != "" {
		pairs = append(pairs, "Events", events)
	}
	c.send(pairs...)
	resp := c.read()
	if resp.Get("Response") != "Success" || resp.Get("Message") != "Authentication accepted" {
		c.t.Fatalf("login: %s", resp)
	}
}

func (c *client) expectEOF() {
	c.t.Helper()
	_, err := c.tryRead(5 * time.Second)
	if !errors.Is(err, io.EOF) {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.t.Fatal("connection still open, want it closed")
		}
		if err == nil {
			c.t.Fatal("got a message, want the connection closed")
		}
	}
}

func md5Key(challenge, secret string) string {
	sum := md5.Sum([]byte(challenge + secret))
	return hex.EncodeToString(sum[:])
}

func names(m *ami.Message) []string {
	out := make([]string, len(m.Headers))
	for i, h := range m.Headers {
		out[i] = h.Name
	}
	return out
}

// fixtureShapes reads every recorded transcript and returns, per event name, the distinct header
// name sequences Asterisk sent.
func fixtureShapes(t testing.TB) map[string][]string {
	t.Helper()
	shapes := map[string][]string{}
	for _, f := range amitest.FixtureNames(t, "*.txt") {
		if strings.HasSuffix(f, ".sent.txt") {
			continue
		}
		for _, m := range amitest.FixtureMessages(t, f) {
			if m.Kind() != ami.KindEvent {
				continue
			}
			key := strings.Join(names(m), "|")
			found := false
			for _, s := range shapes[m.Event()] {
				if s == key {
					found = true
				}
			}
			if !found {
				shapes[m.Event()] = append(shapes[m.Event()], key)
			}
		}
	}
	return shapes
}
