// Package publish sends the agent's alerts, evidence and status to the
// broker with paho: QoS 1, a persistent session, retained status with an
// "offline" last will, automatic reconnect with backoff.
//
// Alerts and evidence go through the durable outbox: Publish returns once
// they are on disk, and they are deleted only after the broker's PUBACK. The
// sender drains the outbox lane by lane (alerts first), in the order the
// messages were written, so each camera's alerts arrive in order; after an
// outage or a restart it simply starts again from what is left. A message
// can arrive twice (sent, then the link dropped before the PUBACK); central
// stores each alert_id once.
package publish

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/xueliang/xl/agent/internal/outbox"
	"github.com/xueliang/xl/internal/mqttc"
	"github.com/xueliang/xl/internal/wire"
)

// StatusFunc returns the agent's current status for the retained topic.
type StatusFunc func() wire.Status

// CmdFunc executes a command from central and returns the reply.
type CmdFunc func(ctx context.Context, c *wire.Cmd) wire.CmdReply

// Batch limits: many small alerts per round trip, few large evidence items,
// so an alert written meanwhile waits behind at most a few megabytes.
const (
	alertBatch       = 256
	evidenceBatch    = 8
	evidenceBudget   = 4 << 20
	ackTimeout       = 30 * time.Second
	statusRetryEvery = 5 * time.Second
)

// Publisher owns the agent's broker connection.
type Publisher struct {
	agentID  string
	cfg      mqttc.Config
	log      *slog.Logger
	ob       *outbox.Outbox
	client   mqtt.Client
	status   StatusFunc
	onCmd    CmdFunc
	interval time.Duration

	connected atomic.Bool
	statusDue atomic.Bool
	ctx       context.Context
	cancel    context.CancelFunc
	dec       wire.Decoder

	published *prometheus.CounterVec
	failures  prometheus.Counter
	latency   prometheus.Histogram
	connGauge prometheus.Gauge
	cmds      *prometheus.CounterVec
}

// New prepares a publisher over ob; it connects in Run. onCmd may be nil
// (commands are then answered with an error).
func New(agentID string, cfg mqttc.Config, ob *outbox.Outbox, statusEvery time.Duration, status StatusFunc, onCmd CmdFunc, reg prometheus.Registerer, log *slog.Logger) (*Publisher, error) {
	if cfg.ClientID == "" {
		cfg.ClientID = "xl-agent-" + agentID
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Publisher{agentID: agentID, cfg: cfg, log: log.With("component", "publish"), ob: ob, status: status, onCmd: onCmd,
		interval: statusEvery, ctx: ctx, cancel: cancel}
	f := promauto.With(reg)
	p.published = f.NewCounterVec(prometheus.CounterOpts{Name: "xl_agent_mqtt_published_total",
		Help: "Messages acknowledged by the broker, by kind (alert, snapshot, clip, status, reply)."}, []string{"kind"})
	p.failures = f.NewCounter(prometheus.CounterOpts{Name: "xl_agent_mqtt_publish_failures_total",
		Help: "Publishes that got no acknowledgement (the message stays in the outbox)."})
	p.latency = f.NewHistogram(prometheus.HistogramOpts{Name: "xl_agent_mqtt_publish_seconds",
		Help: "Time from publishing a batch to the broker's acknowledgement of it.", Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 14)})
	p.connGauge = f.NewGauge(prometheus.GaugeOpts{Name: "xl_agent_mqtt_connected", Help: "1 while connected to the broker."})
	p.cmds = f.NewCounterVec(prometheus.CounterOpts{Name: "xl_agent_commands_total",
		Help: "Commands received from central, by command and result."}, []string{"cmd", "result"})

	opts, err := cfg.Options()
	if err != nil {
		cancel()
		return nil, err
	}
	will, err := p.statusPayload(wire.StateOffline)
	if err != nil {
		cancel()
		return nil, err
	}
	opts.SetBinaryWill(wire.StatusTopic(agentID), will, 1, true)
	opts.SetOrderMatters(false) // command handlers publish replies themselves
	opts.SetOnConnectHandler(p.onConnect)
	opts.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		p.connected.Store(false)
		p.connGauge.Set(0)
		p.log.Warn("broker connection lost", "err", err)
	})
	p.client = mqtt.NewClient(opts)
	return p, nil
}

