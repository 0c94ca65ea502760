// Package spool is the agent's durable delivery spool (contract §3.4): a bbolt file in spool.dir
// holding every Odoo call not yet accepted, in per-lane append order, plus a dead-letter list.
//
// Appends are group-committed: every append waiting while a commit runs goes into the next
// transaction, so many appends share one fsync, and Append returns only once its items are on disk.
// Acknowledgements (Done) are applied in memory at once and committed with the next batch: a crash
// in between re-delivers the item, which at-least-once delivery allows.
package spool

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/odoopbx/odoopbx/internal/delivery"
)

// FileName is the bbolt file inside spool.dir.
const FileName = "spool.db"

var (
	bucketItems = []byte("items")
	bucketDead  = []byte("dead")
)

var (
	// ErrFull is returned (wrapped) when an append would pass spool.max_bytes.
	ErrFull = errors.New("spool: full")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("spool: closed")
	// ErrNotFound is returned by Retry, Drop and Get for an unknown id.
	ErrNotFound = delivery.ErrNotFound
	// ErrLocked means another process (the running agent) holds the spool.
	ErrLocked = errors.New("spool: locked by another process (is the agent running?)")
)

// Options bound the spool.
type Options struct {
	// MaxBytes bounds the stored items, pending and dead together (spool.max_bytes); 0 means no bound.
	MaxBytes int64
	// MaxAge is how long an item may wait (spool.max_age); Expire dead-letters older ones. 0 means forever.
	MaxAge time.Duration
	// MaxBatchDelay makes each commit wait this long for companions. Leave it 0: commits then start
	// as soon as the previous one ends, which already batches every append that arrived meanwhile
	// (and fsyncs far more often than every 50 ms). A delay adds itself to every Enqueue and caps
	// a producer that enqueues one item at a time at one item per delay. At most 50 ms.
	MaxBatchDelay time.Duration
	// LockTimeout is how long Open waits for the file lock (default 1 s), then fails with ErrLocked.
	LockTimeout time.Duration
	Logger      *slog.Logger
	// Now is the clock (tests).
	Now func() time.Time
}

// DeadItem, LaneStats and Stats are the delivery package's types (so the engine can use the spool
// through delivery.Store).
type (
	DeadItem  = delivery.DeadItem
	LaneStats = delivery.LaneStats
	Stats     = delivery.StoreStats
)

var _ delivery.Store = (*Spool)(nil)

type entry struct {
	id      uint64
	size    int64
	created time.Time
}

type opKind int

const (
	opPut opKind = iota // put items (append, update)
	opDelete
	opDead   // move from items to dead
	opUndead // move from dead to items
	opDropDead
)

type op struct {
	kind  opKind
	ids   []uint64
	vals  [][]byte // for opPut/opDead: the value to store, aligned with ids
	items []delivery.Item
	done  chan error // nil for fire-and-forget
	apply func()     // memory effect after a successful commit
	fail  func()     // memory effect after a failed commit
}

// Spool is safe for concurrent use.
type Spool struct {
	db   *bolt.DB
	opts Options
	log  *slog.Logger

	mu        sync.Mutex
	closed    bool
	seq       uint64
	lanes     map[string][]entry
	laneOf    map[uint64]string
	pendBytes int64
	deadCount int
	deadBytes int64
	deadIndex map[uint64]int64 // id -> size
	reserved  int64            // bytes of appends queued but not committed
	refused   uint64
	commits   uint64
	queue     []*op
	wake      chan struct{}
	stopped   chan struct{}
}

// Open opens (or creates) the spool in dir and loads its index.
func Open(dir string, o Options) (*Spool, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = time.Second
	}
	if o.MaxBatchDelay > 50*time.Millisecond {
		o.MaxBatchDelay = 50 * time.Millisecond
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, &bolt.Options{Timeout: o.LockTimeout})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, dir)
		}
		return nil, fmt.Errorf("spool: open %s: %w", dir, err)
	}
	s := &Spool{db: db, opts: o, log: o.Logger, lanes: map[string][]entry{}, laneOf: map[uint64]string{},
		deadIndex: map[uint64]int64{}, wake: make(chan struct{}, 1), stopped: make(chan struct{})}
	if err := s.load(); err != nil {
		db.Close()
		return nil, err
	}
	go s.commitLoop()
	return s, nil
}

