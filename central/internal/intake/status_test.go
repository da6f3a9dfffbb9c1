package intake

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/xueliang/xl/central/internal/store"
	"github.com/xueliang/xl/central/internal/store/sqlite"
	"github.com/xueliang/xl/internal/wire"
)

// batchStore is the real SQLite store with PutAgentStatuses counted, and
// made to fail on demand.
type batchStore struct {
	*sqlite.Store

	mu      sync.Mutex
	calls   int
	batches [][]string // agent IDs of each batch written
	fail    int        // fail this many calls before writing
	during  func()     // called inside each failing call
}

func (s *batchStore) PutAgentStatuses(ctx context.Context, sts []store.AgentStatus) error {
	s.mu.Lock()
	s.calls++
	if s.fail > 0 {
		s.fail--
		during := s.during
		s.mu.Unlock()
		if during != nil {
			during()
		}
		return errors.New("store unavailable")
	}
	s.mu.Unlock()
	if err := s.Store.PutAgentStatuses(ctx, sts); err != nil {
		return err
	}
	ids := make([]string, len(sts))
	for i, st := range sts {
		ids[i] = st.Status.AgentID
	}
	s.mu.Lock()
	s.batches = append(s.batches, ids)
	s.mu.Unlock()
	return nil
}

func (s *batchStore) written() [][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.batches)
}

func newBatchStore(t *testing.T) *batchStore {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &batchStore{Store: st}
}

// newCoalescer makes a coalescer on st; run starts its writer.
func newCoalescer(t *testing.T, st *batchStore, opts statusOptions, log *slog.Logger) (c *statusCoalescer, m *metrics, run func()) {
	t.Helper()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m = newMetrics(prometheus.NewRegistry())
	c = newStatusCoalescer(st, m, log, opts)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var once sync.Once
	run = func() { once.Do(func() { wg.Go(func() { c.Run(ctx) }) }) }
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		c.Close()
	})
	return c, m, run
}

func status(agent string, state wire.AgentState, ts time.Time) *wire.Status {
	return &wire.Status{Schema: wire.SchemaStatus, AgentID: agent, State: state, Version: "1.0", TS: ts,
		Cameras: []wire.CameraStatus{{CameraID: agent + "-cam", State: "streaming", FPS: 5}}}
}

func agentStates(t *testing.T, st *batchStore) map[string]wire.AgentState {
	t.Helper()
	ags, err := st.ListAgents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]wire.AgentState{}
	for _, a := range ags {
		out[a.AgentID] = a.State
	}
	return out
}

