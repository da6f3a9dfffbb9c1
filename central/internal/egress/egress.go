// Package egress delivers messages to agencies: orders and card
// notifications, queued by the dispatcher in the same transaction as the
// change they announce, sent over MQTT (QoS 1) and to webhooks with
// retries and exponential backoff, and dead-lettered (counted, listed,
// retried by hand) when they keep failing. Delivery is at least once: a
// message carries its order's ID, version and event, so a receiver can
// drop a repeat.
package egress

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/xueliang/xl/central/internal/store"
)

// Store is what the sender needs from central's store.
type Store interface {
	DueEgress(ctx context.Context, now time.Time, limit int) ([]store.Egress, error)
	NextEgress(ctx context.Context) (time.Time, bool, error)
	UpdateEgress(ctx context.Context, e store.Egress) error
}

// Publisher publishes on the MQTT broker with QoS 1 and returns once the
// broker acknowledged the message.
type Publisher interface {
	Publish(ctx context.Context, topic string, payload []byte) error
}

// Options configures a Sender. Zero values take the defaults.
type Options struct {
	MaxAttempts int           // attempts before a message is dead; default 12
	MinBackoff  time.Duration // delay after the first failure; default 1 s
	MaxBackoff  time.Duration // longest delay; default 5 min
	Timeout     time.Duration // one webhook request or MQTT publish; default 10 s
	// WebhookSecret signs webhook bodies: X-XL-Signature: sha256=HMAC.
	WebhookSecret string
	Workers       int // targets served at once; default 8
	HTTPClient    *http.Client
	Now           func() time.Time
	Reg           prometheus.Registerer
	Log           *slog.Logger
}

// Sender sends due messages until its context ends.
type Sender struct {
	st   Store
	pub  Publisher
	opt  Options
	log  *slog.Logger
	wake chan struct{}
	m    struct {
		sent, failed, dead *prometheus.CounterVec
		lag                prometheus.Histogram
	}
}

// batch is the most messages one pass takes from the store.
const batch = 256