func (s *Spool) load() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		items, err := tx.CreateBucketIfNotExists(bucketItems)
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		dead, err := tx.CreateBucketIfNotExists(bucketDead)
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		s.seq = items.Sequence()
		var bad [][]byte
		err = items.ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				bad = append(bad, append([]byte(nil), k...))
				return nil
			}
			var it struct {
				Lane    string    `json:"lane"`
				Created time.Time `json:"created"`
			}
			if json.Unmarshal(v, &it) != nil {
				bad = append(bad, append([]byte(nil), k...))
				return nil
			}
			id := binary.BigEndian.Uint64(k)
			s.lanes[it.Lane] = append(s.lanes[it.Lane], entry{id: id, size: int64(len(v)), created: it.Created})
			s.laneOf[id] = it.Lane
			s.pendBytes += int64(len(v))
			s.seq = max(s.seq, id)
			return nil
		})
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		for _, k := range bad {
			// Unreadable records cannot be delivered; keep them out of the lanes but visible.
			v := items.Get(k)
			s.log.Error("spool: unreadable item moved to the dead letters", "key", fmt.Sprintf("%x", k))
			d := DeadItem{Item: delivery.Item{Lane: "unreadable", Args: json.RawMessage(strconv.Quote(string(v)))}, Reason: "unreadable spool record", DeadAt: s.opts.Now()}
			s.seq++
			val, _ := json.Marshal(d)
			if err := dead.Put(key(s.seq), val); err != nil {
				return fmt.Errorf("spool: %w", err)
			}
			if err := items.Delete(k); err != nil {
				return fmt.Errorf("spool: %w", err)
			}
		}
		err = dead.ForEach(func(k, v []byte) error {
			if len(k) == 8 {
				id := binary.BigEndian.Uint64(k)
				s.deadIndex[id] = int64(len(v))
				s.deadCount++
				s.deadBytes += int64(len(v))
				s.seq = max(s.seq, id)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		return items.SetSequence(s.seq)
	})
}

func key(id uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], id)
	return b[:]
}

// FormatID and ParseID convert between the numeric id and delivery.Item.ID.
func FormatID(id uint64) string { return strconv.FormatUint(id, 10) }

func ParseID(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("spool: bad item id %q", s)
	}
	return id, nil
}

// Enqueue implements delivery.Enqueuer.
func (s *Spool) Enqueue(ctx context.Context, items ...delivery.Item) error {
	_, err := s.Append(ctx, items...)
	return err
}

// Append stores items durably at the tails of their lanes and returns them with ID and Created
// set. It returns when they are on disk, or with ErrFull (nothing stored), ErrClosed or a
// validation error naming the bad item. The items of one call are stored atomically. If ctx ends
// first, Append returns ctx's error but the items may still be stored.
func (s *Spool) Append(ctx context.Context, items ...delivery.Item) ([]delivery.Item, error) {
	if len(items) == 0 {
		return nil, nil
	}
	now := s.opts.Now()
	out := make([]delivery.Item, len(items))
	vals := make([][]byte, len(items))
	var size int64
	for i, it := range items {
		if err := validate(&it); err != nil {
			return nil, fmt.Errorf("spool: item %d (%s): %w", i, it.Origin, err)
		}
		if it.Created.IsZero() {
			it.Created = now
		}
		out[i] = it
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	ids := make([]uint64, len(out))
	for i := range out {
		s.seq++
		ids[i] = s.seq
		out[i].ID = FormatID(s.seq)
		v, err := json.Marshal(out[i])
		if err != nil {
			s.mu.Unlock()
			return nil, fmt.Errorf("spool: item %d: %w", i, err)
		}
		vals[i] = v
		size += int64(len(v))
	}
	used := s.pendBytes + s.deadBytes + s.reserved
	if s.opts.MaxBytes > 0 && used+size > s.opts.MaxBytes {
		s.refused += uint64(len(items))
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: %d items (%d bytes) refused, %d of %d bytes used (spool.max_bytes); deliver, retry or drop dead letters to make room",
			ErrFull, len(items), size, used, s.opts.MaxBytes)
	}
	s.reserved += size
	o := &op{kind: opPut, ids: ids, vals: vals, items: out, done: make(chan error, 1)}
	o.apply = func() {
		s.reserved -= size
		for i, it := range out {
			sz := int64(len(vals[i]))
			s.lanes[it.Lane] = append(s.lanes[it.Lane], entry{id: ids[i], size: sz, created: it.Created})
			s.laneOf[ids[i]] = it.Lane
			s.pendBytes += sz
		}
	}
	o.fail = func() { s.reserved -= size }
	s.enqueueLocked(o)
	s.mu.Unlock()
	select {
	case err := <-o.done:
		if err != nil {
			return nil, err
		}
		return out, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("spool: append: %w", ctx.Err())
	}
}

