package intake

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/xueliang/xl/central/internal/store"
	"github.com/xueliang/xl/internal/wire"
)

// Agent statuses are state, not events: each agent repeats its status with
// every heartbeat (30 s), the broker keeps the last one retained, and only
// the newest matters. Storing each with its own commit, in the ordered
// message stream the alerts share, made alerts wait behind heartbeats at
// scale (docs/scale.md, "Limits found"). So intake hands each valid status
// to a statusCoalescer, which keeps the newest per agent and writes all that
// are pending in one transaction, at most once per flush interval.
//
// A status is acknowledged once the coalescer has taken it, before it is
// stored. A crash of central loses at most the statuses of the last flush
// window; the agents' next heartbeats (and the retained status the broker
// hands a restarted central) repeat them. Alerts are never acknowledged
// before they are stored.

// statusOptions tune the coalescer; zero values take the defaults.
type statusOptions struct {
	// Interval is the shortest time between two flushes: the first status
	// after a quiet spell is written at once, later ones wait for the end
	// of the interval and share its transaction.
	Interval time.Duration
	// MaxPending is the number of agents waiting to be written at which a
	// flush starts without waiting for the interval.
	MaxPending int
	// CloseTimeout bounds the last flush at Close.
	CloseTimeout time.Duration
}

const (
	defaultStatusInterval     = 200 * time.Millisecond
	defaultStatusMaxPending   = 4096
	defaultStatusCloseTimeout = 5 * time.Second
	maxStoreBackoff           = 5 * time.Second
	minStoreBackoff           = 50 * time.Millisecond
)

// statusCoalescer keeps the newest status of each agent until it is
// written; one writer (Run) stores all pending statuses in one batch.
// New → Run(ctx) → Close; Close writes what is still pending.
type statusCoalescer struct {
	store statusWriter
	m     *metrics
	log   *slog.Logger
	opts  statusOptions

	mu      sync.Mutex
	pending map[string]store.AgentStatus // by agent ID, the newest arrival
	state   map[string]wire.AgentState   // by agent ID, the state last received (for logs)
	closed  bool

	flushMu sync.Mutex    // one flush at a time, so batches commit in arrival order
	kick    chan struct{} // something is pending
	full    chan struct{} // MaxPending reached
	ctx     context.Context
	cancel  context.CancelFunc
}

// statusWriter is the part of Store the coalescer uses.
type statusWriter interface {
	PutAgentStatuses(ctx context.Context, sts []store.AgentStatus) error
}

func newStatusCoalescer(st statusWriter, m *metrics, log *slog.Logger, opts statusOptions) *statusCoalescer {
	if opts.Interval <= 0 {
		opts.Interval = defaultStatusInterval
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = defaultStatusMaxPending
	}
	if opts.CloseTimeout <= 0 {
		opts.CloseTimeout = defaultStatusCloseTimeout
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &statusCoalescer{store: st, m: m, log: log, opts: opts,
		pending: map[string]store.AgentStatus{}, state: map[string]wire.AgentState{},
		kick: make(chan struct{}, 1), full: make(chan struct{}, 1), ctx: ctx, cancel: cancel}
}

// Put takes a decoded, valid status received at seen. It replaces any
// status of the same agent still waiting: arrival order wins, not the
// status's timestamp, because an agent's last will ("offline") carries the
// time it connected, older than the heartbeats it sent since. Put reports
// false once the coalescer is closed: the message must come again.
func (c *statusCoalescer) Put(st *wire.Status, seen time.Time) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	prev, known := c.state[st.AgentID]
	c.state[st.AgentID] = st.State
	if _, waiting := c.pending[st.AgentID]; waiting {
		c.m.statusCoalesced.Inc()
	}
	c.pending[st.AgentID] = store.AgentStatus{Status: st, Seen: seen}
	n := len(c.pending)
	c.mu.Unlock()
	c.m.statusPending.Set(float64(n))

	if !known || prev != st.State {
		c.log.Info("agent state changed", "agent_id", st.AgentID, "state", st.State, "previous", prev,
			"version", st.Version, "config_version", st.ConfigVersion, "cameras", len(st.Cameras))
	} else {
		c.log.Debug("agent heartbeat", "agent_id", st.AgentID, "state", st.State, "cameras", len(st.Cameras))
	}
	signal(c.kick)
	if n >= c.opts.MaxPending {
		signal(c.full)
	}
	return true
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Run writes pending statuses until ctx ends or Close is called: at once
// when the first arrives, then at most once per interval (sooner when
// MaxPending agents wait). A failed write is retried with doubling delays;
// statuses that arrive meanwhile join the retry and replace older ones of
// the same agent.
func (c *statusCoalescer) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, c.cancel)
	defer stop()
	var last time.Time
	backoff := minStoreBackoff
	for {
		select {
		case <-c.ctx.Done():
			return nil
		case <-c.kick:
		}
		if wait := time.Until(last.Add(c.opts.Interval)); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-c.ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			case <-c.full:
				t.Stop()
			}
		}
		last = time.Now()
		n, err := c.flush(c.ctx)
		if err == nil {
			backoff = minStoreBackoff
			continue
		}
		if c.ctx.Err() != nil {
			return nil // Close writes what is pending
		}
		c.m.retries.Inc()
		c.log.Error("store failed; retrying", "what", fmt.Sprintf("%d agent statuses", n), "err", err, "backoff", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-c.ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(backoff*2, maxStoreBackoff)
		signal(c.kick) // the failed statuses are pending again
	}
}