// Statuses of N agents waiting together are written in one batch, with
// the newest of each agent by arrival: a last will ("offline", dated when
// the agent connected) after a heartbeat wins.
func TestStatusesCoalescedIntoOneBatch(t *testing.T) {
	st := newBatchStore(t)
	c, m, run := newCoalescer(t, st, statusOptions{}, nil)
	now := time.Now()
	const n = 50
	for i := range n {
		id := fmt.Sprintf("a%02d", i)
		for k := range 3 { // heartbeats
			if !c.Put(status(id, wire.StateOnline, now.Add(time.Duration(k)*time.Second)), now) {
				t.Fatal("Put refused before Close")
			}
		}
	}
	c.Put(status("a07", wire.StateOffline, now.Add(-time.Hour)), now) // the last will
	run()
	waitFor(t, "one batch written", func() bool { return len(st.written()) == 1 })

	b := st.written()[0]
	if len(b) != n {
		t.Fatalf("one batch of %d agents, want %d", len(b), n)
	}
	states := agentStates(t, st)
	if len(states) != n || states["a07"] != wire.StateOffline || states["a08"] != wire.StateOnline {
		t.Fatalf("stored states %v: a07 must be offline (arrived last), the others online", states)
	}
	if got, want := testutil.ToFloat64(m.statusCoalesced), float64(n*2+1); got != want {
		t.Errorf("coalesced = %v, want %v", got, want)
	}
	if got := testutil.ToFloat64(m.statusFlushes); got != 1 {
		t.Errorf("flushes = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.statusPending); got != 0 {
		t.Errorf("pending = %v after the flush, want 0", got)
	}
}

// A store that fails and recovers gets the statuses again; one that arrived
// during the failed write replaces the failed one of its agent, never the
// other way round.
func TestStatusesSurviveStoreFailures(t *testing.T) {
	st := newBatchStore(t)
	c, m, run := newCoalescer(t, st, statusOptions{}, nil)
	now := time.Now()
	st.fail = 3
	var newer sync.Once
	st.during = func() {
		// a1's last will arrives while its heartbeat is being written.
		newer.Do(func() { c.Put(status("a1", wire.StateOffline, now.Add(-time.Minute)), now.Add(time.Millisecond)) })
	}
	c.Put(status("a1", wire.StateOnline, now), now)
	c.Put(status("a2", wire.StateOnline, now), now)
	run()
	waitFor(t, "statuses written after the failures", func() bool { return len(st.written()) > 0 })

	if states := agentStates(t, st); states["a1"] != wire.StateOffline || states["a2"] != wire.StateOnline {
		t.Fatalf("stored %v: a1's later offline must win over its failed online", states)
	}
	st.mu.Lock()
	calls := st.calls
	st.mu.Unlock()
	if calls != 4 {
		t.Errorf("store called %d times, want 3 failures and a success", calls)
	}
	if got := testutil.ToFloat64(m.retries); got != 3 {
		t.Errorf("retries = %v, want 3", got)
	}
	if b := st.written(); len(b) != 1 || !slices.Equal(b[0], []string{"a1", "a2"}) {
		t.Errorf("batches written %v, want one with a1 and a2", b)
	}
}

// Close writes what is pending, and takes nothing after.
func TestStatusesFlushedOnClose(t *testing.T) {
	st := newBatchStore(t)
	c, _, _ := newCoalescer(t, st, statusOptions{}, nil) // the writer never runs
	now := time.Now()
	c.Put(status("a1", wire.StateOnline, now), now)
	c.Put(status("a2", wire.StateOnline, now), now)
	c.Put(status("a2", wire.StateOffline, now.Add(-time.Minute)), now)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if states := agentStates(t, st); len(states) != 2 || states["a1"] != wire.StateOnline || states["a2"] != wire.StateOffline {
		t.Fatalf("after Close: %v", states)
	}
	if c.Put(status("a3", wire.StateOnline, now), now) {
		t.Fatal("Put after Close must refuse the status, so that it comes again")
	}
}

// A store that stays down makes Close give up at its deadline, counting
// the statuses it could not write.
func TestStatusesCloseGivesUpAtDeadline(t *testing.T) {
	st := newBatchStore(t)
	st.fail = 1 << 30
	c, m, _ := newCoalescer(t, st, statusOptions{CloseTimeout: 300 * time.Millisecond}, nil)
	now := time.Now()
	c.Put(status("a1", wire.StateOnline, now), now)
	c.Put(status("a2", wire.StateOnline, now), now)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(m.statusDropped); got != 2 {
		t.Errorf("dropped = %v, want 2", got)
	}
}

// Above MaxPending agents, a flush starts without waiting for the interval.
func TestStatusesFlushWhenFull(t *testing.T) {
	st := newBatchStore(t)
	// An interval no test waits for: only MaxPending can start the second
	// flush.
	c, _, run := newCoalescer(t, st, statusOptions{Interval: time.Hour, MaxPending: 10}, nil)
	now := time.Now()
	run()
	c.Put(status("first", wire.StateOnline, now), now) // flushed at once: nothing was written before
	waitFor(t, "the first status written", func() bool { return len(st.written()) == 1 })
	for i := range 10 {
		c.Put(status(fmt.Sprintf("a%02d", i), wire.StateOnline, now), now)
	}
	waitFor(t, "the full set written", func() bool { return len(st.written()) == 2 })
	if b := st.written()[1]; len(b) != 10 {
		t.Fatalf("second batch has %d agents, want 10", len(b))
	}
}

// Only a change of an agent's state is logged at Info; heartbeats are
// Debug.
func TestStatusLoggedAtInfoOnChange(t *testing.T) {
	st := newBatchStore(t)
	var buf bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, _, _ := newCoalescer(t, st, statusOptions{}, log)
	now := time.Now()
	for _, s := range []wire.AgentState{wire.StateOnline, wire.StateOnline, wire.StateOnline, wire.StateOffline, wire.StateOnline} {
		c.Put(status("a1", s, now), now)
	}
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	info := strings.Count(out, "level=INFO msg=\"agent state changed\"")
	debug := strings.Count(out, "level=DEBUG msg=\"agent heartbeat\"")
	if info != 3 || debug != 2 {
		t.Fatalf("%d Info state changes (want 3: online, offline, online) and %d Debug heartbeats (want 2):\n%s", info, debug, out)
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