// New is a sender of st's messages through pub and HTTP.
func New(st Store, pub Publisher, opt Options) *Sender {
	if opt.MaxAttempts <= 0 {
		opt.MaxAttempts = 12
	}
	if opt.MinBackoff <= 0 {
		opt.MinBackoff = time.Second
	}
	if opt.MaxBackoff <= 0 {
		opt.MaxBackoff = 5 * time.Minute
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 10 * time.Second
	}
	if opt.Workers <= 0 {
		opt.Workers = 8
	}
	if opt.HTTPClient == nil {
		opt.HTTPClient = &http.Client{Timeout: opt.Timeout}
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Reg == nil {
		opt.Reg = prometheus.NewRegistry()
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	s := &Sender{st: st, pub: pub, opt: opt, log: opt.Log.With("component", "egress"), wake: make(chan struct{}, 1)}
	f := promauto.With(opt.Reg)
	s.m.sent = f.NewCounterVec(prometheus.CounterOpts{Name: "xl_central_egress_sent_total",
		Help: "Messages delivered to agencies, by channel."}, []string{"channel"})
	s.m.failed = f.NewCounterVec(prometheus.CounterOpts{Name: "xl_central_egress_failures_total",
		Help: "Failed delivery attempts to agencies (retried), by channel."}, []string{"channel"})
	s.m.dead = f.NewCounterVec(prometheus.CounterOpts{Name: "xl_central_egress_dead_total",
		Help: "Messages to agencies given up on (dead letters), by channel."}, []string{"channel"})
	s.m.lag = f.NewHistogram(prometheus.HistogramOpts{Name: "xl_central_egress_delivery_seconds",
		Help:    "Time from queueing a message to its delivery.",
		Buckets: prometheus.ExponentialBuckets(0.005, 4, 10)})
	for _, ch := range []string{store.ChannelMQTT, store.ChannelWebhook} { // series from zero, for rules
		s.m.sent.WithLabelValues(ch)
		s.m.failed.WithLabelValues(ch)
		s.m.dead.WithLabelValues(ch)
	}
	return s
}

// Notify tells the sender that messages may be waiting.
func (s *Sender) Notify() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run sends messages as they come due, until ctx is done.
func (s *Sender) Run(ctx context.Context) error {
	for {
		if _, err := s.SendDue(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("egress", "err", err)
		}
		wait := time.Second
		if at, ok, err := s.st.NextEgress(ctx); err == nil && ok {
			wait = min(max(at.Sub(s.opt.Now()), 0), time.Second)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-s.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// Close releases nothing: Run owns the sender's work.
func (s *Sender) Close() error { return nil }

// SendDue makes one attempt at every message due now and returns how many
// were delivered. Messages to one target go one after another, in the
// order they were queued; different targets are served in parallel.
func (s *Sender) SendDue(ctx context.Context) (int, error) {
	due, err := s.st.DueEgress(ctx, s.opt.Now(), batch)
	if err != nil || len(due) == 0 {
		return 0, err
	}
	byTarget := map[string][]store.Egress{}
	var order []string
	for _, e := range due {
		k := e.Channel + " " + e.Target
		if _, ok := byTarget[k]; !ok {
			order = append(order, k)
		}
		byTarget[k] = append(byTarget[k], e)
	}
	var (
		mu        sync.Mutex
		delivered int
		errs      []error
		wg        sync.WaitGroup
	)
	sem := make(chan struct{}, s.opt.Workers)
	for _, k := range order {
		msgs := byTarget[k]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			for i, e := range msgs {
				sent, next, err := s.attempt(ctx, e)
				mu.Lock()
				if sent {
					delivered++
				}
				if err != nil {
					errs = append(errs, err)
				}
				mu.Unlock()
				if !next && i+1 < len(msgs) {
					// Keep the target's order: the store holds later
					// messages back while this one waits for its retry.
					return
				}
			}
		})
	}
	wg.Wait()
	return delivered, errors.Join(errs...)
}

// attempt sends e once and records the outcome. next is true when the
// target's next message may go (e was delivered, or given up).
func (s *Sender) attempt(ctx context.Context, e store.Egress) (sent, next bool, err error) {
	sendErr, permanent := s.send(ctx, e)
	now := s.opt.Now()
	e.Attempts++
	switch {
	case sendErr == nil:
		e.State, e.DeliveredAt, e.LastError = store.EgressDelivered, now, ""
		s.m.sent.WithLabelValues(e.Channel).Inc()
		s.m.lag.Observe(now.Sub(e.CreatedAt).Seconds())
	case permanent || e.Attempts >= s.opt.MaxAttempts:
		e.State, e.LastError = store.EgressDead, sendErr.Error()
		s.m.failed.WithLabelValues(e.Channel).Inc()
		s.m.dead.WithLabelValues(e.Channel).Inc()
		s.log.Error("message to agency given up (dead letter)", "id", e.ID, "agency_id", e.AgencyID, "order_id", e.OrderID,
			"event", e.Event, "channel", e.Channel, "target", e.Target, "attempts", e.Attempts, "err", sendErr)
	default:
		e.LastError = sendErr.Error()
		e.NextAt = now.Add(s.backoff(e.Attempts))
		s.m.failed.WithLabelValues(e.Channel).Inc()
		s.log.Warn("message to agency failed; retrying", "id", e.ID, "agency_id", e.AgencyID, "channel", e.Channel,
			"target", e.Target, "attempts", e.Attempts, "retry_at", e.NextAt, "err", sendErr)
	}
	if err := s.st.UpdateEgress(ctx, e); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return false, false, nil // recorded by another sender (a replica)
		}
		return false, false, fmt.Errorf("egress %d: %w", e.ID, err)
	}
	return sendErr == nil, e.State != store.EgressPending, nil
}

// backoff is the delay after the n-th failed attempt: doubling from
// MinBackoff, capped at MaxBackoff, with ±20 % jitter.
func (s *Sender) backoff(n int) time.Duration {
	d := s.opt.MinBackoff
	for i := 1; i < n && d < s.opt.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, s.opt.MaxBackoff)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64())) // #nosec G404 -- retry jitter, not a secret
}

// send delivers e once. permanent is true when retrying cannot help (a
// webhook answering 4xx other than 408 and 429).
func (s *Sender) send(ctx context.Context, e store.Egress) (err error, permanent bool) {
	ctx, cancel := context.WithTimeout(ctx, s.opt.Timeout)
	defer cancel()
	switch e.Channel {
	case store.ChannelMQTT:
		return s.pub.Publish(ctx, e.Target, e.Payload), false
	case store.ChannelWebhook:
		return s.post(ctx, e)
	default:
		return fmt.Errorf("unknown channel %q", e.Channel), true
	}
}

func (s *Sender) post(ctx context.Context, e store.Egress) (error, bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.Target, bytes.NewReader(e.Payload))
	if err != nil {
		return err, true
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "xl-central")
	req.Header.Set("X-XL-Event", e.Event)
	req.Header.Set("X-XL-Delivery", strconv.FormatInt(e.ID, 10))
	if s.opt.WebhookSecret != "" {
		mac := hmac.New(sha256.New, []byte(s.opt.WebhookSecret))
		mac.Write(e.Payload)
		req.Header.Set("X-XL-Signature", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	}
	resp, err := s.opt.HTTPClient.Do(req)
	if err != nil {
		return err, false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 == 2 {
		return nil, false
	}
	err = fmt.Errorf("webhook answered %s: %.200s", resp.Status, body)
	permanent := resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests
	return err, permanent
}
