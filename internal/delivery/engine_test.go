package delivery_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/odoopbx/odoopbx/internal/control"
	"github.com/odoopbx/odoopbx/internal/delivery"
	"github.com/odoopbx/odoopbx/internal/odoo"
	"github.com/odoopbx/odoopbx/internal/odoo/odootest"
	"github.com/odoopbx/odoopbx/internal/spool"
)

const model, method = "asterisk_plus.event", "on_event"

var fastBackoff = delivery.Backoff{Initial: 5 * time.Millisecond, Max: 40 * time.Millisecond, Jitter: 0.2}

// harness is one engine on one spool talking to one fake Odoo.
type harness struct {
	t      *testing.T
	dir    string
	srv    *odootest.Server
	client *odoo.JSONRPC
	track  *trackingClient
	sp     *spool.Spool
	eng    *delivery.Engine
	reg    *prometheus.Registry
}

func newHarness(t *testing.T, srv *odootest.Server, dir string, parallel int, spOpts spool.Options) *harness {
	t.Helper()
	if srv == nil {
		srv = odootest.Start(t, odootest.Options{})
	}
	if dir == "" {
		dir = t.TempDir()
	}
	client, err := odoo.NewJSONRPC(odoo.Options{URL: srv.URL(), DB: srv.DB(), User: srv.User(), Password: srv.Password(),
		ConnectTimeout: time.Second, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, dir: dir, srv: srv, client: client, reg: prometheus.NewRegistry()}
	h.track = &trackingClient{inner: loginClient{client}, t: t, inFlight: map[string]bool{}}
	h.open(parallel, spOpts)
	t.Cleanup(h.close)
	return h
}

func (h *harness) open(parallel int, spOpts spool.Options) {
	h.t.Helper()
	sp, err := spool.Open(h.dir, spOpts)
	if err != nil {
		h.t.Fatal(err)
	}
	h.sp = sp
	h.reg = prometheus.NewRegistry()
	h.eng = delivery.New(delivery.Config{Spool: sp, Odoo: h.track, MaxParallel: parallel, Backoff: fastBackoff,
		Registerer: h.reg, Logger: slog.New(slog.DiscardHandler)})
	if err := h.eng.Start(context.Background()); err != nil {
		h.t.Fatal(err)
	}
}

// close stops the engine without draining and closes the spool, as a killed process would leave it
// (minus the unsynced acknowledgements, which only cause re-deliveries).
func (h *harness) close() {
	if h.eng == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.eng.Stop(ctx); err != nil {
		h.t.Errorf("Stop: %v", err)
	}
	if err := h.sp.Close(); err != nil {
		h.t.Errorf("spool Close: %v", err)
	}
	h.eng = nil
}

func (h *harness) enqueue(lane string, n int, mod func(*delivery.Item)) {
	h.t.Helper()
	it := delivery.Item{Lane: lane, Model: model, Method: method, Origin: "event:Test",
		Args: json.RawMessage(fmt.Sprintf(`[{"lane":%q,"n":%d}]`, lane, n))}
	if mod != nil {
		mod(&it)
	}
	if err := h.eng.Enqueue(context.Background(), it); err != nil {
		h.t.Fatalf("Enqueue %s/%d: %v", lane, n, err)
	}
}

// waitFor polls cond (a wait for an outcome, not an ordering tool) until it holds or 20 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

type laneN struct {
	Lane string `json:"lane"`
	N    int    `json:"n"`
}

func decodeArg(t *testing.T, raw json.RawMessage) laneN {
	var a []laneN
	if err := json.Unmarshal(raw, &a); err != nil || len(a) != 1 {
		t.Fatalf("args %s: %v", raw, err)
	}
	return a[0]
}

// delivered returns, per lane, the n of each call Odoo answered ok, in arrival order, with
// consecutive repeats (at-least-once re-deliveries after a cut connection) collapsed.
func delivered(t *testing.T, srv *odootest.Server) map[string][]int {
	out := map[string][]int{}
	for _, c := range srv.CallsTo(model, method) {
		if c.Answer != "ok" {
			continue
		}
		a := decodeArg(t, c.RawArgs)
		seq := out[a.Lane]
		if len(seq) > 0 && seq[len(seq)-1] == a.N {
			continue
		}
		out[a.Lane] = append(seq, a.N)
	}
	return out
}

func checkComplete(t *testing.T, got map[string][]int, lanes []string, n int) {
	t.Helper()
	for _, lane := range lanes {
		seq := got[lane]
		if len(seq) != n {
			t.Fatalf("lane %s: %d delivered, want %d: %v", lane, len(seq), n, seq)
		}
		for i, v := range seq {
			if v != i {
				t.Fatalf("lane %s out of order at %d: %v", lane, i, seq)
			}
		}
	}
}

func countOK(srv *odootest.Server) int {
	n := 0
	for _, c := range srv.Calls() {
		if c.Answer == "ok" {
			n++
		}
	}
	return n
}

// trackingClient fails the test if two calls of one lane overlap (the strict ordering guarantee).
type trackingClient struct {
	inner    odoo.Client
	t        *testing.T
	mu       sync.Mutex
	inFlight map[string]bool
	maxPar   int
	cur      int
}

func (c *trackingClient) ExecuteKw(ctx context.Context, m, meth string, args []any, kw map[string]any) (json.RawMessage, error) {
	lane := ""
	if len(args) == 1 {
		var a laneN
		raw, ok := args[0].(json.RawMessage)
		if !ok {
			c.t.Errorf("argument passed as %T, not verbatim JSON", args[0])
		}
		if json.Unmarshal(raw, &a) == nil {
			lane = a.Lane
		}
	}
	c.mu.Lock()
	if c.inFlight[lane] {
		c.t.Errorf("two calls of lane %s in flight at once", lane)
	}
	c.inFlight[lane] = true
	c.cur++
	c.maxPar = max(c.maxPar, c.cur)
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.inFlight, lane)
		c.cur--
		c.mu.Unlock()
	}()
	return c.inner.ExecuteKw(ctx, m, meth, args, kw)
}

