// Package amitest is an in-process fake Asterisk for tests: it replays a recorded AMI transcript
// (the server-to-client bytes of a fixture) to real clients over TCP, routing each message the way
// Asterisk does: responses and list items to the session that sent the action, events to every
// session logged in with events on, OriginateResponse and UserEvent (broadcast, yet carrying the
// sender's ActionID) to the event sessions. The fixture's ActionIDs are rewritten to the client's.
package amitest

import (
	"bufio"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/odoopbx/odoopbx/internal/ami"
)

// Server is the fake Asterisk.
type Server struct {
	// Users maps AMI user names to secrets; logins are checked like Asterisk does (plain and MD5).
	Users map[string]string
	// Banner is sent first (default "Asterisk Call Manager/11.0.0").
	Banner string
	// FailedLoginDelay mimics Asterisk's pause before "Authentication failed" (default 0).
	FailedLoginDelay time.Duration
	// IgnorePing leaves keepalive Pings unanswered (a hung Asterisk), for watchdog tests.
	IgnorePing bool
	// NoEventSession replays for clients that log in with Events: off: replies go out at once and
	// plain events, with nobody to receive them, are skipped (as Asterisk does).
	NoEventSession bool

	ln       net.Listener
	mu       sync.Mutex
	cond     *sync.Cond
	sessions []*conn
	script   []*ami.Message
	// actions are the fixture's client actions by their fixture ActionID, in order.
	fixtureActions map[string]int
	fixtureNames   []string
	// bound[i] is the client's ActionID and session for fixture action i, once the client sent it.
	bound    map[int]binding
	claimed  map[int]bool
	received []*ami.Message
	closed   bool
	wg       sync.WaitGroup
	logins   int
	finished bool
}

type binding struct {
	id   string
	conn *conn
}

type conn struct {
	c      net.Conn
	w      *bufio.Writer
	wmu    sync.Mutex
	events bool
	authed bool
}

// Replay returns a server that will replay the messages of serverBytes (a fixture's .txt, banner
// included) after the login, matching its responses to the actions of sentBytes (the fixture's
// .sent.txt). Login, Challenge and Logoff are answered natively.
func Replay(serverBytes, sentBytes []byte) (*Server, error) {
	s := &Server{
		Users:          map[string]string{"odoo": "odoo-secret"},
		Banner:         "Asterisk Call Manager/11.0.0",
		fixtureActions: map[string]int{},
		bound:          map[int]binding{},
		claimed:        map[int]bool{},
	}
	s.cond = sync.NewCond(&s.mu)
	sent, err := Transcript(sentBytes)
	if err != nil {
		return nil, fmt.Errorf("amitest: sent transcript: %w", err)
	}
	skipIDs := map[string]bool{}
	for _, a := range sent {
		name := strings.ToLower(a.Get("Action"))
		if name == "login" || name == "challenge" || name == "logoff" {
			skipIDs[a.ActionID()] = true
			continue
		}
		s.fixtureActions[a.ActionID()] = len(s.fixtureNames)
		s.fixtureNames = append(s.fixtureNames, name)
	}
	msgs, err := Transcript(serverBytes)
	if err != nil {
		return nil, fmt.Errorf("amitest: server transcript: %w", err)
	}
	for _, m := range msgs {
		if m.Kind() == ami.KindResponse && skipIDs[m.ActionID()] {
			continue // the native login answers instead
		}
		s.script = append(s.script, m)
	}
	return s, nil
}

// Start listens on a loopback port and starts replaying once a client logs in with events on.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	s.ln = ln
	s.wg.Add(2)
	go s.accept()
	go s.replay()
	return nil
}

// Addr is host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server and drops every connection.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	for _, c := range s.sessions {
		c.c.Close()
	}
	s.cond.Broadcast()
	s.mu.Unlock()
	s.ln.Close()
	s.wg.Wait()
}

// DropConnections closes every client connection (an Asterisk restart, as the client sees it).
func (s *Server) DropConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.sessions {
		c.c.Close()
	}
	s.sessions = nil
}

// Received returns the actions the clients sent, in order (logins included).
func (s *Server) Received() []*ami.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*ami.Message(nil), s.received...)
}

// Logins counts successful logins.
func (s *Server) Logins() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logins
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		c := &conn{c: nc, w: bufio.NewWriter(nc)}
		s.wg.Add(1)
		go s.serve(c)
	}
}

func (c *conn) send(m *ami.Message) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.w.Write(m.AppendWire(nil)); err != nil {
		return err
	}
	return c.w.Flush()
}

