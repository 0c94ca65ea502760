package spool_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/odoopbx/odoopbx/internal/delivery"
	"github.com/odoopbx/odoopbx/internal/spool"
)

func open(t *testing.T, dir string, o spool.Options) *spool.Spool {
	t.Helper()
	s, err := spool.Open(dir, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func item(lane string, n int) delivery.Item {
	return delivery.Item{Lane: lane, Model: "asterisk_plus.call", Method: "on_event",
		Args: json.RawMessage(fmt.Sprintf(`[{"n":%d}]`, n)), Origin: "event:Test"}
}

func argN(t *testing.T, it delivery.Item) int {
	t.Helper()
	var a []struct{ N int }
	if err := json.Unmarshal(it.Args, &a); err != nil || len(a) != 1 {
		t.Fatalf("args %s: %v", it.Args, err)
	}
	return a[0].N
}

// drain takes every pending item lane by lane, acknowledging each, and returns the n values per lane.
func drain(t *testing.T, s *spool.Spool) map[string][]int {
	t.Helper()
	out := map[string][]int{}
	for _, lane := range s.Lanes() {
		for {
			it, ok, err := s.Head(lane)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			out[lane] = append(out[lane], argN(t, it))
			if err := s.Done(it.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

func TestAppendOrderAndIDs(t *testing.T) {
	s := open(t, t.TempDir(), spool.Options{})
	ctx := context.Background()
	var last uint64
	for i := 0; i < 10; i++ {
		got, err := s.Append(ctx, item("a", i), item("b", i))
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range got {
			id, err := spool.ParseID(it.ID)
			if err != nil || id <= last {
				t.Fatalf("id %q not increasing after %d", it.ID, last)
			}
			last = id
			if it.Created.IsZero() {
				t.Fatal("Created not set")
			}
		}
	}
	st := s.Stats()
	if st.Pending != 20 || st.Lanes != 2 || st.Bytes <= 0 {
		t.Fatalf("stats = %+v", st)
	}
	got := drain(t, s)
	for _, lane := range []string{"a", "b"} {
		if fmt.Sprint(got[lane]) != "[0 1 2 3 4 5 6 7 8 9]" {
			t.Fatalf("lane %s order = %v", lane, got[lane])
		}
	}
	if st := s.Stats(); st.Pending != 0 || st.Bytes != 0 || st.Lanes != 0 {
		t.Fatalf("after drain: %+v", st)
	}
}

func TestValidation(t *testing.T) {
	s := open(t, t.TempDir(), spool.Options{})
	bad := []delivery.Item{
		{Model: "m", Method: "x"},
		{Lane: "l", Method: "x"},
		{Lane: "l", Model: "m", Method: "x", Args: json.RawMessage(`{"not":"array"}`)},
		{Lane: "l", Model: "m", Method: "x", Args: json.RawMessage(`[`)},
		{Lane: "l", Model: "m", Method: "x", Kwargs: json.RawMessage(`[1]`)},
	}
	for i, it := range bad {
		if _, err := s.Append(context.Background(), item("ok", 1), it); err == nil {
			t.Errorf("bad item %d accepted", i)
		}
	}
	if st := s.Stats(); st.Pending != 0 {
		t.Fatalf("a batch with a bad item stored %d items", st.Pending)
	}
	got, err := s.Append(context.Background(), delivery.Item{Lane: "l", Model: "m", Method: "x"})
	if err != nil || string(got[0].Args) != "[]" {
		t.Fatalf("empty args: %v %s", err, got[0].Args)
	}
}

func TestDurableAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := spool.Open(dir, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var ids []string
	for i := 0; i < 5; i++ {
		got, err := s.Append(ctx, item("a", i))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, got[0].ID)
	}
	if err := s.Done(ids[0]); err != nil {
		t.Fatal(err)
	}
	head, _, _ := s.Head("a")
	head.Attempts, head.LastError = 2, "boom"
	if err := s.Update(head); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, item("a", 9)); !errors.Is(err, spool.ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}

	s2 := open(t, dir, spool.Options{})
	h, ok, err := s2.Head("a")
	if err != nil || !ok || h.ID != ids[1] || h.Attempts != 2 || h.LastError != "boom" {
		t.Fatalf("head after reopen = %+v %v %v", h, ok, err)
	}
	got, err := s2.Append(ctx, item("a", 5))
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := spool.ParseID(got[0].ID); a <= mustID(t, ids[4]) {
		t.Fatalf("id after reopen %s not above %s", got[0].ID, ids[4])
	}
	if d := drain(t, s2); fmt.Sprint(d["a"]) != "[1 2 3 4 5]" {
		t.Fatalf("after reopen = %v", d["a"])
	}
}

func mustID(t *testing.T, s string) uint64 {
	id, err := spool.ParseID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestLockedByAnotherHandle(t *testing.T) {
	dir := t.TempDir()
	open(t, dir, spool.Options{})
	_, err := spool.Open(dir, spool.Options{LockTimeout: 50 * time.Millisecond})
	if !errors.Is(err, spool.ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
}

func TestMaxBytes(t *testing.T) {
	s := open(t, t.TempDir(), spool.Options{MaxBytes: 1000})
	ctx := context.Background()
	n := 0
	var err error
	for ; n < 100; n++ {
		if _, err = s.Append(ctx, item("a", n)); err != nil {
			break
		}
	}
	if !errors.Is(err, spool.ErrFull) || !strings.Contains(err.Error(), "spool.max_bytes") {
		t.Fatalf("err = %v, want ErrFull naming spool.max_bytes", err)
	}
	if n == 0 || n == 100 {
		t.Fatalf("accepted %d items", n)
	}
	st := s.Stats()
	if st.Refused != 1 || st.Pending != n || st.Bytes > 1000 {
		t.Fatalf("stats = %+v (accepted %d)", st, n)
	}
	// Delivering one makes room again.
	h, _, _ := s.Head("a")
	if err := s.Done(h.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, item("a", 100)); err != nil {
		t.Fatalf("after making room: %v", err)
	}
}

func TestDeadRetryDrop(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, spool.Options{})
	ctx := context.Background()
	got, err := s.Append(ctx, item("a", 0), item("a", 1), item("a", 2))
	if err != nil {
		t.Fatal(err)
	}
	first := got[0]
	first.Attempts, first.LastError = 3, "ValueError: bad"
	if err := s.Dead(first, "handler error after 3 attempts"); err != nil {
		t.Fatal(err)
	}
	if h, _, _ := s.Head("a"); h.ID != got[1].ID {
		t.Fatalf("lane did not move on: head %s", h.ID)
	}
	dead, err := s.DeadItems()
	if err != nil || len(dead) != 1 || dead[0].ID != first.ID || dead[0].Attempts != 3 || dead[0].LastError != "ValueError: bad" ||
		dead[0].Reason == "" || dead[0].DeadAt.IsZero() || dead[0].Origin != "event:Test" {
		t.Fatalf("dead = %+v, %v", dead, err)
	}
	var sb strings.Builder
	if err := s.ExportDead(&sb); err != nil || strings.Count(sb.String(), "\n") != 1 || !strings.Contains(sb.String(), `"reason"`) {
		t.Fatalf("export = %q %v", sb.String(), err)
	}
	if st := s.Stats(); st.Dead != 1 || st.Pending != 2 || st.DeadBytes <= 0 {
		t.Fatalf("stats = %+v", st)
	}
	// Retry puts it back at the head (its id is older than the rest), with attempts cleared.
	it, err := s.Retry(first.ID)
	if err != nil || it.Attempts != 0 {
		t.Fatalf("retry = %+v %v", it, err)
	}
	h, _, _ := s.Head("a")
	if h.ID != first.ID || h.Attempts != 0 {
		t.Fatalf("head after retry = %+v", h)
	}
	if _, err := s.Retry(first.ID); !errors.Is(err, spool.ErrNotFound) {
		t.Fatalf("second retry: %v", err)
	}
	// Dead again, then drop it; drop a pending one too.
	if err := s.Dead(h, "again"); err != nil {
		t.Fatal(err)
	}
	if err := s.Drop(first.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Drop(got[2].ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Drop(got[2].ID); !errors.Is(err, spool.ErrNotFound) {
		t.Fatalf("drop twice: %v", err)
	}
	if err := s.Drop("nonsense"); err == nil {
		t.Fatal("bad id accepted")
	}
	if st := s.Stats(); st.Dead != 0 || st.Pending != 1 || st.DeadBytes != 0 {
		t.Fatalf("stats = %+v", st)
	}
	s.Close()
	s2 := open(t, dir, spool.Options{})
	if st := s2.Stats(); st.Dead != 0 || st.Pending != 1 {
		t.Fatalf("after reopen: %+v", st)
	}
}

func TestRetryAll(t *testing.T) {
	s := open(t, t.TempDir(), spool.Options{})
	got, _ := s.Append(context.Background(), item("a", 0), item("b", 0))
	for _, it := range got {
		if err := s.Dead(it, "x"); err != nil {
			t.Fatal(err)
		}
	}
	back, err := s.RetryAll()
	if err != nil || len(back) != 2 {
		t.Fatalf("RetryAll = %v %v", back, err)
	}
	if st := s.Stats(); st.Dead != 0 || st.Pending != 2 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestExpire(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s := open(t, t.TempDir(), spool.Options{MaxAge: time.Hour, Now: clock})
	ctx := context.Background()
	if _, err := s.Append(ctx, item("a", 0), item("b", 0)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(50 * time.Minute)
	mu.Unlock()
	if _, err := s.Append(ctx, item("a", 1)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(20 * time.Minute) // the first two are 70 min old, the third 20
	mu.Unlock()
	h, _, _ := s.Head("a")
	if !s.Expired(h) {
		t.Fatal("Expired = false for a 70-minute-old item")
	}
	n, err := s.Expire(func(lane string) bool { return lane == "b" })
	if err != nil || n != 1 {
		t.Fatalf("Expire = %d, %v", n, err)
	}
	dead, _ := s.DeadItems()
	if len(dead) != 1 || dead[0].Lane != "a" || !strings.Contains(dead[0].Reason, "spool.max_age") {
		t.Fatalf("dead = %+v", dead)
	}
	if d := drain(t, s); fmt.Sprint(d) != "map[a:[1] b:[0]]" {
		t.Fatalf("left = %v", d)
	}
}

func TestConcurrentAppends(t *testing.T) {
	s := open(t, t.TempDir(), spool.Options{})
	const writers, per = 8, 50
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			lane := "lane" + strconv.Itoa(w%4)
			for i := 0; i < per; i++ {
				// Two writers share a lane; each writer's own items must keep their order.
				if _, err := s.Append(context.Background(), item(lane, w*1000+i)); err != nil {
					t.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	st := s.Stats()
	if st.Pending != writers*per {
		t.Fatalf("pending = %d", st.Pending)
	}
	// Eight writers waiting on fsync at once must share transactions (group commit).
	if st.Commits >= writers*per {
		t.Fatalf("%d commits for %d appends: no group commit", st.Commits, writers*per)
	}
	t.Logf("%d appends in %d commits", writers*per, st.Commits)
	got := drain(t, s)
	total := 0
	for lane, ns := range got {
		last := map[int]int{}
		for _, n := range ns {
			w, i := n/1000, n%1000
			if prev, ok := last[w]; ok && i != prev+1 {
				t.Fatalf("lane %s: writer %d item %d after %d", lane, w, i, prev)
			}
			last[w] = i
			total++
		}
	}
	if total != writers*per {
		t.Fatalf("drained %d", total)
	}
}

// TestSurvivesKill appends from a child process, SIGKILLs it mid-stream, and checks that every
// append the child saw acknowledged is in the reopened spool, in order.
func TestSurvivesKill(t *testing.T) {
	if os.Getenv("SPOOL_KILL_CHILD") != "" {
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillChild$")
	cmd.Env = append(os.Environ(), "SPOOL_KILL_CHILD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var acked []string
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "ACK ") {
			acked = append(acked, strings.TrimPrefix(line, "ACK "))
			if len(acked) == 200 {
				_ = cmd.Process.Signal(syscall.SIGKILL)
				break
			}
		}
	}
	_ = cmd.Wait()
	if len(acked) < 200 {
		t.Fatalf("child acknowledged only %d appends", len(acked))
	}
	s := open(t, dir, spool.Options{})
	var ids []string
	for {
		h, ok, err := s.Head("k")
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		ids = append(ids, h.ID)
		_ = s.Done(h.ID)
	}
	if len(ids) < len(acked) {
		t.Fatalf("reopened spool has %d items, child acknowledged %d", len(ids), len(acked))
	}
	for i, id := range acked {
		if ids[i] != id {
			t.Fatalf("item %d: %s in spool, %s acknowledged", i, ids[i], id)
		}
	}
}

// TestKillChild is the child of TestSurvivesKill: it appends forever, printing each acknowledged id.
func TestKillChild(t *testing.T) {
	dir := os.Getenv("SPOOL_KILL_CHILD")
	if dir == "" {
		t.Skip("helper process for TestSurvivesKill")
	}
	s, err := spool.Open(dir, spool.Options{})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	for i := 0; ; i++ {
		got, err := s.Append(context.Background(), item("k", i))
		if err != nil {
			fmt.Println("ERR", err)
			os.Exit(1)
		}
		fmt.Println("ACK", got[0].ID)
	}
}