func (p *Publisher) onConnect(c mqtt.Client) {
	p.connected.Store(true)
	p.connGauge.Set(1)
	p.statusDue.Store(true)
	p.log.Info("connected", "broker", p.cfg.URL)
	// Subscriptions are made again on every connect (the broker may have
	// lost the session).
	c.Subscribe(wire.CmdTopic(p.agentID), 1, p.handleCmd)
}

func (p *Publisher) statusPayload(state wire.AgentState) ([]byte, error) {
	st := p.status()
	st.AgentID, st.State, st.TS = p.agentID, state, time.Now()
	return wire.Marshal(&st)
}

// RefreshStatus republishes the status soon (a camera's state changed).
func (p *Publisher) RefreshStatus() { p.statusDue.Store(true) }

// PublishAll writes alerts (without evidence) to the outbox in one
// transaction: one fsync for all of them.
func (p *Publisher) PublishAll(alerts []*wire.Alert) error {
	msgs := make([]outbox.Message, 0, len(alerts))
	for _, a := range alerts {
		m, err := p.alertMessage(a)
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
	}
	return p.ob.Put(msgs...)
}

func (p *Publisher) alertMessage(a *wire.Alert) (outbox.Message, error) {
	if a.PublishedAt.IsZero() {
		a.PublishedAt = time.Now()
	}
	b, err := wire.Marshal(a)
	if err != nil {
		return outbox.Message{}, fmt.Errorf("publish: encode alert: %w", err)
	}
	if len(b) > wire.MaxAlertBytes {
		return outbox.Message{}, fmt.Errorf("publish: alert %s is %d bytes, over the contract's %d", a.AlertID, len(b), wire.MaxAlertBytes)
	}
	return outbox.Message{Lane: outbox.LaneAlert, CameraID: a.CameraID, Topic: wire.AlertsTopic(p.agentID), Payload: b}, nil
}

// Publish writes an alert and, when given, its snapshot and the snapshot's
// clean copy to the outbox, in one transaction. It returns once they are on
// disk; sending happens in Run. The clean copy goes out as the snapshot of
// a.Evidence.CleanSnapshotID (see wire.Evidence).
func (p *Publisher) Publish(a *wire.Alert, snapshot, clean []byte) error {
	m, err := p.alertMessage(a)
	if err != nil {
		return err
	}
	msgs := []outbox.Message{m}
	for _, ev := range []struct {
		id   string
		data []byte
	}{{a.AlertID, snapshot}, {a.Evidence.CleanSnapshotID, clean}} {
		if len(ev.data) == 0 {
			continue
		}
		if err := wire.CheckEvidence(wire.EvidenceSnapshot, ev.data); err != nil {
			return fmt.Errorf("publish: snapshot of %s: %w", a.AlertID, err)
		}
		topic := wire.EvidenceTopic(p.agentID, ev.id, wire.EvidenceSnapshot)
		if _, err := wire.ParseAgentTopic(topic); err != nil {
			return fmt.Errorf("publish: snapshot of %s: %w", a.AlertID, err)
		}
		msgs = append(msgs, outbox.Message{Lane: outbox.LaneSnapshot, CameraID: a.CameraID, Topic: topic, Payload: ev.data})
	}
	return p.ob.Put(msgs...)
}

