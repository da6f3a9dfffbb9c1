// Package intake receives what agents publish (alerts, evidence, status),
// validates it against the wire contract and stores it idempotently.
// A message is acknowledged to the broker only once it is stored or
// definitively rejected, so nothing that was sent is lost to a store hiccup.
// Agent statuses are the exception: they are state, kept per agent and
// stored in batches after they are acknowledged (status.go).
package intake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/xueliang/xl/central/internal/store"
	"github.com/xueliang/xl/internal/mqttc"
	"github.com/xueliang/xl/internal/wire"
)

// Store is what intake needs from central's store.
type Store interface {
	InsertAlerts(ctx context.Context, alerts []*wire.Alert, receivedAt time.Time) ([]bool, error)
	PutEvidence(ctx context.Context, ev store.Evidence) (bool, error)
	PutEvidencePart(ctx context.Context, p store.EvidencePart) (stored bool, err error)
	// PutAgentStatuses records agents' statuses in one transaction; a
	// later status of an agent wins over an earlier one, in the slice and
	// across calls, whatever their timestamps.
	PutAgentStatuses(ctx context.Context, sts []store.AgentStatus) error
}

// Rejection reasons intake adds to the wire decoder's.
const (
	ReasonAgentMismatch wire.Reason = "agent_mismatch"
	ReasonBadTopic      wire.Reason = "bad_topic"
)

type metrics struct {
	received  *prometheus.CounterVec
	rejected  *prometheus.CounterVec
	ingested  prometheus.Counter
	duplicate prometheus.Counter
	evidence  *prometheus.CounterVec
	storeSecs prometheus.Histogram
	latency   prometheus.Histogram
	connected prometheus.Gauge
	retries   prometheus.Counter
	commands  *prometheus.CounterVec
	batch     prometheus.Histogram

	statusCoalesced prometheus.Counter
	statusFlushes   prometheus.Counter
	statusBatch     prometheus.Histogram
	statusPending   prometheus.Gauge
	statusDropped   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		received: f.NewCounterVec(prometheus.CounterOpts{Name: "xl_central_messages_received_total",
			Help: "MQTT messages received from agents, by kind."}, []string{"kind"}),
		rejected: f.NewCounterVec(prometheus.CounterOpts{Name: "xl_central_messages_rejected_total",
			Help: "Messages rejected, by kind and reason."}, []string{"kind", "reason"}),
		ingested: f.NewCounter(prometheus.CounterOpts{Name: "xl_central_alerts_ingested_total",
			Help: "Alerts stored for the first time."}),
		duplicate: f.NewCounter(prometheus.CounterOpts{Name: "xl_central_alerts_duplicate_total",
			Help: "Alerts received again after they were stored (redeliveries)."}),
		evidence: f.NewCounterVec(prometheus.CounterOpts{Name: "xl_central_evidence_stored_total",
			Help: "Evidence items stored, by kind."}, []string{"kind"}),
		storeSecs: f.NewHistogram(prometheus.HistogramOpts{Name: "xl_central_store_write_seconds",
			Help: "Time to store one received message.", Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12)}),
		latency: f.NewHistogram(prometheus.HistogramOpts{Name: "xl_central_alert_detect_to_stored_seconds",
			Help: "Time from an alert's detected_at to it being stored at central.", Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 12)}),
		connected: f.NewGauge(prometheus.GaugeOpts{Name: "xl_central_mqtt_connected",
			Help: "1 while central's intake is connected to the broker."}),
		retries: f.NewCounter(prometheus.CounterOpts{Name: "xl_central_store_retries_total",
			Help: "Store writes retried after an error."}),
		batch: f.NewHistogram(prometheus.HistogramOpts{Name: "xl_central_store_batch_alerts",
			Help: "Alerts committed per store transaction (group commit).", Buckets: prometheus.ExponentialBuckets(1, 2, 10)}),
		statusCoalesced: f.NewCounter(prometheus.CounterOpts{Name: "xl_central_statuses_coalesced_total",
			Help: "Agent statuses replaced, before they were stored, by a newer one of the same agent."}),
		statusFlushes: f.NewCounter(prometheus.CounterOpts{Name: "xl_central_status_flushes_total",
			Help: "Store transactions that wrote pending agent statuses."}),
		statusBatch: f.NewHistogram(prometheus.HistogramOpts{Name: "xl_central_store_batch_statuses",
			Help: "Agent statuses committed per store transaction.", Buckets: prometheus.ExponentialBuckets(1, 4, 8)}),
		statusPending: f.NewGauge(prometheus.GaugeOpts{Name: "xl_central_statuses_pending",
			Help: "Agents whose newest status waits to be stored."}),
		statusDropped: f.NewCounter(prometheus.CounterOpts{Name: "xl_central_statuses_dropped_total",
			Help: "Agent statuses not stored at shutdown (the agents' next heartbeats repeat them)."}),
		commands: f.NewCounterVec(prometheus.CounterOpts{Name: "xl_central_commands_total",
			Help: "Commands to agents, by command and outcome (sent, answered, timeout)."}, []string{"cmd", "outcome"}),
	}
	// Alerts rejected for each reason start at zero, so that rules and
	// dashboards see a series (and increase()) before the first one.
	for _, r := range []wire.Reason{wire.ReasonTooLarge, wire.ReasonInvalidUTF8, wire.ReasonBadJSON, wire.ReasonWrongSchema,
		wire.ReasonMissing, wire.ReasonInvalid, wire.ReasonFuture, ReasonAgentMismatch} {
		m.rejected.WithLabelValues(wire.KindAlerts, string(r))
	}
	return m
}