func (c *trackingClient) Login(ctx context.Context) error { return c.inner.(loginClient).Login(ctx) }

type loginClient struct{ *odoo.JSONRPC }

func TestOrderPerLaneUnderParallelLanes(t *testing.T) {
	srv := odootest.Start(t, odootest.Options{})
	srv.HandleAll(func(odootest.Call) odootest.Response {
		return odootest.Response{Delay: time.Duration(rand.IntN(2000)) * time.Microsecond}
	})
	h := newHarness(t, srv, "", 4, spool.Options{})
	const lanes, per = 12, 25
	var names []string
	for l := 0; l < lanes; l++ {
		names = append(names, fmt.Sprintf("lane-%02d", l))
	}
	var wg sync.WaitGroup
	for _, lane := range names {
		wg.Add(1)
		go func(lane string) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				h.enqueue(lane, i, nil)
			}
		}(lane)
	}
	wg.Wait()
	waitFor(t, "every item delivered", func() bool { return h.sp.Stats().Pending == 0 && countOK(srv) >= lanes*per })
	checkComplete(t, delivered(t, srv), names, per)
	if countOK(srv) != lanes*per {
		t.Fatalf("calls = %d, want exactly %d without failures", countOK(srv), lanes*per)
	}
	h.track.mu.Lock()
	maxPar := h.track.maxPar
	h.track.mu.Unlock()
	if maxPar > 4 {
		t.Fatalf("%d calls in flight, max_parallel is 4", maxPar)
	}
	if maxPar < 2 {
		t.Fatalf("lanes never ran in parallel (max %d in flight)", maxPar)
	}
	if v := metricValue(t, h.reg, "odoopbx_delivery_items_out_total", nil); v != lanes*per {
		t.Fatalf("items_out = %v", v)
	}
	if v := metricValue(t, h.reg, "odoopbx_delivery_items_in_total", nil); v != lanes*per {
		t.Fatalf("items_in = %v", v)
	}
}