// PublishEvidence writes evidence that follows its alert later (a clip
// recorded after the event started) to the outbox, in the lane of its kind
// (clips leave after alerts and snapshots, and are evicted first). It
// returns once the evidence is on disk.
func (p *Publisher) PublishEvidence(cameraID, alertID string, kind wire.EvidenceKind, payload []byte) error {
	if err := wire.CheckEvidence(kind, payload); err != nil {
		return fmt.Errorf("publish: %s of %s: %w", kind, alertID, err)
	}
	topic := wire.EvidenceTopic(p.agentID, alertID, kind)
	if _, err := wire.ParseAgentTopic(topic); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	lane := outbox.LaneClip
	if kind == wire.EvidenceSnapshot {
		lane = outbox.LaneSnapshot
	}
	return p.ob.Put(outbox.Message{Lane: lane, CameraID: cameraID, Topic: topic, Payload: payload})
}

// Ready reports whether the broker connection is up.
func (p *Publisher) Ready(context.Context) error {
	if !p.connected.Load() {
		return errors.New("not connected to the MQTT broker")
	}
	return nil
}

// Run connects and drains the outbox until ctx is cancelled.
func (p *Publisher) Run(ctx context.Context) error {
	p.log.Info("connecting", "broker", p.cfg.URL, "client_id", p.cfg.ClientID)
	p.client.Connect() // retries in the background until the broker answers
	lastStatus, lastEvict := time.Time{}, time.Now()
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		if !p.connected.Load() {
			if !sleep(ctx, 100*time.Millisecond) {
				break
			}
			continue
		}
		if p.statusDue.Load() || time.Since(lastStatus) >= p.interval {
			if p.publishStatus(wire.StateOnline) {
				p.statusDue.Store(false)
				lastStatus = time.Now()
			} else {
				lastStatus = time.Now().Add(statusRetryEvery - p.interval)
			}
		}
		if time.Since(lastEvict) > 10*time.Second {
			if err := p.ob.Evict(time.Now()); err != nil {
				p.log.Error("outbox eviction", "err", err)
			}
			lastEvict = time.Now()
		}
		sent, err := p.drainOnce(ctx)
		if err != nil {
			p.failures.Inc()
			p.log.Warn("publish failed; the messages stay in the outbox", "err", err, "retry_in", backoff)
			if !sleep(ctx, backoff) {
				break
			}
			backoff = min(backoff*2, 10*time.Second)
			continue
		}
		backoff = 200 * time.Millisecond
		if sent == 0 {
			select {
			case <-ctx.Done():
			case <-p.ob.Wake():
			case <-time.After(time.Second):
			}
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// send publishes m; a clip too large for one message goes in parts
// (wire.ClipPartTopic), and m is delivered when every part is
// acknowledged. A clip that cannot be split (over the contract's limit)
// fails as a message the broker refused would, and stays in the outbox
// until its age evicts it.
func (p *Publisher) send(m outbox.Message) []mqtt.Token {
	if len(m.Payload) > wire.MaxClipBytes {
		if t, err := wire.ParseAgentTopic(m.Topic); err == nil && t.Kind == wire.KindEvidence && t.EvKind == wire.EvidenceClip && t.Parts == 0 {
			parts, err := wire.SplitClip(m.Payload)
			if err != nil {
				return []mqtt.Token{failedToken{err}}
			}
			toks := make([]mqtt.Token, len(parts))
			for i, part := range parts {
				toks[i] = p.client.Publish(wire.ClipPartTopic(t.AgentID, t.AlertID, i, len(parts)), 1, false, part)
			}
			return toks
		}
	}
	return []mqtt.Token{p.client.Publish(m.Topic, 1, false, m.Payload)}
}

// failedToken is a completed token carrying err.
type failedToken struct{ err error }

func (t failedToken) Wait() bool                     { return true }
func (t failedToken) WaitTimeout(time.Duration) bool { return true }
func (t failedToken) Done() <-chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}
func (t failedToken) Error() error { return t.err }

// drainOnce publishes one batch from the most urgent lane and removes from
// the outbox what the broker acknowledged.
func (p *Publisher) drainOnce(ctx context.Context) (int, error) {
	msgs, err := p.ob.Pending(ctx, alertBatch, 1<<30)
	if err != nil || len(msgs) == 0 {
		return 0, err
	}
	if msgs[0].Lane != outbox.LaneAlert {
		if msgs, err = p.ob.Pending(ctx, evidenceBatch, evidenceBudget); err != nil || len(msgs) == 0 {
			return 0, err
		}
	}
	start := time.Now()
	tokens := make([][]mqtt.Token, len(msgs))
	for i, m := range msgs {
		tokens[i] = p.send(m)
	}
	var done []outbox.Message
	var firstErr error
wait:
	for i, toks := range tokens {
		for _, t := range toks {
			if !t.WaitTimeout(ackTimeout) {
				firstErr = fmt.Errorf("no PUBACK within %s for %s", ackTimeout, msgs[i].Topic)
				break wait
			}
			if err := t.Error(); err != nil {
				firstErr = fmt.Errorf("%s: %w", msgs[i].Topic, err)
				break wait
			}
		}
		done = append(done, msgs[i])
	}
	if len(done) > 0 {
		p.latency.Observe(time.Since(start).Seconds())
		if err := p.ob.Ack(done...); err != nil {
			return len(done), err
		}
		for _, m := range done {
			p.published.WithLabelValues(m.Lane.String()).Inc()
		}
	}
	return len(done), firstErr
}

func (p *Publisher) publishStatus(state wire.AgentState) bool {
	b, err := p.statusPayload(state)
	if err != nil {
		p.log.Error("status", "err", err)
		return false
	}
	if err := mqttc.Wait(p.client.Publish(wire.StatusTopic(p.agentID), 1, true, b), 10*time.Second); err != nil {
		p.log.Warn("status not published", "err", err)
		return false
	}
	p.published.WithLabelValues("status").Inc()
	return true
}

func (p *Publisher) handleCmd(_ mqtt.Client, msg mqtt.Message) {
	c, err := p.dec.DecodeCmd(msg.Payload())
	if err != nil {
		p.cmds.WithLabelValues("invalid", "rejected").Inc()
		p.log.Warn("command rejected", "err", err)
		return
	}
	reply := wire.CmdReply{CmdID: c.CmdID, AgentID: p.agentID, Cmd: c.Cmd}
	if p.onCmd == nil {
		reply.Error = "this agent takes no commands"
	} else {
		ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
		reply = p.onCmd(ctx, c)
		cancel()
		reply.CmdID, reply.AgentID, reply.Cmd = c.CmdID, p.agentID, c.Cmd
	}
	reply.OK = reply.Error == ""
	reply.TS = time.Now()
	result := "ok"
	if !reply.OK {
		result = "error"
	}
	p.cmds.WithLabelValues(string(c.Cmd), result).Inc()
	p.log.Info("command", "cmd", c.Cmd, "cmd_id", c.CmdID, "ok", reply.OK, "error", reply.Error)
	b, err := wire.Marshal(&reply)
	if err != nil {
		p.log.Error("reply", "err", err)
		return
	}
	// Not awaited here: paho delivers the next message only after this
	// handler returns.
	p.client.Publish(wire.ReplyTopic(p.agentID), 1, false, b)
	p.published.WithLabelValues("reply").Inc()
}

// PublishRaw sends a message straight away (command results such as a
// requested snapshot); it is not kept in the outbox.
func (p *Publisher) PublishRaw(topic string, payload []byte) error {
	return mqttc.Wait(p.client.Publish(topic, 1, false, payload), 10*time.Second)
}

// Close publishes the offline status (best effort) and disconnects.
func (p *Publisher) Close() error {
	p.cancel()
	if p.connected.Load() {
		p.publishStatus(wire.StateOffline)
	}
	p.client.Disconnect(500)
	return nil
}