// Intake subscribes to the agents' topics.
type Intake struct {
	cfg       mqttc.Config
	store     Store
	log       *slog.Logger
	m         *metrics
	dec       wire.Decoder
	client    mqtt.Client
	connected atomic.Bool
	ctx       context.Context
	cancel    context.CancelFunc

	waitMu  sync.Mutex
	waiters map[string]chan *wire.CmdReply // by cmd_id

	subscribe bool   // subscribe to the agents' topics (external broker)
	group     string // shared-subscription group of the replicas; "": none
	writes    chan alertWrite
	statuses  *statusCoalescer
	onAck     func(agencyID string, ack *wire.OrderAck) bool
	onStored  func(ctx context.Context, alerts []*wire.Alert)
}

// OnStored sets a function called, by the writer, with the alerts of each
// committed batch that were stored for the first time, after their senders
// have been answered (redeliveries are not passed). It must not fail the
// alerts: they are stored. Call it before Run.
func (in *Intake) OnStored(fn func(ctx context.Context, alerts []*wire.Alert)) { in.onStored = fn }

// alertWrite is an alert waiting for the group-commit writer; done gets
// whether it was stored (and whether for the first time).
type alertWrite struct {
	a    *wire.Alert
	done func(ok, inserted bool)
}

// maxBatch is the most alerts committed in one transaction.
const maxBatch = 512

// New prepares the intake; it connects in Run. With subscribe false, agent
// messages arrive through Deliver (the embedded broker's sink) and the
// broker connection is used for commands only.
func New(cfg mqttc.Config, st Store, dec wire.Decoder, subscribe bool, reg prometheus.Registerer, log *slog.Logger) (*Intake, error) {
	if cfg.ClientID == "" {
		cfg.ClientID = "xl-central"
	}
	ctx, cancel := context.WithCancel(context.Background())
	in := &Intake{cfg: cfg, store: st, dec: dec, log: log.With("component", "intake"), m: newMetrics(reg), ctx: ctx, cancel: cancel,
		waiters: map[string]chan *wire.CmdReply{}, subscribe: subscribe, writes: make(chan alertWrite, maxBatch)}
	in.statuses = newStatusCoalescer(st, in.m, in.log, statusOptions{})
	opts, err := cfg.Options()
	if err != nil {
		cancel()
		return nil, err
	}
	opts.SetAutoAckDisabled(true)
	opts.SetOnConnectHandler(in.onConnect)
	opts.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		in.connected.Store(false)
		in.m.connected.Set(0)
		in.log.Warn("broker connection lost", "err", err)
	})
	in.client = mqtt.NewClient(opts)
	return in, nil
}

