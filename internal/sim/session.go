package sim

import (
	"bufio"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/odoopbx/odoopbx/internal/ami"
)

// session is one AMI connection. Its reader handles actions in order (a slow action delays the
// session, as one Asterisk thread serves one session); its writer drains a bounded queue with a
// write deadline per message.
type session struct {
	sim  *Sim
	id   uint64
	conn net.Conn
	out  chan []byte // nil entry: flush and close (after Logoff or a failed login)
	done chan struct{}

	closeOnce sync.Once
	authed    atomic.Bool
	mask      atomic.Uint32 // the Events mask; the read class is everything for every user

	mu        sync.Mutex
	user      string
	challenge string
	loginTime time.Time
}

func (sess *session) username() string {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	return sess.user
}

func (sess *session) wants(cls class) bool {
	return sess.authed.Load() && class(sess.mask.Load())&cls != 0
}

// tryEnqueue queues without blocking; false means the session is too far behind.
func (sess *session) tryEnqueue(data []byte) bool {
	select {
	case <-sess.done:
		return true
	default:
	}
	select {
	case sess.out <- data:
		return true
	default:
		return false
	}
}

// send queues a message from the session's own reader, waiting for room.
func (sess *session) send(m *ami.Message) {
	select {
	case sess.out <- encodeBytes(m):
	case <-sess.done:
	}
}

// closeAfterFlush closes the connection once everything queued so far has been written.
func (sess *session) closeAfterFlush() {
	select {
	case sess.out <- nil:
	case <-sess.done:
	}
}

func (sess *session) close() {
	sess.closeOnce.Do(func() {
		close(sess.done)
		_ = sess.conn.Close()
		sess.sim.removeSession(sess)
	})
}

func (sess *session) writeLoop() {
	defer sess.close()
	w := bufio.NewWriterSize(sess.conn, 32<<10)
	timeout := sess.sim.cfg.WriteTimeout
	write := func(data []byte) error {
		if data == nil {
			if err := w.Flush(); err != nil {
				return err
			}
			return io.EOF
		}
		_ = sess.conn.SetWriteDeadline(time.Now().Add(timeout))
		_, err := w.Write(data)
		return err
	}
	for {
		select {
		case <-sess.done:
			return
		case data := <-sess.out:
			if err := write(data); err != nil {
				sess.logWriteErr(err)
				return
			}
		drain:
			for {
				select {
				case data := <-sess.out:
					if err := write(data); err != nil {
						sess.logWriteErr(err)
						return
					}
				default:
					break drain
				}
			}
			_ = sess.conn.SetWriteDeadline(time.Now().Add(timeout))
			if err := w.Flush(); err != nil {
				sess.logWriteErr(err)
				return
			}
		}
	}
}

func (sess *session) logWriteErr(err error) {
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		sess.sim.dropped.Add(1)
		sess.sim.log.Warn("sim: AMI write timed out, dropping session", "session", sess.id, "user", sess.username())
		return
	}
	sess.sim.log.Debug("sim: AMI write", "session", sess.id, "err", err)
}

// serve reads and handles actions until the client leaves or the session is closed. After Logoff
// or a failed login the writer closes the connection once the last answer is out.
func (sess *session) serve(ctx context.Context) {
	select {
	case sess.out <- banner(AMIVersion):
	case <-sess.done:
		return
	}
	go func() {
		select {
		case <-ctx.Done():
			sess.close()
		case <-sess.done:
		}
	}()
	ar := newActionReader(sess.conn)
	for {
		msg, err := ar.readAction()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				sess.sim.log.Debug("sim: AMI read", "session", sess.id, "err", err)
			}
			sess.close()
			return
		}
		if !sess.handle(msg) {
			return
		}
	}
}

// response builds "Response: <status>", the ActionID when the action had one, then pairs.
func response(actionID, status string, pairs ...string) *ami.Message {
	m := &ami.Message{Headers: make([]ami.Header, 0, 3+len(pairs)/2)}
	m.Add("Response", status)
	if actionID != "" {
		m.Add("ActionID", actionID)
	}
	for i := 0; i+1 < len(pairs); i += 2 {
		m.Add(pairs[i], pairs[i+1])
	}
	return m
}

func errorResponse(actionID, message string) *ami.Message {
	return response(actionID, "Error", "Message", message)
}

