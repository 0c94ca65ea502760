package nft

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// lab is two network namespaces joined by a veth pair: the client side sends from several
// addresses, the server side runs the firewall and counts what arrives.
type lab struct {
	client, server string
	serverNS       netns.NsHandle
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces and change nftables")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2)")
	}
}

func run(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

var labSeq struct {
	sync.Mutex
	n int
}

func newLab(t testing.TB) *lab {
	t.Helper()
	requireRoot(t)
	labSeq.Lock()
	labSeq.n++
	id := fmt.Sprintf("opbx%d-%d", os.Getpid()%100000, labSeq.n)
	labSeq.Unlock()
	l := &lab{client: id + "c", server: id + "s"}
	run(t, "ip", "netns", "add", l.client)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", l.client).Run() })
	run(t, "ip", "netns", "add", l.server)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", l.server).Run() })
	run(t, "ip", "-n", l.client, "link", "add", "vc", "type", "veth", "peer", "name", "vs", "netns", l.server)
	for _, a := range []string{"192.0.2.1/24", "192.0.2.3/24"} {
		run(t, "ip", "-n", l.client, "addr", "add", a, "dev", "vc")
	}
	for _, a := range []string{"2001:db8::1/64", "2001:db8::3/64", "2001:db8:0:1::1/64"} {
		run(t, "ip", "-n", l.client, "addr", "add", a, "dev", "vc", "nodad")
	}
	run(t, "ip", "-n", l.server, "addr", "add", "192.0.2.2/24", "dev", "vs")
	run(t, "ip", "-n", l.server, "addr", "add", "2001:db8::2/64", "dev", "vs", "nodad")
	run(t, "ip", "-n", l.server, "addr", "add", "2001:db8:0:1::2/64", "dev", "vs", "nodad")
	for _, ns := range []string{l.client, l.server} {
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	run(t, "ip", "-n", l.client, "link", "set", "vc", "up")
	run(t, "ip", "-n", l.server, "link", "set", "vs", "up")
	h, err := netns.GetFromName(l.server)
	if err != nil {
		t.Fatalf("open namespace %s: %v", l.server, err)
	}
	t.Cleanup(func() { h.Close() })
	l.serverNS = h
	return l
}

// inNS runs f on a thread switched into the named namespace; sockets f opens stay there.
func inNS(t testing.TB, name string, f func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is left locked and so discarded when the goroutine ends: its namespace changed.
		orig, err := netns.Get()
		if err != nil {
			done <- err
			return
		}
		defer orig.Close()
		h, err := netns.GetFromName(name)
		if err != nil {
			done <- err
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			done <- err
			return
		}
		done <- f()
	}()
	if err := <-done; err != nil {
		t.Fatalf("in namespace %s: %v", name, err)
	}
}

// backend opens the nftables backend inside the server namespace, skipping when nftables is absent.
func (l *lab) backend(t testing.TB, ipv6Prefix int) *Backend {
	t.Helper()
	b, err := New(Config{NetNS: int(l.serverNS), IPv6Prefix: ipv6Prefix})
	if err != nil {
		t.Skipf("nftables is not usable here: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// udpSink listens on the server side and reports every datagram's payload.
type udpSink struct {
	conn *net.UDPConn
	got  chan string
}

func (l *lab) udpSink(t testing.TB, port int) *udpSink {
	t.Helper()
	s := &udpSink{got: make(chan string, 64)}
	inNS(t, l.server, func() error {
		c, err := net.ListenUDP("udp", &net.UDPAddr{Port: port})
		s.conn = c
		return err
	})
	t.Cleanup(func() { s.conn.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, _, err := s.conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			s.got <- string(buf[:n])
		}
	}()
	return s
}

// send sends one datagram from src to the server address dst:port from the client namespace.
func (l *lab) send(t testing.TB, src, dst string, port int, payload string) {
	t.Helper()
	inNS(t, l.client, func() error {
		c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)}, &net.UDPAddr{IP: net.ParseIP(dst), Port: port})
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte(payload))
		return err
	})
}

// delivered reports whether payload arrives within wait.
func (s *udpSink) delivered(payload string, wait time.Duration) bool {
	deadline := time.After(wait)
	for {
		select {
		case p := <-s.got:
			if p == payload {
				return true
			}
		case <-deadline:
			return false
		}
	}
}

var seq struct {
	sync.Mutex
	n int
}

// probe sends a fresh payload from src and reports whether the server got it within wait.
func (l *lab) probe(t testing.TB, s *udpSink, src, dst string, port int, wait time.Duration) bool {
	t.Helper()
	seq.Lock()
	seq.n++
	payload := fmt.Sprintf("probe-%d-%s", seq.n, src)
	seq.Unlock()
	l.send(t, src, dst, port, payload)
	return s.delivered(payload, wait)
}

// passes waits generously, so that a pass never flakes on a loaded machine.
func (l *lab) passes(t testing.TB, s *udpSink, src, dst string, port int) bool {
	return l.probe(t, s, src, dst, port, 2*time.Second)
}

// dropped waits a short while: on a veth pair a datagram arrives in microseconds or never.
func (l *lab) dropped(t testing.TB, s *udpSink, src, dst string, port int) bool {
	return !l.probe(t, s, src, dst, port, 300*time.Millisecond)
}

// tcpConnects reports whether a TCP connection from src to dst:port completes.
func (l *lab) tcpConnects(t testing.TB, src, dst string, port int) bool {
	t.Helper()
	ok := false
	inNS(t, l.client, func() error {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 400 * time.Millisecond}
		c, err := d.Dial("tcp", net.JoinHostPort(dst, fmt.Sprint(port)))
		if err == nil {
			ok = true
			c.Close()
			return nil
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		return err
	})
	return ok
}

func pfx(s string) netip.Prefix {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		a := netip.MustParseAddr(s)
		return netip.PrefixFrom(a, a.BitLen())
	}
	return p
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}