// Ready reports whether intake is connected and subscribed.
func (in *Intake) Ready(context.Context) error {
	if !in.connected.Load() {
		return errors.New("not connected to the MQTT broker")
	}
	return nil
}

func (in *Intake) onConnect(c mqtt.Client) {
	subs := map[string]byte{}
	if in.subscribe {
		// Replies go to every replica: the one that sent the command waits.
		subs = map[string]byte{in.shared(wire.AllAlertsFilter): 1, in.shared(wire.AllEvidenceFilter): 1,
			in.shared(wire.AllStatusFilter): 1, wire.AllRepliesFilter: 1}
	}
	if in.onAck != nil {
		subs[in.shared(wire.AllAcksFilter)] = 1
	}
	if len(subs) > 0 {
		if err := mqttc.Wait(c.SubscribeMultiple(subs, in.handle), 10*time.Second); err != nil {
			in.log.Error("subscribe failed; reconnecting", "err", err)
			go c.Disconnect(100) // the retry loop connects again
			return
		}
	}
	in.connected.Store(true)
	in.m.connected.Set(1)
	in.log.Info("connected and subscribed", "broker", in.cfg.URL)
}

// Run connects (retrying until the broker answers) and serves until ctx is
// cancelled.
func (in *Intake) Run(ctx context.Context) error {
	in.log.Info("connecting", "broker", in.cfg.URL)
	in.client.Connect() // with ConnectRetry, this keeps trying in the background
	var wg sync.WaitGroup
	wg.Go(in.writeLoop)
	wg.Go(func() { in.statuses.Run(in.ctx) })
	select {
	case <-ctx.Done():
	case <-in.ctx.Done():
	}
	in.cancel()
	wg.Wait()
	return nil
}

// writeLoop is the group commit: it takes every alert waiting and stores
// them in one transaction, so that many agents publishing at once cost one
// commit, not one each. Order is kept: alerts are committed in the order
// they were handed over.
func (in *Intake) writeLoop() {
	batch := make([]alertWrite, 0, maxBatch)
	alerts := make([]*wire.Alert, 0, maxBatch)
	for {
		select {
		case <-in.ctx.Done():
			in.failPending()
			return
		case w := <-in.writes:
			batch = append(batch[:0], w)
		}
	fill:
		for len(batch) < maxBatch {
			select {
			case w := <-in.writes:
				batch = append(batch, w)
			default:
				break fill
			}
		}
		alerts = alerts[:0]
		for _, w := range batch {
			alerts = append(alerts, w.a)
		}
		var inserted []bool
		now := time.Now()
		ok := in.retry(fmt.Sprintf("%d alerts", len(alerts)), func(ctx context.Context) error {
			var err error
			inserted, err = in.store.InsertAlerts(ctx, alerts, now)
			return err
		})
		in.m.batch.Observe(float64(len(batch)))
		var fresh []*wire.Alert
		for i, w := range batch {
			w.done(ok, ok && inserted[i])
			if ok && inserted[i] {
				fresh = append(fresh, w.a)
			}
		}
		if in.onStored != nil && len(fresh) > 0 {
			in.onStored(in.ctx, fresh)
		}
	}
}

// failPending answers every waiting write with "not stored" at shutdown.
func (in *Intake) failPending() {
	for {
		select {
		case w := <-in.writes:
			w.done(false, false)
		default:
			return
		}
	}
}

// storeAlert hands a to the writer; done is called once it is committed.
func (in *Intake) storeAlert(a *wire.Alert, done func(ok, inserted bool)) {
	if in.ctx.Err() != nil {
		done(false, false)
		return
	}
	select {
	case in.writes <- alertWrite{a: a, done: done}:
	case <-in.ctx.Done():
		done(false, false)
	}
}

// Close disconnects from the broker, then stores the agent statuses still
// pending (bounded by a deadline).
func (in *Intake) Close() error {
	in.cancel()
	in.client.Disconnect(500)
	in.m.connected.Set(0)
	return in.statuses.Close()
}

