package egress_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xueliang/xl/central/internal/egress"
	"github.com/xueliang/xl/central/internal/store"
	"github.com/xueliang/xl/central/internal/store/sqlite"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// hook is an agency's webhook: it answers with the next status in plan
// (200 once the plan is used up) and records what it accepted.
type hook struct {
	mu       sync.Mutex
	plan     []int
	accepted []string
	sigs     []string
}

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	code := http.StatusOK
	if len(h.plan) > 0 {
		code, h.plan = h.plan[0], h.plan[1:]
	}
	if code == http.StatusOK {
		h.accepted = append(h.accepted, string(body))
		h.sigs = append(h.sigs, r.Header.Get("X-XL-Signature"))
	}
	w.WriteHeader(code)
}

func (h *hook) got() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.accepted...)
}

type rig struct {
	st  *sqlite.Store
	clk *clock
	s   *egress.Sender
	reg *prometheus.Registry
}

func newRig(t *testing.T, opt egress.Options) *rig {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clk := &clock{t: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}
	reg := prometheus.NewRegistry()
	opt.Now, opt.Reg = clk.Now, reg
	return &rig{st: st, clk: clk, reg: reg, s: egress.New(st, nil, opt)}
}

func (r *rig) enqueue(t *testing.T, target string, payloads ...string) {
	t.Helper()
	err := r.st.InTx(context.Background(), func(tx store.Tx) error {
		for _, p := range payloads {
			if err := tx.EnqueueEgress(store.Egress{Channel: store.ChannelWebhook, Target: target, AgencyID: "river-police",
				OrderID: "o-" + p, Event: "dispatched", Payload: []byte(p), CreatedAt: r.clk.Now()}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (r *rig) send(t *testing.T) int {
	t.Helper()
	n, err := r.s.SendDue(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestWebhookRetriesInOrderAndSigns(t *testing.T) {
	h := &hook{plan: []int{500, 503}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	r := newRig(t, egress.Options{WebhookSecret: "s3cret", MinBackoff: time.Second})
	r.enqueue(t, srv.URL, `{"n":1}`, `{"n":2}`)

	if n := r.send(t); n != 0 { // 500: the first waits, the second waits behind it
		t.Fatalf("delivered %d on a failing hook", n)
	}
	if n := r.send(t); n != 0 || len(h.got()) != 0 {
		t.Fatalf("sent again before the backoff: %d, %v", n, h.got())
	}
	r.clk.Advance(2 * time.Second) // 503
	r.send(t)
	r.clk.Advance(5 * time.Second)
	if n := r.send(t); n != 2 {
		t.Fatalf("delivered %d after recovery", n)
	}
	if got := h.got(); len(got) != 2 || got[0] != `{"n":1}` || got[1] != `{"n":2}` {
		t.Fatalf("hook got %v", got)
	}
	mac := hmac.New(sha256.New, []byte("s3cret"))
	mac.Write([]byte(`{"n":1}`))
	if want := "sha256=" + hex.EncodeToString(mac.Sum(nil)); h.sigs[0] != want {
		t.Fatalf("signature %q, want %q", h.sigs[0], want)
	}
	list, _ := r.st.ListEgress(context.Background(), store.EgressFilter{})
	for _, e := range list {
		if e.State != store.EgressDelivered {
			t.Fatalf("%+v", e)
		}
		if e.OrderID == `o-{"n":1}` && e.Attempts != 3 {
			t.Fatalf("first message: %d attempts, want 3", e.Attempts)
		}
	}
	if v := counter(t, r.reg, "xl_central_egress_failures_total"); v != 2 {
		t.Fatalf("failures %v", v)
	}
}

func TestDeadLetterAndRetryByHand(t *testing.T) {
	h := &hook{plan: []int{404}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	r := newRig(t, egress.Options{MaxAttempts: 3})
	r.enqueue(t, srv.URL, `{"n":1}`, `{"n":2}`)
	// 404 cannot get better: the first message is dead at once, and the
	// second is not held up by it.
	if n := r.send(t); n != 1 {
		t.Fatalf("delivered %d", n)
	}
	dead, _ := r.st.ListEgress(context.Background(), store.EgressFilter{State: store.EgressDead})
	if len(dead) != 1 || dead[0].Attempts != 1 || dead[0].LastError == "" {
		t.Fatalf("dead letters: %+v", dead)
	}
	if v := counter(t, r.reg, "xl_central_egress_dead_total"); v != 1 {
		t.Fatalf("dead counter %v", v)
	}
	if err := r.st.RetryEgress(context.Background(), dead[0].ID, r.clk.Now()); err != nil {
		t.Fatal(err)
	}
	if n := r.send(t); n != 1 || len(h.got()) != 2 {
		t.Fatalf("retry by hand: delivered %d, hook has %v", n, h.got())
	}
	// Transient failures end in the dead letters after MaxAttempts.
	h.mu.Lock()
	h.plan = []int{500, 500, 500}
	h.mu.Unlock()
	r.enqueue(t, srv.URL, `{"n":3}`)
	for range 3 {
		r.send(t)
		r.clk.Advance(10 * time.Minute)
	}
	dead, _ = r.st.ListEgress(context.Background(), store.EgressFilter{State: store.EgressDead})
	if len(dead) != 1 || dead[0].Attempts != 3 {
		t.Fatalf("after 3 failures: %+v", dead)
	}
}

// counter is the sum of a counter's series.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var sum float64
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