func TestHandlerErrorDeadLettersAfterThreeAttempts(t *testing.T) {
	srv := odootest.Start(t, odootest.Options{})
	srv.HandleAll(func(c odootest.Call) odootest.Response {
		if string(c.RawArgs) == `[{"lane":"a","n":1}]` {
			return odootest.Response{ErrorName: odootest.ErrUserError, ErrorMessage: "partner not found"}
		}
		return odootest.Response{}
	})
	h := newHarness(t, srv, "", 2, spool.Options{})
	for i := 0; i < 3; i++ {
		h.enqueue("a", i, nil)
	}
	waitFor(t, "lane a drained", func() bool { return h.sp.Stats().Pending == 0 && h.sp.Stats().Dead == 1 })
	var got []string
	for _, c := range srv.Calls() {
		a := decodeArg(t, c.RawArgs)
		got = append(got, fmt.Sprintf("%d:%s", a.N, c.Answer))
	}
	want := fmt.Sprint([]string{"0:ok", "1:" + odootest.ErrUserError, "1:" + odootest.ErrUserError, "1:" + odootest.ErrUserError, "2:ok"})
	if fmt.Sprint(got) != want {
		t.Fatalf("calls = %v\nwant   %v", got, want)
	}
	dead, err := h.sp.DeadItems()
	if err != nil || len(dead) != 1 {
		t.Fatalf("dead = %v %v", dead, err)
	}
	d := dead[0]
	if d.Attempts != 3 || d.Origin != "event:Test" || d.Lane != "a" || d.Reason == "" ||
		d.LastError == "" || decodeArg(t, d.Args).N != 1 {
		t.Fatalf("dead item = %+v", d)
	}
	if v := metricValue(t, h.reg, "odoopbx_delivery_failures_total", map[string]string{"kind": "handler"}); v != 3 {
		t.Fatalf("handler failures = %v", v)
	}
	if v := metricValue(t, h.reg, "odoopbx_delivery_dead_letters_total", nil); v != 1 {
		t.Fatalf("dead letters = %v", v)
	}
	if hl := h.eng.Health(); hl.Detail["dead"] != 1 || hl.Detail["odoo"] != delivery.OdooOK {
		t.Fatalf("health = %+v", hl)
	}
}