// ShareGroup makes intake subscribe to what agents and agencies send
// through the shared subscription $share/group/…, so that the broker gives
// each message to one of several central replicas. Call before Run.
func (in *Intake) ShareGroup(group string) { in.group = group }

func (in *Intake) shared(filter string) string {
	if in.group == "" {
		return filter
	}
	return "$share/" + in.group + "/" + filter
}

// OnOrderAck sets the function that applies agencies' actions on orders
// (sent on their acks topics). It returns whether the action was settled:
// applied, or refused for good (a conflict, an invalid action); false
// leaves the message unacknowledged, to come again. Call before Run.
func (in *Intake) OnOrderAck(fn func(agencyID string, ack *wire.OrderAck) (settled bool)) {
	in.onAck = fn
}

// Publish sends payload on topic with QoS 1 and returns once the broker
// acknowledged it (messages to agencies).
func (in *Intake) Publish(ctx context.Context, topic string, payload []byte) error {
	t := in.client.Publish(topic, 1, false, payload)
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		return fmt.Errorf("publish %s: %w", topic, ctx.Err())
	}
}

func (in *Intake) handleAck(msg mqtt.Message) {
	agency, err := wire.ParseAckTopic(msg.Topic())
	if err != nil {
		in.reject("order_ack", ReasonBadTopic, err)
		msg.Ack()
		return
	}
	in.m.received.WithLabelValues("order_ack").Inc()
	ack, err := wire.DecodeOrderAck(msg.Payload())
	if err != nil {
		in.reject("order_ack", wire.ReasonOf(err), fmt.Errorf("agency %s: %w", agency, err))
		msg.Ack()
		return
	}
	if in.onAck(agency, ack) {
		msg.Ack()
	}
}

func (in *Intake) handle(_ mqtt.Client, msg mqtt.Message) {
	if in.onAck != nil && strings.HasPrefix(msg.Topic(), wire.Root+"/agencies/") {
		in.handleAck(msg)
		return
	}
	// Alerts are acknowledged when their batch is committed, so the
	// handler can take the next message meanwhile; statuses once the
	// coalescer has them (see handleStatus); everything else is stored
	// before the handler returns.
	if t, err := wire.ParseAgentTopic(msg.Topic()); err == nil && t.Kind == wire.KindAlerts {
		in.m.received.WithLabelValues(t.Kind).Inc()
		in.deliverAlert(t, msg.Payload(), func(ok bool) {
			if ok {
				msg.Ack()
			}
		})
		return
	}
	if in.Deliver(msg.Topic(), msg.Payload()) {
		msg.Ack()
	}
	// Not acknowledged: central is shutting down with the message unstored;
	// the broker delivers it again to the next session.
}

// DeliverAsync is Deliver that reports through done, so the embedded
// broker reads an agent's next message while this one waits for its
// batch's commit. done does not block the writer: it runs once per message,
// from the writer for alerts and before returning for everything else.
func (in *Intake) DeliverAsync(topic string, payload []byte, done func(stored bool)) {
	if t, err := wire.ParseAgentTopic(topic); err == nil && t.Kind == wire.KindAlerts {
		in.m.received.WithLabelValues(t.Kind).Inc()
		in.deliverAlert(t, payload, done)
		return
	}
	done(in.Deliver(topic, payload))
}

// Deliver validates and stores one message an agent published. It returns
// true once the message is stored or definitively rejected, and false when
// it could not be stored (central is stopping): the message must then be
// delivered again. An agent status is the exception: it is state, not an
// event, so Deliver returns true once the status coalescer has taken it,
// before it is stored (handleStatus). The embedded broker calls it before acknowledging the
// agent; with an external broker it is called for each subscribed message.
func (in *Intake) Deliver(topic string, payload []byte) bool {
	t, err := wire.ParseAgentTopic(topic)
	if err != nil {
		in.reject("unknown", ReasonBadTopic, err)
		return true
	}
	in.m.received.WithLabelValues(t.Kind).Inc()
	switch t.Kind {
	case wire.KindAlerts:
		result := make(chan bool, 1)
		in.deliverAlert(t, payload, func(ok bool) { result <- ok })
		select {
		case ok := <-result:
			return ok
		case <-in.ctx.Done():
			// Stopping: no PUBACK. If the batch did commit, the agent's
			// resend is stored as a duplicate, once.
			return false
		}
	case wire.KindEvidence:
		return in.handleEvidence(t, payload)
	case wire.KindStatus:
		return in.handleStatus(t, payload)
	case wire.KindReplies:
		in.handleReply(t, payload)
		return true
	default:
		in.reject(t.Kind, ReasonBadTopic, fmt.Errorf("agents do not publish %q", t.Kind))
		return true
	}
}