func validate(it *delivery.Item) error {
	if it.Lane == "" {
		return errors.New("empty lane")
	}
	if it.Model == "" || it.Method == "" {
		return errors.New("empty model or method")
	}
	if len(it.Args) == 0 {
		it.Args = json.RawMessage("[]")
	}
	var args []json.RawMessage
	if err := json.Unmarshal(it.Args, &args); err != nil {
		return fmt.Errorf("args are not a JSON array: %w", err)
	}
	if len(it.Kwargs) > 0 {
		var kw map[string]json.RawMessage
		if err := json.Unmarshal(it.Kwargs, &kw); err != nil {
			return fmt.Errorf("kwargs are not a JSON object: %w", err)
		}
	}
	return nil
}

func (s *Spool) enqueueLocked(o *op) {
	s.queue = append(s.queue, o)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Spool) commitLoop() {
	defer close(s.stopped)
	for {
		<-s.wake
		if s.opts.MaxBatchDelay > 0 {
			time.Sleep(s.opts.MaxBatchDelay) // let more appends join this commit
		}
		s.mu.Lock()
		batch := s.queue
		s.queue = nil
		closed := s.closed
		s.mu.Unlock()
		if len(batch) > 0 {
			s.commit(batch)
		}
		if closed {
			return
		}
	}
}

func (s *Spool) commit(batch []*op) {
	err := s.db.Update(func(tx *bolt.Tx) error {
		items, dead := tx.Bucket(bucketItems), tx.Bucket(bucketDead)
		for _, o := range batch {
			for i, id := range o.ids {
				var err error
				switch o.kind {
				case opPut:
					err = items.Put(key(id), o.vals[i])
				case opDelete:
					err = items.Delete(key(id))
				case opDead:
					if err = items.Delete(key(id)); err == nil {
						err = dead.Put(key(id), o.vals[i])
					}
				case opUndead:
					if err = dead.Delete(key(id)); err == nil {
						err = items.Put(key(id), o.vals[i])
					}
				case opDropDead:
					err = dead.Delete(key(id))
				}
				if err != nil {
					return err
				}
			}
		}
		s.mu.Lock()
		seq := s.seq
		s.mu.Unlock()
		return items.SetSequence(seq)
	})
	if err != nil {
		err = fmt.Errorf("spool: commit: %w", err)
		s.log.Error("spool: commit failed", "err", err, "ops", len(batch))
	}
	s.mu.Lock()
	s.commits++
	for _, o := range batch {
		if err == nil && o.apply != nil {
			o.apply()
		}
		if err != nil && o.fail != nil {
			o.fail()
		}
	}
	s.mu.Unlock()
	for _, o := range batch {
		if o.done != nil {
			o.done <- err
		}
	}
}

// submit queues an op and waits for its commit.
func (s *Spool) submit(o *op) error {
	o.done = make(chan error, 1)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.enqueueLocked(o)
	s.mu.Unlock()
	return <-o.done
}

// Lanes lists the lanes with pending items, in the order of their heads' ids (oldest first).
func (s *Spool) Lanes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.lanes))
	for l := range s.lanes {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return s.lanes[out[i]][0].id < s.lanes[out[j]][0].id })
	return out
}

// Head returns the first pending item of lane.
func (s *Spool) Head(lane string) (delivery.Item, bool, error) {
	s.mu.Lock()
	q := s.lanes[lane]
	if len(q) == 0 {
		s.mu.Unlock()
		return delivery.Item{}, false, nil
	}
	id := q[0].id
	s.mu.Unlock()
	it, err := s.get(bucketItems, id)
	if err != nil {
		return delivery.Item{}, false, err
	}
	return it.Item, true, nil
}

func (s *Spool) get(bucket []byte, id uint64) (DeadItem, error) {
	var d DeadItem
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucket).Get(key(id))
		if v == nil {
			return fmt.Errorf("%w: %d", ErrNotFound, id)
		}
		return json.Unmarshal(v, &d)
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		err = fmt.Errorf("spool: read %d: %w", id, err)
	}
	return d, err
}

// removePendingLocked takes id off its lane in memory.
func (s *Spool) removePendingLocked(id uint64) (entry, bool) {
	lane, ok := s.laneOf[id]
	if !ok {
		return entry{}, false
	}
	q := s.lanes[lane]
	for i, e := range q {
		if e.id == id {
			q = append(q[:i:i], q[i+1:]...)
			if len(q) == 0 {
				delete(s.lanes, lane)
			} else {
				s.lanes[lane] = q
			}
			delete(s.laneOf, id)
			s.pendBytes -= e.size
			return e, true
		}
	}
	return entry{}, false
}

