package ami

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Limits bound what one message may cost, so a broken or hostile peer cannot grow memory without
// bound (a 1 MB line costs at most MaxLineBytes of buffer).
type Limits struct {
	// MaxLineBytes is the longest line accepted (default 64 KiB). Asterisk limits its input lines to
	// 1024 bytes but writes longer ones (Command output, CEL extras).
	MaxLineBytes int
	// MaxMessageBytes is the largest message (default 4 MiB).
	MaxMessageBytes int
	// MaxHeaders is the most headers in one message (default 100,000: ListCommands sends hundreds).
	MaxHeaders int
}

// DefaultLimits are the limits used when a field is zero.
var defaultLimits = Limits{MaxLineBytes: 64 << 10, MaxMessageBytes: 4 << 20, MaxHeaders: 100_000}

func (l Limits) withDefaults() Limits {
	if l.MaxLineBytes <= 0 {
		l.MaxLineBytes = defaultLimits.MaxLineBytes
	}
	if l.MaxMessageBytes <= 0 {
		l.MaxMessageBytes = defaultLimits.MaxMessageBytes
	}
	if l.MaxHeaders <= 0 {
		l.MaxHeaders = defaultLimits.MaxHeaders
	}
	return l
}

// FrameError is a message the reader had to skip (too long, too many headers). The stream stays
// usable: the next ReadMessage starts at the following message.
type FrameError struct {
	Reason string
	// Event and ActionID are what the skipped message said before it broke, to help find it in logs.
	Event, ActionID string
}

func (e *FrameError) Error() string {
	s := "ami: message skipped: " + e.Reason
	if e.Event != "" {
		s += " (Event: " + e.Event + ")"
	}
	if e.ActionID != "" {
		s += " (ActionID: " + e.ActionID + ")"
	}
	return s
}

const rawKey = "__raw"

// legacyEnd ends the output of the pre-14 "Response: Follows" Command format.
const legacyEnd = "--END COMMAND--"

// Reader frames an AMI byte stream into messages.
type Reader struct {
	br     *bufio.Reader
	limits Limits
	buf    []byte // the current message's lines, each ended by '\n', CR and LF stripped
	skip   *FrameError
}

// NewReader returns a Reader with default limits.
func NewReader(r io.Reader) *Reader { return NewReaderLimits(r, Limits{}) }

// NewReaderLimits returns a Reader with the given limits (zero fields take the defaults).
func NewReaderLimits(r io.Reader, l Limits) *Reader {
	l = l.withDefaults()
	return &Reader{br: bufio.NewReaderSize(r, l.MaxLineBytes), limits: l}
}

// ReadBanner reads the banner line ("Asterisk Call Manager/11.0.0") and returns it without CRLF.
// It is a single line with no blank line after it.
func (r *Reader) ReadBanner() (string, error) {
	line, err := r.readLine()
	if err != nil {
		if errors.Is(err, errLineTooLong) {
			return "", fmt.Errorf("ami: banner longer than %d bytes", r.limits.MaxLineBytes)
		}
		return "", err
	}
	banner := string(line)
	if !strings.HasPrefix(banner, "Asterisk Call Manager/") {
		return banner, fmt.Errorf("ami: unexpected banner %q (is this an AMI port?)", truncate(banner, 80))
	}
	return banner, nil
}

// BannerVersion returns the AMI version of a banner ("11.0.0").
func BannerVersion(banner string) string {
	_, v, _ := strings.Cut(banner, "/")
	return strings.TrimSpace(v)
}

var errLineTooLong = errors.New("line too long")

// readLine returns the next line without its LF and trailing CRs. A line longer than the
// buffer is discarded up to its LF and reported as errLineTooLong.
func (r *Reader) readLine() ([]byte, error) {
	line, err := r.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = r.br.ReadSlice('\n')
		}
		if err != nil {
			return nil, err
		}
		return nil, errLineTooLong
	}
	if err != nil {
		if err == io.EOF && len(line) > 0 {
			return trimCR(line), nil // a last line without LF
		}
		return nil, err
	}
	return trimCR(line[:len(line)-1]), nil
}

// trimCR strips trailing CRs: "\r\r\n" is an empty line too, never a header made of a CR.
func trimCR(b []byte) []byte {
	for n := len(b); n > 0 && b[n-1] == '\r'; n-- {
		b = b[:n-1]
	}
	return b
}

