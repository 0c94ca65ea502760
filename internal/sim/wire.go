package sim

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/odoopbx/odoopbx/internal/ami"
)

// maxActionBytes bounds one incoming action, so a client that never sends the blank line cannot
// make the simulator buffer without limit.
const maxActionBytes = 64 << 10

var errActionTooLong = errors.New("sim: action too long")

// actionReader frames the client's actions: CRLF (or bare LF) lines, a blank line ends an action,
// blank lines between actions are skipped, and each line is split at the first ": " (contract §2.1).
type actionReader struct {
	r *bufio.Reader
}

func newActionReader(r io.Reader) *actionReader {
	return &actionReader{r: bufio.NewReaderSize(r, 4096)}
}

// readAction returns the next action, or io.EOF when the client closed the connection between
// actions.
func (ar *actionReader) readAction() (*ami.Message, error) {
	msg := &ami.Message{}
	size := 0
	for {
		line, err := ar.r.ReadString('\n')
		size += len(line)
		if size > maxActionBytes {
			return nil, errActionTooLong
		}
		if err != nil {
			if errors.Is(err, io.EOF) && len(msg.Headers) > 0 {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if line == "" {
			if len(msg.Headers) == 0 {
				continue
			}
			return msg, nil
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			msg.Add("__raw", line)
			continue
		}
		msg.Add(strings.TrimSpace(name), strings.TrimPrefix(value, " "))
	}
}

// encodeBytes is the wire form Asterisk writes: "Name: Value" CRLF lines and a blank line.
func encodeBytes(m *ami.Message) []byte {
	return m.AppendWire(make([]byte, 0, 40*len(m.Headers)))
}

// banner is the first line of every session; Asterisk 22 speaks AMI 11.0.0.
func banner(amiVersion string) []byte {
	return fmt.Appendf(nil, "Asterisk Call Manager/%s\r\n", amiVersion)
}