func (in *Intake) reject(kind string, reason wire.Reason, err error) {
	in.m.rejected.WithLabelValues(kind, string(reason)).Inc()
	in.log.Warn("message rejected", "kind", kind, "reason", reason, "err", err)
}

// retry runs op until it succeeds or central shuts down; it reports whether
// op succeeded.
func (in *Intake) retry(what string, op func(context.Context) error) bool {
	backoff := 50 * time.Millisecond
	for {
		start := time.Now()
		err := op(in.ctx)
		in.m.storeSecs.Observe(time.Since(start).Seconds())
		if err == nil {
			return true
		}
		if in.ctx.Err() != nil {
			return false
		}
		in.m.retries.Inc()
		in.log.Error("store failed; retrying", "what", what, "err", err, "backoff", backoff)
		select {
		case <-time.After(backoff):
		case <-in.ctx.Done():
			return false
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// deliverAlert validates an alert and hands it to the writer; done is
// called with true once it is stored or definitively rejected.
func (in *Intake) deliverAlert(t wire.AgentTopic, payload []byte, done func(ok bool)) {
	a, err := in.dec.DecodeAlert(payload)
	if err != nil {
		in.reject(wire.KindAlerts, wire.ReasonOf(err), err)
		done(true)
		return
	}
	if a.AgentID != t.AgentID {
		in.reject(wire.KindAlerts, ReasonAgentMismatch, fmt.Errorf("payload agent_id %q published under agent %q", a.AgentID, t.AgentID))
		done(true)
		return
	}
	in.storeAlert(a, func(ok, inserted bool) {
		switch {
		case !ok:
		case inserted:
			in.m.ingested.Inc()
			in.m.latency.Observe(time.Since(a.DetectedAt).Seconds())
			in.log.Debug("alert stored", "alert_id", a.AlertID, "agent_id", a.AgentID, "camera_id", a.CameraID,
				"type", a.Type, "phase", a.Phase, "zone", a.Zone)
		default:
			in.m.duplicate.Inc()
			in.log.Debug("duplicate alert", "alert_id", a.AlertID)
		}
		done(ok)
	})
}

func (in *Intake) handleEvidence(t wire.AgentTopic, payload []byte) bool {
	if t.Parts > 0 {
		return in.handleEvidencePart(t, payload)
	}
	if err := wire.CheckEvidence(t.EvKind, payload); err != nil {
		in.reject(wire.KindEvidence, wire.ReasonOf(err), err)
		return true
	}
	sum := sha256.Sum256(payload)
	ev := store.Evidence{
		EvidenceMeta: store.EvidenceMeta{AlertID: t.AlertID, Kind: t.EvKind, SHA256: hex.EncodeToString(sum[:]), Size: len(payload), ReceivedAt: time.Now()},
		Data:         payload,
	}
	var inserted bool
	ok := in.retry("evidence "+t.AlertID, func(ctx context.Context) error {
		var err error
		inserted, err = in.store.PutEvidence(ctx, ev)
		return err
	})
	if ok && inserted {
		in.m.evidence.WithLabelValues(string(t.EvKind)).Inc()
	}
	return ok
}

// handleEvidencePart stores a part of a clip sent in parts; the store
// joins them into the evidence with the last one.
func (in *Intake) handleEvidencePart(t wire.AgentTopic, payload []byte) bool {
	if err := wire.CheckClipPart(t.Part, payload); err != nil {
		in.reject(wire.KindEvidence, wire.ReasonOf(err), err)
		return true
	}
	p := store.EvidencePart{AlertID: t.AlertID, Kind: t.EvKind, Index: t.Part, Parts: t.Parts, Data: payload, ReceivedAt: time.Now()}
	var stored bool
	ok := in.retry(fmt.Sprintf("evidence %s part %d/%d", t.AlertID, t.Part+1, t.Parts), func(ctx context.Context) error {
		var err error
		stored, err = in.store.PutEvidencePart(ctx, p)
		return err
	})
	if ok && stored {
		in.m.evidence.WithLabelValues(string(t.EvKind)).Inc()
		in.log.Debug("evidence joined from parts", "alert_id", t.AlertID, "kind", t.EvKind, "parts", t.Parts)
	}
	return ok
}

// handleStatus validates an agent status and hands it to the coalescer,
// which stores the newest of each agent in batches. It reports true once
// the coalescer has taken it, before it is stored: a status is state,
// retained on the broker and repeated by the agent's next heartbeat, so a
// crash of central loses at most the last flush window of statuses (never
// an alert, which is acknowledged only once stored). False: central is
// stopping and the message must come again.
func (in *Intake) handleStatus(t wire.AgentTopic, payload []byte) bool {
	if len(payload) == 0 {
		return true // a cleared retained status
	}
	st, err := in.dec.DecodeStatus(payload)
	if err != nil {
		in.reject(wire.KindStatus, wire.ReasonOf(err), err)
		return true
	}
	if st.AgentID != t.AgentID {
		in.reject(wire.KindStatus, ReasonAgentMismatch, fmt.Errorf("payload agent_id %q published under agent %q", st.AgentID, t.AgentID))
		return true
	}
	return in.statuses.Put(st, time.Now())
}

// ErrNoReply is returned by Command when the agent did not answer in time.
var ErrNoReply error = noReply{}

type noReply struct{}

func (noReply) Error() string { return "the agent did not answer in time" }
func (noReply) Timeout() bool { return true }

// Command sends c to an agent and waits for its reply until ctx ends.
func (in *Intake) Command(ctx context.Context, agentID string, c wire.Cmd) (*wire.CmdReply, error) {
	if !wire.ValidID(agentID) {
		return nil, fmt.Errorf("invalid agent id %q", agentID)
	}
	if c.CmdID == "" {
		c.CmdID = wire.NewULID(time.Now())
	}
	c.TS = time.Now()
	b, err := wire.Marshal(&c)
	if err != nil {
		return nil, err
	}
	if _, err := in.dec.DecodeCmd(b); err != nil {
		return nil, err
	}
	ch := make(chan *wire.CmdReply, 1)
	in.waitMu.Lock()
	in.waiters[c.CmdID] = ch
	in.waitMu.Unlock()
	defer func() {
		in.waitMu.Lock()
		delete(in.waiters, c.CmdID)
		in.waitMu.Unlock()
	}()
	if err := mqttc.Wait(in.client.Publish(wire.CmdTopic(agentID), 1, false, b), 10*time.Second); err != nil {
		return nil, fmt.Errorf("send command: %w", err)
	}
	in.m.commands.WithLabelValues(string(c.Cmd), "sent").Inc()
	select {
	case r := <-ch:
		in.m.commands.WithLabelValues(string(c.Cmd), "answered").Inc()
		return r, nil
	case <-ctx.Done():
		in.m.commands.WithLabelValues(string(c.Cmd), "timeout").Inc()
		return nil, ErrNoReply
	}
}

func (in *Intake) handleReply(t wire.AgentTopic, payload []byte) {
	r, err := in.dec.DecodeCmdReply(payload)
	if err != nil {
		in.reject(wire.KindReplies, wire.ReasonOf(err), err)
		return
	}
	if r.AgentID != t.AgentID {
		in.reject(wire.KindReplies, ReasonAgentMismatch, fmt.Errorf("reply from %q published under agent %q", r.AgentID, t.AgentID))
		return
	}
	in.waitMu.Lock()
	ch, ok := in.waiters[r.CmdID]
	in.waitMu.Unlock()
	if !ok {
		in.log.Info("reply to a command nobody waits for", "cmd_id", r.CmdID, "agent_id", r.AgentID)
		return
	}
	select {
	case ch <- r:
	default:
	}
}