// ReadMessage returns the next message. Empty lines between messages are skipped. A message that
// breaks a limit is skipped whole and reported as *FrameError; the reader stays usable. At EOF a
// message without its final blank line is still returned; the next call returns io.EOF.
func (r *Reader) ReadMessage() (*Message, error) {
	r.buf = r.buf[:0]
	r.skip = nil
	lines := 0
	legacy, legacyOutput := false, false
	for {
		line, err := r.readLine()
		if errors.Is(err, errLineTooLong) {
			r.fail(fmt.Sprintf("a line is longer than %d bytes", r.limits.MaxLineBytes))
			if lines == 0 {
				lines = 1 // the message has begun even though nothing was kept
			}
			continue
		}
		if err != nil {
			if err == io.EOF && lines > 0 {
				break
			}
			if err == io.EOF {
				return nil, io.EOF
			}
			return nil, err
		}
		if legacy {
			if s := string(line); strings.HasSuffix(s, legacyEnd) {
				// Very old Asterisk glued the marker to the last output line.
				if last := strings.TrimSuffix(s, legacyEnd); last != "" {
					r.appendLine("Output: " + last)
				}
				legacy = false
				continue
			}
			if !legacyOutput && (hasHeader(line, "Privilege") || hasHeader(line, "ActionID")) {
				r.appendBytes(line)
			} else {
				legacyOutput = true
				r.appendLine("Output: " + string(line))
			}
			lines++
			continue
		}
		if len(line) == 0 {
			if lines == 0 {
				continue
			}
			break
		}
		if lines == 0 && bytes.EqualFold(line, []byte("Response: Follows")) {
			legacy = true
		}
		r.appendBytes(line)
		lines++
		if lines > r.limits.MaxHeaders {
			r.fail(fmt.Sprintf("more than %d headers", r.limits.MaxHeaders))
		}
	}
	if r.skip != nil {
		return nil, r.skip
	}
	return parseBlock(string(r.buf)), nil
}

func (r *Reader) fail(reason string) {
	if r.skip == nil {
		m := parseBlock(string(r.buf))
		r.skip = &FrameError{Reason: reason, Event: m.Get("Event"), ActionID: m.Get("ActionID")}
	}
	r.buf = r.buf[:0]
}

func (r *Reader) appendBytes(line []byte) {
	if r.skip != nil {
		return
	}
	if len(r.buf)+len(line)+1 > r.limits.MaxMessageBytes {
		r.fail(fmt.Sprintf("message larger than %d bytes", r.limits.MaxMessageBytes))
		return
	}
	r.buf = append(r.buf, line...)
	r.buf = append(r.buf, '\n')
}

func (r *Reader) appendLine(s string) {
	if r.skip != nil {
		return
	}
	if len(r.buf)+len(s)+1 > r.limits.MaxMessageBytes {
		r.fail(fmt.Sprintf("message larger than %d bytes", r.limits.MaxMessageBytes))
		return
	}
	r.buf = append(r.buf, s...)
	r.buf = append(r.buf, '\n')
}

func hasHeader(line []byte, name string) bool {
	return len(line) > len(name) && line[len(name)] == ':' && strings.EqualFold(string(line[:len(name)]), name)
}

// parseBlock turns '\n'-separated lines into a message. Headers slice into block, so a message
// costs one string and one slice however many headers it has.
func parseBlock(block string) *Message {
	n := strings.Count(block, "\n")
	m := &Message{Headers: make([]Header, 0, n)}
	for len(block) > 0 {
		line := block
		if i := strings.IndexByte(block, '\n'); i >= 0 {
			line, block = block[:i], block[i+1:]
		} else {
			block = ""
		}
		m.Headers = append(m.Headers, ParseLine(line))
	}
	return m
}

// ParseLine splits one header line at the first ": " (contract §2.1). "Key:" and "Key: " both mean
// an empty value; a line without a colon is kept under the pseudo-key "__raw".
func ParseLine(line string) Header {
	if i := strings.Index(line, ": "); i >= 0 {
		return Header{Name: line[:i], Value: line[i+2:]}
	}
	if strings.HasSuffix(line, ":") {
		return Header{Name: line[:len(line)-1], Value: ""}
	}
	return Header{Name: rawKey, Value: line}
}

// ParseMessage parses one complete message (its bytes up to, and optionally including, the blank
// line). It is the pure form of Reader.ReadMessage, for tests and tools.
func ParseMessage(b []byte) (*Message, error) {
	m, err := NewReader(bytes.NewReader(b)).ReadMessage()
	if err == io.EOF {
		return nil, errors.New("ami: empty message")
	}
	return m, err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
