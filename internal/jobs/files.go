package jobs

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/odoopbx/odoopbx/internal/config"
)

// encoderNice is the niceness of the MP3 encoder, so a conversion never starves Asterisk.
const encoderNice = 10

// readRoots and deleteRoots apply the Appendix A defaults when the lists are empty.
func readRoots(cfg config.Config) []string {
	if len(cfg.Files.ReadRoots) > 0 {
		return cfg.Files.ReadRoots
	}
	return []string{cfg.AsteriskMonitorDir, cfg.AsteriskVoicemailDir}
}

func deleteRoots(cfg config.Config) []string {
	if len(cfg.Files.DeleteRoots) > 0 {
		return cfg.Files.DeleteRoots
	}
	return []string{cfg.AsteriskMonitorDir}
}

func maxFileBytes(cfg config.Config) int64 {
	if cfg.Files.MaxBytes > 0 {
		return cfg.Files.MaxBytes
	}
	return 64 << 20
}

// recordingGetFile implements recording.get_file (contract §4.5).
func (b *builtins) recordingGetFile(ctx context.Context, args []json.RawMessage, kwargs map[string]json.RawMessage) (any, error) {
	cfg := b.deps.Config()
	filePath, err := argString(args, 0, "file_path")
	if err != nil {
		return nil, err
	}
	access, err := kwString(kwargs, "recordings_access", "local")
	if err != nil {
		return nil, err
	}
	switch strings.ToLower(access) {
	case "local", "":
	case "remote", "asterisk_http":
		// Odoo fetches the file itself; the agent only says where it is.
		url, err := kwString(kwargs, "recordings_access_url", "")
		if err != nil {
			return nil, err
		}
		if !filepath.IsAbs(filePath) && filepath.IsAbs(cfg.AsteriskMonitorDir) {
			filePath = filepath.Join(cfg.AsteriskMonitorDir, filePath)
		}
		return map[string]any{"file_path": filePath, "recording_access": access, "recording_access_url": url}, nil
	case "s3":
		return nil, Errorf(CodeUnsupported, "recordings_access s3 is not supported by the agent")
	default:
		return nil, Errorf(CodeInvalidArgs, "unknown recordings_access %q (local, remote or asterisk_http)", access)
	}
	format, err := kwString(kwargs, "file_format", "wav")
	if err != nil {
		return nil, err
	}
	format = strings.ToLower(format)
	if format != "wav" && format != "mp3" {
		return nil, Errorf(CodeInvalidArgs, "file_format must be wav or mp3, not %q", format)
	}
	bitrate, err := kwInt(kwargs, "mp3_bitrate", 96, 16, 128)
	if err != nil {
		return nil, err
	}
	quality, err := kwInt(kwargs, "mp3_quality", 4, 2, 7)
	if err != nil {
		return nil, err
	}

	c, err := confine(filePath, cfg.AsteriskMonitorDir, readRoots(cfg))
	if err != nil {
		return nil, err
	}
	select {
	case b.recordings <- struct{}{}:
		defer func() { <-b.recordings }()
	case <-ctx.Done():
		return nil, Errorf(CodeTimeout, "no slot to read %s before the job's timeout (other recordings are being read)", c.Path)
	}
	data, err := readConfined(c, maxFileBytes(cfg))
	if err != nil {
		return nil, err
	}
	result := map[string]any{"file_name": filepath.Base(c.Path), "file_path": c.Path}
	if format == "mp3" {
		mp3, err := b.encodeMP3(ctx, cfg, data, bitrate, quality)
		if err != nil {
			b.deps.Logger.Warn("jobs: mp3 encoding failed, returning WAV", "file", c.Path, "err", err)
			result["warning"] = "MP3 conversion failed, the recording is returned as WAV: " + err.Error()
		} else {
			data = mp3
			result["file_name"] = strings.TrimSuffix(filepath.Base(c.Path), filepath.Ext(c.Path)) + ".mp3"
		}
	}
	result["file_data"] = base64.StdEncoding.EncodeToString(data)
	return result, nil
}