// handle runs one action and reports whether the session stays open.
func (sess *session) handle(msg *ami.Message) bool {
	aid := msg.Get("ActionID")
	action := strings.TrimSpace(msg.Get("Action"))
	if action == "" {
		sess.send(errorResponse(aid, "Missing action in request"))
		return true
	}
	name := strings.ToLower(action)
	if !sess.authed.Load() && name != "login" && name != "challenge" && name != "logoff" {
		sess.sim.securityEvent(sess, "RequestNotAllowed", "Error", 1, "", "RequestType", "Action: "+action)
		sess.send(errorResponse(aid, "Permission denied"))
		return true
	}
	switch name {
	case "login":
		return sess.login(msg, aid)
	case "challenge":
		if !strings.EqualFold(msg.Get("AuthType"), "MD5") {
			sess.send(errorResponse(aid, "Must specify AuthType"))
			return true
		}
		sess.mu.Lock()
		if sess.challenge == "" {
			sess.challenge = strconv.FormatUint(uint64(rand.Uint32N(900000000)+100000000), 10)
		}
		ch := sess.challenge
		sess.mu.Unlock()
		sess.send(response(aid, "Success", "Challenge", ch))
	case "logoff":
		sess.send(response(aid, "Goodbye", "Message", "Thanks for all the fish."))
		sess.closeAfterFlush()
		return false
	case "ping":
		now := time.Now()
		sess.send(response(aid, "Success", "Ping", "Pong", "Timestamp", fmt.Sprintf("%d.%06d", now.Unix(), now.Nanosecond()/1000)))
	case "events":
		mask, ok := parseEventMask(msg.Get("EventMask"))
		if !ok {
			sess.send(errorResponse(aid, "Invalid event mask"))
			return true
		}
		sess.mask.Store(uint32(mask))
		if mask == 0 {
			sess.send(response(aid, "Success", "Events", "Off"))
		} else {
			sess.send(response(aid, "Success", "Events", "On"))
		}
	default:
		if msgs, known := sess.sim.runAction(sess, name, msg, aid); known {
			for _, m := range msgs {
				sess.send(m)
			}
			return true
		}
		sess.send(errorResponse(aid, "Invalid/unknown command: "+action+". Use Action: ListCommands to show available commands."))
	}
	return true
}

func (sess *session) login(msg *ami.Message, aid string) bool {
	s := sess.sim
	user := msg.Get("Username")
	secret, known := s.cfg.Users[user]
	ok := false
	if known {
		if strings.EqualFold(msg.Get("AuthType"), "MD5") {
			sess.mu.Lock()
			ch := sess.challenge
			sess.mu.Unlock()
			sum := md5.Sum([]byte(ch + secret))
			ok = ch != "" && strings.EqualFold(msg.Get("Key"), hex.EncodeToString(sum[:]))
		} else {
			ok = msg.Get("Secret") == secret
		}
	}
	if !ok {
		// The three failure kinds look the same to the client; only the security events differ.
		if known {
			s.securityEvent(sess, "InvalidPassword", "Error", 2, user)
		} else {
			s.securityEvent(sess, "InvalidAccountID", "Error", 1, user)
		}
		if d := s.cfg.AuthFailDelay; d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-sess.done:
				t.Stop()
				return false
			}
		}
		sess.send(errorResponse(aid, "Authentication failed"))
		sess.closeAfterFlush()
		return false
	}
	mask := classAll
	if v, present := msg.Lookup("Events"); present {
		if m, valid := parseEventMask(v); valid {
			mask = m
		}
	}
	sess.mu.Lock()
	sess.user = user
	sess.loginTime = s.clock.Now()
	sess.mu.Unlock()
	sess.mask.Store(uint32(mask))
	sess.send(response(aid, "Success", "Message", "Authentication accepted"))
	if mask&classSystem != 0 {
		up := strconv.Itoa(int(s.clock.Now().Sub(s.started).Seconds()))
		sess.send(ami.NewMessage("Event", "FullyBooted", "Privilege", classSystem.privilege(),
			"Uptime", up, "LastReload", up, "Status", "Fully Booted"))
	}
	// Published after the authed flag so this session sees its own SuccessfulAuth after
	// FullyBooted, as in the recordings.
	sess.authed.Store(true)
	s.securityEvent(sess, "SuccessfulAuth", "Informational", 1, user, "UsingPassword", "0")
	return true
}

// sessionTag is the SessionID of AMI security events: Asterisk prints a session pointer.
func (sess *session) sessionTag() string { return fmt.Sprintf("0x7fdc%08x", 0x6c000000+sess.id*0x1050) }

func tcpAddress(a net.Addr) string {
	ap, err := netipAddrPort(a)
	if err != nil {
		return "IPV4/TCP/0.0.0.0/0"
	}
	fam := "IPV4"
	if ap.Addr().Unmap().Is6() {
		fam = "IPV6"
	}
	return fmt.Sprintf("%s/TCP/%s/%d", fam, ap.Addr().Unmap(), ap.Port())
}

// securityEvent publishes an AMI security event about this session (class security).
func (s *Sim) securityEvent(sess *session, name, severity string, version int, account string, extra ...string) {
	now := s.clock.Now()
	sessionTV := "1970-01-01T00:00:00.000+0000"
	if sess.authed.Load() || name == "SuccessfulAuth" {
		sess.mu.Lock()
		if !sess.loginTime.IsZero() {
			sessionTV = eventTV(sess.loginTime)
		}
		sess.mu.Unlock()
	}
	m := ami.NewMessage("Event", name, "Privilege", classSecurity.privilege(),
		"EventTV", eventTV(now), "Severity", severity, "Service", "AMI",
		"EventVersion", strconv.Itoa(version), "AccountID", account, "SessionID", sess.sessionTag(),
		"LocalAddress", tcpAddress(sess.conn.LocalAddr()), "RemoteAddress", tcpAddress(sess.conn.RemoteAddr()))
	for i := 0; i+1 < len(extra); i += 2 {
		m.Add(extra[i], extra[i+1])
	}
	m.Add("SessionTV", sessionTV)
	s.broadcast(classSecurity, m)
}

func eventTV(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000-0700") }