func (s *Server) serve(c *conn) {
	defer s.wg.Done()
	defer c.c.Close()
	c.wmu.Lock()
	fmt.Fprintf(c.w, "%s\r\n", s.Banner)
	c.w.Flush()
	c.wmu.Unlock()
	r := ami.NewReader(c.c)
	challenge := ""
	for {
		a, err := r.ReadMessage()
		if err != nil {
			s.remove(c)
			return
		}
		s.mu.Lock()
		s.received = append(s.received, a)
		s.mu.Unlock()
		id := a.ActionID()
		reply := func(pairs ...string) {
			m := ami.NewMessage("Response", pairs[0], "ActionID", id)
			for i := 1; i+1 < len(pairs); i += 2 {
				m.Add(pairs[i], pairs[i+1])
			}
			_ = c.send(m)
		}
		switch name := strings.ToLower(a.Get("Action")); {
		case name == "challenge":
			challenge = "682645631"
			reply("Success", "Challenge", challenge)
		case name == "login":
			secret, known := s.Users[a.Get("Username")]
			ok := known && (a.Get("Secret") == secret && !a.Has("Key") ||
				a.Has("Key") && challenge != "" && a.Get("Key") == md5hex(challenge+secret))
			if !ok {
				time.Sleep(s.FailedLoginDelay)
				reply("Error", "Message", "Authentication failed")
				s.remove(c)
				return // Asterisk closes the socket after a failed login
			}
			c.authed = true
			c.events = !strings.EqualFold(a.Get("Events"), "off")
			// Count the login before answering it, so a client that sees itself connected also
			// sees the count; the write lock keeps replayed events behind the answer, as Asterisk
			// sends nothing to a session before its login response.
			c.wmu.Lock()
			s.mu.Lock()
			s.logins++
			s.sessions = append(s.sessions, c)
			s.cond.Broadcast()
			s.mu.Unlock()
			c.w.Write(ami.NewMessage("Response", "Success", "ActionID", id, "Message", "Authentication accepted").AppendWire(nil))
			c.w.Flush()
			c.wmu.Unlock()
		case !c.authed:
			reply("Error", "Message", "Permission denied")
		case name == "logoff":
			reply("Goodbye", "Message", "Thanks for all the fish.")
			s.remove(c)
			return
		default:
			if !s.bind(name, id, c) {
				s.native(a, c)
			}
		}
	}
}

// bind matches a client action to the next unclaimed fixture action of the same name.
func (s *Server) bind(name, id string, c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, n := range s.fixtureNames {
		if n == name && !s.claimed[i] {
			s.claimed[i] = true
			s.bound[i] = binding{id: id, conn: c}
			s.cond.Broadcast()
			return true
		}
	}
	return false
}

// native answers actions the transcript does not cover: Ping (keepalive), Events, and an error
// for anything else.
func (s *Server) native(a *ami.Message, c *conn) {
	id := a.ActionID()
	switch strings.ToLower(a.Get("Action")) {
	case "ping":
		if s.IgnorePing {
			return
		}
		_ = c.send(ami.NewMessage("Response", "Success", "ActionID", id, "Ping", "Pong", "Timestamp", fmt.Sprintf("%d.000000", time.Now().Unix())))
	case "events":
		mask := a.Get("EventMask")
		s.mu.Lock()
		c.events = !strings.EqualFold(mask, "off")
		s.mu.Unlock()
		_ = c.send(ami.NewMessage("Response", "Success", "ActionID", id, "Events", mask))
	default:
		_ = c.send(ami.NewMessage("Response", "Error", "ActionID", id, "Message", "Invalid/unknown command: "+a.Get("Action")+". Use Action: ListCommands to show available commands."))
	}
}

func (s *Server) remove(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, x := range s.sessions {
		if x == c {
			s.sessions = append(s.sessions[:i], s.sessions[i+1:]...)
			break
		}
	}
}

// replay walks the script: it waits for an events session, and before each message that answers
// a fixture action, for the client to have sent the matching action.
func (s *Server) replay() {
	defer s.wg.Done()
	for _, m := range s.script {
		m = m.Clone()
		s.mu.Lock()
		idx, answers := s.fixtureActions[m.ActionID()]
		for !s.closed && !s.NoEventSession && !s.hasEventSession() {
			s.cond.Wait()
		}
		var target *conn
		if answers {
			for !s.closed && s.bound[idx].conn == nil {
				s.cond.Wait()
			}
			b := s.bound[idx]
			m.Set("ActionID", b.id)
			target = b.conn
		}
		if s.closed {
			s.mu.Unlock()
			return
		}
		broadcast := m.Kind() == ami.KindEvent && (strings.EqualFold(m.Event(), "OriginateResponse") || strings.EqualFold(m.Event(), "UserEvent"))
		var to []*conn
		if target != nil && !broadcast {
			to = []*conn{target}
		} else {
			for _, c := range s.sessions {
				if c.events {
					to = append(to, c)
				}
			}
		}
		s.mu.Unlock()
		for _, c := range to {
			_ = c.send(m)
		}
	}
	s.mu.Lock()
	s.finished = true
	s.mu.Unlock()
}

// Finished reports whether the whole transcript has been sent.
func (s *Server) Finished() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.finished
}

// Actions returns the transcript's client actions other than Login, Challenge and Logoff, in
// order: what a test has the client send so the replay can go on.
func Actions(sentBytes []byte) ([]*ami.Message, error) {
	sent, err := Transcript(sentBytes)
	if err != nil {
		return nil, err
	}
	var out []*ami.Message
	for _, a := range sent {
		switch strings.ToLower(a.Get("Action")) {
		case "login", "challenge", "logoff":
			continue
		}
		out = append(out, a)
	}
	return out, nil
}

func (s *Server) hasEventSession() bool {
	for _, c := range s.sessions {
		if c.events {
			return true
		}
	}
	return false
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}