// readConfined reads a regular file of at most limit bytes through os.Root.
func readConfined(c confined, limit int64) ([]byte, error) {
	root, err := openRoot(c.Root)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	f, err := root.Open(c.Rel)
	if err != nil {
		return nil, ioError(c.Path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, ioError(c.Path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, Errorf(CodeInvalidArgs, "%s is not a regular file", c.Path)
	}
	if st.Size() > limit {
		return nil, Errorf(CodeTooLarge, "%s is %d bytes, over the limit of %d (files.max_bytes)", c.Path, st.Size(), limit)
	}
	// The file may grow between Stat and the read: read at most one byte past the limit.
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, ioError(c.Path, err)
	}
	if int64(len(data)) > limit {
		return nil, Errorf(CodeTooLarge, "%s is over the limit of %d bytes (files.max_bytes)", c.Path, limit)
	}
	return data, nil
}

// encodeMP3 runs the external encoder (lame's command line: read WAV on stdin, write MP3 on
// stdout) at low priority.
func (b *builtins) encodeMP3(ctx context.Context, cfg config.Config, wav []byte, bitrate, quality int) ([]byte, error) {
	encoder := cfg.Files.MP3Encoder
	if encoder == "" {
		encoder = "lame"
	}
	bin, err := exec.LookPath(encoder)
	if err != nil {
		return nil, fmt.Errorf("encoder %s is not installed", encoder)
	}
	cmd := exec.CommandContext(ctx, bin, "--quiet", "-b", strconv.Itoa(bitrate), "-q", strconv.Itoa(quality), "-", "-")
	cmd.Stdin = bytes.NewReader(wav)
	out := &cappedBuffer{limit: maxFileBytes(cfg)}
	stderr := &cappedBuffer{limit: 4096}
	cmd.Stdout, cmd.Stderr = out, stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %v", encoder, err)
	}
	// Lowered right after the start: the few instructions before are not worth a nice(1) wrapper.
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, cmd.Process.Pid, encoderNice)
	if err := cmd.Wait(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg != "" {
			return nil, fmt.Errorf("%s: %v: %s", encoder, err, msg)
		}
		return nil, fmt.Errorf("%s: %v", encoder, err)
	}
	if out.overflow {
		return nil, fmt.Errorf("%s output is over files.max_bytes", encoder)
	}
	if out.Len() == 0 {
		return nil, fmt.Errorf("%s produced no output", encoder)
	}
	return out.Bytes(), nil
}

// cappedBuffer keeps at most limit bytes and notes an overflow, so a runaway encoder cannot
// exhaust memory.
type cappedBuffer struct {
	bytes.Buffer
	limit    int64
	overflow bool
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	room := c.limit - int64(c.Len())
	if int64(len(p)) > room {
		c.overflow = true
		if room > 0 {
			c.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return c.Buffer.Write(p)
}

// fileDelete implements file.delete: true when removed, false when there was nothing to remove.
func (b *builtins) fileDelete(ctx context.Context, args []json.RawMessage, kwargs map[string]json.RawMessage) (any, error) {
	cfg := b.deps.Config()
	p, err := argString(args, 0, "path")
	if err != nil {
		return nil, err
	}
	c, err := confine(p, cfg.AsteriskMonitorDir, deleteRoots(cfg))
	if err != nil {
		if e, ok := err.(*Error); ok && e.Code == CodeNotFound {
			return false, nil
		}
		return nil, err
	}
	root, err := openRoot(c.Root)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	st, err := root.Lstat(c.Rel)
	if err != nil {
		if os.IsNotExist(err) {
			return false, nil
		}
		return nil, ioError(c.Path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, Errorf(CodeInvalidArgs, "%s is not a regular file", c.Path)
	}
	if err := root.Remove(c.Rel); err != nil {
		if os.IsNotExist(err) {
			return false, nil
		}
		return nil, ioError(c.Path, err)
	}
	return true, nil
}

// kwInt returns kwargs[name] as an integer within [lo, hi], or def when absent or null.
func kwInt(kwargs map[string]json.RawMessage, name string, def, lo, hi int) (int, error) {
	f, err := kwNumber(kwargs, name, float64(def), float64(lo), float64(hi))
	if err != nil {
		return 0, err
	}
	if f != float64(int(f)) {
		return 0, Errorf(CodeInvalidArgs, "kwarg %s must be a whole number", name)
	}
	return int(f), nil
}