// flush writes every pending status in one batch. On failure the statuses
// go back to the pending set, unless a newer one of the same agent arrived
// meanwhile. It returns how many statuses it tried to write.
func (c *statusCoalescer) flush(ctx context.Context) (int, error) {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	c.mu.Lock()
	batch := c.pending
	if len(batch) > 0 {
		c.pending = make(map[string]store.AgentStatus, len(batch))
	}
	c.mu.Unlock()
	if len(batch) == 0 {
		return 0, nil
	}
	select { // a MaxPending signal from before this swap is spent
	case <-c.full:
	default:
	}
	c.m.statusPending.Set(0)
	sts := make([]store.AgentStatus, 0, len(batch))
	for _, s := range batch {
		sts = append(sts, s)
	}
	slices.SortFunc(sts, func(a, b store.AgentStatus) int { return strings.Compare(a.Status.AgentID, b.Status.AgentID) })
	start := time.Now()
	err := c.store.PutAgentStatuses(ctx, sts)
	c.m.storeSecs.Observe(time.Since(start).Seconds())
	if err != nil {
		c.mu.Lock()
		for id, s := range batch {
			if _, newer := c.pending[id]; !newer {
				c.pending[id] = s
			}
		}
		n := len(c.pending)
		c.mu.Unlock()
		c.m.statusPending.Set(float64(n))
		return len(sts), err
	}
	c.m.statusFlushes.Inc()
	c.m.statusBatch.Observe(float64(len(sts)))
	return len(sts), nil
}

// Close stops Run and takes no more statuses, then writes those pending,
// retrying until the close timeout. Statuses it could not write are
// counted and logged: the agents' next heartbeats repeat them.
func (c *statusCoalescer) Close() error {
	c.mu.Lock()
	already := c.closed
	c.closed = true
	c.mu.Unlock()
	if already {
		return nil
	}
	c.cancel() // ends Run's write in progress, if any; its statuses stay pending
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.CloseTimeout)
	defer cancel()
	backoff := minStoreBackoff
	for {
		n, err := c.flush(ctx)
		if err == nil {
			return nil
		}
		c.m.retries.Inc()
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			c.mu.Lock()
			lost := len(c.pending)
			c.mu.Unlock()
			c.m.statusDropped.Add(float64(lost))
			c.log.Error("agent statuses not stored at shutdown; the agents' next heartbeats repeat them", "statuses", lost, "err", err)
			return nil
		case <-t.C:
		}
		c.log.Warn("store failed at shutdown; retrying", "what", fmt.Sprintf("%d agent statuses", n), "err", err, "backoff", backoff)
		backoff = min(backoff*2, maxStoreBackoff)
	}
}