// Done acknowledges an item Odoo accepted: it leaves its lane at once and the disk with the next
// commit (Done does not wait for it). Unknown ids are ignored (the item was dropped meanwhile).
func (s *Spool) Done(idStr string) error {
	id, err := ParseID(idStr)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if _, ok := s.removePendingLocked(id); !ok {
		return nil
	}
	s.enqueueLocked(&op{kind: opDelete, ids: []uint64{id}})
	return nil
}

// Update stores a pending item's new Attempts and LastError (the rest is kept as appended).
func (s *Spool) Update(it delivery.Item) error {
	id, err := ParseID(it.ID)
	if err != nil {
		return err
	}
	cur, err := s.get(bucketItems, id)
	if err != nil {
		return err
	}
	cur.Attempts, cur.LastError = it.Attempts, it.LastError
	v, err := json.Marshal(cur.Item)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.mu.Lock()
	lane, ok := s.laneOf[id]
	if ok {
		for i, e := range s.lanes[lane] {
			if e.id == id {
				s.pendBytes += int64(len(v)) - e.size
				s.lanes[lane][i].size = int64(len(v))
			}
		}
	}
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %d", ErrNotFound, id)
	}
	return s.submit(&op{kind: opPut, ids: []uint64{id}, vals: [][]byte{v}})
}

// Dead moves a pending item to the dead letters with reason; it waits for the commit.
func (s *Spool) Dead(it delivery.Item, reason string) error {
	n, err := s.deadMany([]delivery.Item{it}, reason, true)
	if err == nil && n == 0 {
		err = fmt.Errorf("%w: %s", ErrNotFound, it.ID)
	}
	return err
}

// deadMany moves pending items to the dead letters in one commit and returns how many it moved.
// With keepAttempts, the items' Attempts and LastError replace the stored ones.
func (s *Spool) deadMany(items []delivery.Item, reason string, keepAttempts bool) (int, error) {
	o := &op{kind: opDead}
	now := s.opts.Now()
	for _, it := range items {
		id, err := ParseID(it.ID)
		if err != nil {
			return 0, err
		}
		cur, err := s.get(bucketItems, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return 0, err
		}
		if keepAttempts {
			cur.Attempts, cur.LastError = it.Attempts, it.LastError
		}
		v, err := json.Marshal(DeadItem{Item: cur.Item, Reason: reason, DeadAt: now})
		if err != nil {
			return 0, fmt.Errorf("spool: %w", err)
		}
		s.mu.Lock()
		if _, ok := s.removePendingLocked(id); ok {
			// Reserve its bytes while the commit runs; it shows as dead once it is on disk.
			s.reserved += int64(len(v))
			o.ids = append(o.ids, id)
			o.vals = append(o.vals, v)
		}
		s.mu.Unlock()
	}
	if len(o.ids) == 0 {
		return 0, nil
	}
	o.apply = func() {
		for i, id := range o.ids {
			size := int64(len(o.vals[i]))
			s.reserved -= size
			s.deadIndex[id] = size
			s.deadCount++
			s.deadBytes += size
		}
	}
	o.fail = func() {
		for _, v := range o.vals {
			s.reserved -= int64(len(v))
		}
	}
	return len(o.ids), s.submit(o)
}

// Expire dead-letters every pending item created before now-MaxAge, except in the lanes for which
// skip returns true (a lane whose head is being delivered; the deliverer checks its own head).
// skip is called with the spool's lock held and must not call the spool.
func (s *Spool) Expire(skip func(lane string) bool) (int, error) {
	if s.opts.MaxAge <= 0 {
		return 0, nil
	}
	cutoff := s.opts.Now().Add(-s.opts.MaxAge)
	var old []delivery.Item
	s.mu.Lock()
	for lane, q := range s.lanes {
		if skip != nil && skip(lane) {
			continue
		}
		for _, e := range q {
			if e.created.Before(cutoff) {
				old = append(old, delivery.Item{ID: FormatID(e.id)})
			}
		}
	}
	s.mu.Unlock()
	return s.deadMany(old, s.ExpiredReason(), false)
}

// Expired tells whether an item is older than MaxAge.
func (s *Spool) Expired(it delivery.Item) bool {
	return s.opts.MaxAge > 0 && s.opts.Now().Sub(it.Created) > s.opts.MaxAge
}

// ExpiredReason is the dead-letter reason for items past MaxAge.
func (s *Spool) ExpiredReason() string {
	return fmt.Sprintf("not delivered within spool.max_age (%s)", s.opts.MaxAge)
}