func TestOdooStoppedMidStreamAndRestarted(t *testing.T) {
	srv := odootest.Start(t, odootest.Options{})
	srv.HandleAll(func(odootest.Call) odootest.Response {
		return odootest.Response{Delay: time.Duration(rand.IntN(1000)) * time.Microsecond}
	})
	h := newHarness(t, srv, "", 4, spool.Options{})
	const lanes, per = 8, 40
	var names []string
	for l := 0; l < lanes; l++ {
		names = append(names, fmt.Sprintf("call-%d", l))
	}
	next := 0
	enqueueRound := func() {
		for _, lane := range names {
			h.enqueue(lane, next, nil)
		}
		next++
	}
	for next < per/4 {
		enqueueRound()
	}
	waitFor(t, "some deliveries", func() bool { return countOK(srv) >= 20 })
	srv.Stop()
	for next < per*3/4 {
		enqueueRound()
	}
	waitFor(t, "Odoo reported unreachable", func() bool { return h.eng.Health().Detail["odoo"] == delivery.OdooUnreachable })
	if h.eng.Health().OK {
		t.Fatal("Health OK while Odoo is down")
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	for next < per {
		enqueueRound()
	}
	waitFor(t, "backlog replayed", func() bool { return h.sp.Stats().Pending == 0 })
	checkComplete(t, delivered(t, srv), names, per)
	if st := h.sp.Stats(); st.Dead != 0 {
		t.Fatalf("dead letters after an outage: %+v", st)
	}
	if v := metricValue(t, h.reg, "odoopbx_delivery_failures_total", map[string]string{"kind": "transient"}); v == 0 {
		t.Fatal("no transient failure counted during the outage")
	}
	if hl := h.eng.Health(); hl.Detail["odoo"] != delivery.OdooOK {
		t.Fatalf("health after restart = %+v", hl)
	}
}

func TestAuthFailurePausesAndResumes(t *testing.T) {
	srv := odootest.Start(t, odootest.Options{})
	h := newHarness(t, srv, "", 3, spool.Options{})
	h.enqueue("a", 0, nil)
	waitFor(t, "first delivery", func() bool { return h.sp.Stats().Pending == 0 })
	// The agent's password stops working (rotated in Odoo): every call and re-login fails.
	orig := srv.Password()
	srv.SetPassword("rotated")
	for i := 1; i < 10; i++ {
		h.enqueue("a", i, nil)
		h.enqueue("b", i, nil)
	}
	waitFor(t, "paused on auth", func() bool {
		hl := h.eng.Health()
		return hl.Detail["paused"] == true && hl.Detail["odoo"] == delivery.OdooAuthFailed && !hl.OK
	})
	waitFor(t, "re-login attempts", func() bool { return srv.LoginFailures() >= 3 })
	if v := metricValue(t, h.reg, "odoopbx_delivery_paused", nil); v != 1 {
		t.Fatalf("paused gauge = %v", v)
	}
	callsWhilePaused := len(srv.Calls())
	// Fixed in Odoo: the old password works again.
	srv.SetPassword(orig)
	waitFor(t, "resumed and drained", func() bool { return h.sp.Stats().Pending == 0 })
	if st := h.sp.Stats(); st.Dead != 0 {
		t.Fatalf("items dead-lettered on an auth failure: %+v", st)
	}
	got := delivered(t, srv)
	want := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	if fmt.Sprint(got["a"]) != fmt.Sprint(want) || fmt.Sprint(got["b"]) != fmt.Sprint(want[1:]) {
		t.Fatalf("delivered = %v", got)
	}
	// While paused, the engine only re-logged in; it did not keep hammering execute_kw.
	if callsWhilePaused > 6 {
		t.Fatalf("%d execute_kw calls while paused", callsWhilePaused)
	}
	if hl := h.eng.Health(); hl.Detail["paused"] != false || hl.Detail["odoo"] != delivery.OdooOK {
		t.Fatalf("health after resume = %+v", hl)
	}
}

func TestKilledWithBacklogDeliversAfterReopen(t *testing.T) {
	srv := odootest.Start(t, odootest.Options{})
	srv.HandleAll(func(odootest.Call) odootest.Response { return odootest.Response{Delay: 2 * time.Millisecond} })
	dir := t.TempDir()
	h := newHarness(t, srv, dir, 2, spool.Options{})
	lanes := []string{"x", "y", "z"}
	const per = 30
	for i := 0; i < per; i++ {
		for _, l := range lanes {
			h.enqueue(l, i, nil)
		}
	}
	waitFor(t, "a few deliveries", func() bool { return countOK(srv) >= 5 })
	h.close() // cut in-flight calls short, nothing drained
	if srv := countOK(srv); srv >= per*len(lanes) {
		t.Skip("everything was delivered before the stop; nothing to replay")
	}
	sp, err := spool.Open(dir, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if sp.Stats().Pending == 0 {
		t.Fatal("the reopened spool is empty")
	}
	sp.Close()

	h.open(2, spool.Options{})
	waitFor(t, "backlog delivered after reopen", func() bool { return h.sp.Stats().Pending == 0 })
	checkComplete(t, delivered(t, srv), lanes, per)
}

func TestNotBeforeHoldsOnlyItsLane(t *testing.T) {
	srv := odootest.Start(t, odootest.Options{})
	h := newHarness(t, srv, "", 2, spool.Options{})
	notBefore := time.Now().Add(300 * time.Millisecond)
	h.enqueue("slow", 0, func(it *delivery.Item) { it.NotBefore = notBefore })
	h.enqueue("slow", 1, nil)
	h.enqueue("fast", 0, nil)
	waitFor(t, "all delivered", func() bool { return h.sp.Stats().Pending == 0 })
	calls := srv.Calls()
	var order []string
	for _, c := range calls {
		a := decodeArg(t, c.RawArgs)
		order = append(order, fmt.Sprintf("%s%d", a.Lane, a.N))
		if a.Lane == "slow" && c.At.Before(notBefore) {
			t.Fatalf("%s%d delivered %s before its not-before time", a.Lane, a.N, notBefore.Sub(c.At))
		}
	}
	if fmt.Sprint(order) != "[fast0 slow0 slow1]" {
		t.Fatalf("order = %v", order)
	}
}

func TestExpiredItemsAreDeadLettered(t *testing.T) {
	srv := odootest.Start(t, odootest.Options{})
	h := newHarness(t, srv, "", 2, spool.Options{MaxAge: time.Hour})
	h.enqueue("old", 0, func(it *delivery.Item) { it.Created = time.Now().Add(-2 * time.Hour) })
	h.enqueue("old", 1, nil)
	waitFor(t, "lane drained", func() bool { return h.sp.Stats().Pending == 0 })
	got := delivered(t, srv)
	if fmt.Sprint(got["old"]) != "[1]" {
		t.Fatalf("delivered = %v", got)
	}
	dead, _ := h.sp.DeadItems()
	if len(dead) != 1 || decodeArg(t, dead[0].Args).N != 0 {
		t.Fatalf("dead = %+v", dead)
	}
}

func TestEngineMaxAgeWithoutSpoolMaxAge(t *testing.T) {
	srv := odootest.Start(t, odootest.Options{})
	srv.Stop()
	h := newHarness(t, srv, "", 1, spool.Options{})
	h.close()
	h.sp, _ = spool.Open(h.dir, spool.Options{})
	h.reg = prometheus.NewRegistry()
	h.eng = delivery.New(delivery.Config{Spool: h.sp, Odoo: h.track, MaxParallel: 1, Backoff: fastBackoff, MaxAge: 150 * time.Millisecond})
	if err := h.eng.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Odoo stays down: the item is retried until it is older than max_age, then dead-lettered.
	h.enqueue("a", 0, nil)
	waitFor(t, "dead-lettered after max_age", func() bool { return h.sp.Stats().Dead == 1 })
	dead, _ := h.sp.DeadItems()
	if !strings.Contains(dead[0].Reason, "spool.max_age") {
		t.Fatalf("reason = %q", dead[0].Reason)
	}
	if d := time.Since(dead[0].Created); d < 150*time.Millisecond {
		t.Fatalf("dead-lettered after %s, before max_age", d)
	}
}

func TestMissingMethodDeadLetters(t *testing.T) {
	srv := odootest.Start(t, odootest.Options{})
	srv.HandleAll(func(c odootest.Call) odootest.Response {
		return odootest.Response{ErrorName: odootest.ErrAttributeError,
			ErrorMessage: fmt.Sprintf("The method '%s' does not exist on the model '%s'", c.Method, c.Model)}
	})
	h := newHarness(t, srv, "", 1, spool.Options{})
	h.enqueue("a", 0, nil)
	waitFor(t, "dead letter", func() bool { return h.sp.Stats().Dead == 1 })
	if n := len(srv.Calls()); n != 3 {
		t.Fatalf("calls = %d, want 3 attempts", n)
	}
	if v := metricValue(t, h.reg, "odoopbx_delivery_failures_total", map[string]string{"kind": "missing_method"}); v != 3 {
		t.Fatalf("missing_method failures = %v", v)
	}
}

func TestConfigErrorPausesUntilFixed(t *testing.T) {
	srv := odootest.Start(t, odootest.Options{})
	h := newHarness(t, srv, "", 2, spool.Options{})
	if err := h.client.Login(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv.Redirect(301, "/odoo/jsonrpc") // a proxy turned POST into GET: nothing can be delivered
	for i := 0; i < 5; i++ {
		h.enqueue("a", i, nil)
	}
	waitFor(t, "paused on config error", func() bool {
		hl := h.eng.Health()
		return hl.Detail["paused"] == true && hl.Detail["odoo"] == delivery.OdooConfigError
	})
	srv.Redirect(308, "/odoo/jsonrpc") // fixed
	waitFor(t, "drained", func() bool { return h.sp.Stats().Pending == 0 })
	if st := h.sp.Stats(); st.Dead != 0 {
		t.Fatalf("dead letters on a config error: %+v", st)
	}
	checkComplete(t, delivered(t, srv), []string{"a"}, 5)
}

func TestArgumentsPassVerbatim(t *testing.T) {
	srv := odootest.Start(t, odootest.Options{})
	h := newHarness(t, srv, "", 1, spool.Options{})
	args := `[{"lane":"a","n":0,"big":12345678901234567890,"f":0.1}, [1, "x", null]]`
	kwargs := `{"context":{"tz":"UTC"},"id":9007199254740993}`
	h.enqueue("a", 0, func(it *delivery.Item) { it.Args = json.RawMessage(args); it.Kwargs = json.RawMessage(kwargs) })
	waitFor(t, "delivered", func() bool { return h.sp.Stats().Pending == 0 })
	c := srv.Calls()[0]
	if string(c.RawArgs) != `[{"lane":"a","n":0,"big":12345678901234567890,"f":0.1},[1,"x",null]]` {
		t.Fatalf("args arrived as %s", c.RawArgs)
	}
	if string(c.RawKwargs) != `{"context":{"tz":"UTC"},"id":9007199254740993}` {
		t.Fatalf("kwargs arrived as %s", c.RawKwargs)
	}
}

type panicky struct{}

func (panicky) ExecuteKw(context.Context, string, string, []any, map[string]any) (json.RawMessage, error) {
	panic("client bug")
}

func TestClientPanicIsAHandlerError(t *testing.T) {
	sp, err := spool.Open(t.TempDir(), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	eng := delivery.New(delivery.Config{Spool: sp, Odoo: panicky{}, Backoff: fastBackoff})
	if err := eng.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer eng.Stop(context.Background())
	if err := eng.Enqueue(context.Background(), delivery.Item{Lane: "a", Model: "m", Method: "x"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "dead letter", func() bool { return sp.Stats().Dead == 1 })
}

func TestSpoolFullRefusesAndCounts(t *testing.T) {
	srv := odootest.Start(t, odootest.Options{})
	srv.Stop() // nothing leaves the spool
	h := newHarness(t, srv, "", 1, spool.Options{MaxBytes: 600})
	var err error
	for i := 0; i < 50 && err == nil; i++ {
		it := delivery.Item{Lane: "a", Model: model, Method: method, Args: json.RawMessage(`[1]`)}
		err = h.eng.Enqueue(context.Background(), it)
	}
	if err == nil {
		t.Fatal("a 600-byte spool took 50 items")
	}
	if v := metricValue(t, h.reg, "odoopbx_delivery_refused_total", nil); v != 1 {
		t.Fatalf("refused = %v", v)
	}
	if hl := h.eng.Health(); hl.Detail["refused"] != uint64(1) {
		t.Fatalf("health = %+v", hl)
	}
}

func TestControlRoutes(t *testing.T) {
	srv := odootest.Start(t, odootest.Options{})
	srv.HandleAll(func(c odootest.Call) odootest.Response {
		return odootest.Response{ErrorName: odootest.ErrValidationError, ErrorMessage: "bad"}
	})
	h := newHarness(t, srv, "", 1, spool.Options{})
	h.enqueue("a", 0, nil)
	h.enqueue("b", 0, nil)
	waitFor(t, "two dead letters", func() bool { return h.sp.Stats().Dead == 2 })

	stateDir, err := os.MkdirTemp("", "dq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(stateDir) })
	cs := control.NewServer(filepath.Join(stateDir, control.SocketName), slog.New(slog.DiscardHandler))
	h.eng.ControlRoutes(cs)
	if err := cs.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Stop(context.Background()) })
	ctx := context.Background()

	var st delivery.QueueStatus
	if err := control.Call(ctx, stateDir, "GET", "/queue", nil, &st); err != nil {
		t.Fatal(err)
	}
	if st.Dead != 2 || st.Pending != 0 || st.Odoo != delivery.OdooOK {
		t.Fatalf("status = %+v", st)
	}
	var dead []delivery.DeadItem
	if err := control.Call(ctx, stateDir, "GET", "/queue/dead", nil, &dead); err != nil || len(dead) != 2 {
		t.Fatalf("dead = %+v %v", dead, err)
	}
	// Odoo is fixed; retry one by numeric id, drop the other by string id.
	srv.HandleAll(nil)
	var res delivery.ChangeResult
	var idNum uint64
	fmt.Sscan(dead[0].ID, &idNum)
	if err := control.Call(ctx, stateDir, "POST", "/queue/retry", map[string]any{"id": idNum}, &res); err != nil || len(res.IDs) != 1 {
		t.Fatalf("retry = %+v %v", res, err)
	}
	if err := control.Call(ctx, stateDir, "POST", "/queue/drop", map[string]any{"id": dead[1].ID}, &res); err != nil {
		t.Fatalf("drop: %v", err)
	}
	waitFor(t, "retried item delivered", func() bool { return h.sp.Stats().Pending == 0 && countOK(srv) == 1 })
	if st := h.sp.Stats(); st.Dead != 0 {
		t.Fatalf("stats = %+v", st)
	}
	if err := control.Call(ctx, stateDir, "POST", "/queue/drop", map[string]any{"id": "999999"}, nil); err == nil {
		t.Fatal("dropping an unknown id succeeded")
	}
	if err := control.Call(ctx, stateDir, "POST", "/queue/retry", map[string]any{}, nil); err == nil {
		t.Fatal("retry without id or all succeeded")
	}
	if err := control.Call(ctx, stateDir, "POST", "/queue/retry", map[string]any{"all": true}, &res); err != nil || len(res.IDs) != 0 {
		t.Fatalf("retry all on an empty list = %+v %v", res, err)
	}
}

func TestBackoffDelay(t *testing.T) {
	b := delivery.Backoff{Initial: 500 * time.Millisecond, Max: 60 * time.Second}
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second}
	for i, w := range want {
		if d := b.Delay(i + 1); d != w {
			t.Fatalf("Delay(%d) = %s, want %s", i+1, d, w)
		}
	}
	if d := b.Delay(20); d != 60*time.Second {
		t.Fatalf("Delay(20) = %s, want the 60 s cap", d)
	}
	b.Jitter = 0.2
	for i := 0; i < 100; i++ {
		if d := b.Delay(3); d < 1600*time.Millisecond || d > 2400*time.Millisecond {
			t.Fatalf("jittered Delay(3) = %s, outside ±20%% of 2 s", d)
		}
	}
}

func metricValue(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	t.Fatalf("metric %s %v not found", name, labels)
	return 0
}