// DeadItems lists the dead letters, oldest id first.
func (s *Spool) DeadItems() ([]DeadItem, error) {
	var out []DeadItem
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDead).ForEach(func(k, v []byte) error {
			var d DeadItem
			if err := json.Unmarshal(v, &d); err != nil {
				d = DeadItem{Reason: "unreadable dead letter: " + err.Error()}
				d.ID = FormatID(binary.BigEndian.Uint64(k))
			}
			out = append(out, d)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	return out, nil
}

// ExportDead writes the dead letters as JSON lines (the contract's spool/dead/*.jsonl shape).
func (s *Spool) ExportDead(w io.Writer) error {
	dead, err := s.DeadItems()
	if err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	for _, d := range dead {
		if err := enc.Encode(d); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
	}
	return nil
}

// Retry moves a dead letter back to its lane, keeping its id (so it sorts before every item
// appended after it) and clearing its attempts. It returns the item.
func (s *Spool) Retry(idStr string) (delivery.Item, error) {
	id, err := ParseID(idStr)
	if err != nil {
		return delivery.Item{}, err
	}
	d, err := s.get(bucketDead, id)
	if err != nil {
		return delivery.Item{}, err
	}
	it := d.Item
	it.ID = FormatID(id)
	it.Attempts, it.LastError = 0, ""
	if it.Lane == "" || it.Model == "" {
		return delivery.Item{}, fmt.Errorf("spool: dead letter %d is unreadable; drop it", id)
	}
	v, err := json.Marshal(it)
	if err != nil {
		return delivery.Item{}, fmt.Errorf("spool: %w", err)
	}
	o := &op{kind: opUndead, ids: []uint64{id}, vals: [][]byte{v}}
	o.apply = func() {
		size, ok := s.deadIndex[id]
		if !ok {
			return
		}
		delete(s.deadIndex, id)
		s.deadCount--
		s.deadBytes -= size
		q := s.lanes[it.Lane]
		i := sort.Search(len(q), func(i int) bool { return q[i].id > id })
		q = append(q, entry{})
		copy(q[i+1:], q[i:])
		q[i] = entry{id: id, size: int64(len(v)), created: it.Created}
		s.lanes[it.Lane] = q
		s.laneOf[id] = it.Lane
		s.pendBytes += int64(len(v))
	}
	if err := s.submit(o); err != nil {
		return delivery.Item{}, err
	}
	return it, nil
}

// RetryAll moves every dead letter back to its lane.
func (s *Spool) RetryAll() ([]delivery.Item, error) {
	dead, err := s.DeadItems()
	if err != nil {
		return nil, err
	}
	var out []delivery.Item
	for _, d := range dead {
		it, err := s.Retry(d.ID)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return out, err
		}
		out = append(out, it)
	}
	return out, nil
}

// Drop deletes a dead letter or, failing that, a pending item, for good.
func (s *Spool) Drop(idStr string) error {
	id, err := ParseID(idStr)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if size, ok := s.deadIndex[id]; ok {
		delete(s.deadIndex, id)
		s.deadCount--
		s.deadBytes -= size
		s.mu.Unlock()
		return s.submit(&op{kind: opDropDead, ids: []uint64{id}})
	}
	if _, ok := s.removePendingLocked(id); ok {
		s.mu.Unlock()
		return s.submit(&op{kind: opDelete, ids: []uint64{id}})
	}
	s.mu.Unlock()
	return fmt.Errorf("%w: %d", ErrNotFound, id)
}

// Stats returns the counters.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Pending: len(s.laneOf), Lanes: len(s.lanes), Dead: s.deadCount, Bytes: s.pendBytes + s.deadBytes,
		DeadBytes: s.deadBytes, MaxBytes: s.opts.MaxBytes, Refused: s.refused, Commits: s.commits}
}

// LaneStats describes every lane with pending items, oldest head first.
func (s *Spool) LaneStats() []LaneStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]LaneStats, 0, len(s.lanes))
	for l, q := range s.lanes {
		out = append(out, LaneStats{Lane: l, Pending: len(q), Oldest: q[0].created, HeadID: FormatID(q[0].id)})
	}
	sort.Slice(out, func(i, j int) bool {
		a, _ := ParseID(out[i].HeadID)
		b, _ := ParseID(out[j].HeadID)
		return a < b
	})
	return out
}

// Close commits what is queued and closes the file. Pending items stay for the next Open.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	select {
	case s.wake <- struct{}{}:
	default:
	}
	s.mu.Unlock()
	<-s.stopped
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("spool: close: %w", err)
	}
	return nil
}
