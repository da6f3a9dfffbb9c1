// Package publish sends the agent's alerts, evidence and status to the
// broker with paho: QoS 1, retained status with an "offline" last will,
// automatic reconnect.
//
// Messages wait in a bounded in-memory queue that drops the oldest when full
// (counted); the durable on-disk outbox (issue "Durable alert transport")
// replaces it so that nothing is lost across power cycles.
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

	"github.com/xueliang/xl/internal/mqttc"
	"github.com/xueliang/xl/internal/queue"
	"github.com/xueliang/xl/internal/wire"
)

// message is one MQTT publish waiting to go out.
type message struct {
	topic    string
	payload  []byte
	retained bool
	kind     string // alert, snapshot, status
}

// StatusFunc returns the agent's current status for the retained topic.
type StatusFunc func() wire.Status

// Publisher owns the agent's broker connection.
type Publisher struct {
	agentID   string
	cfg       mqttc.Config
	log       *slog.Logger
	q         *queue.DropOldest[message]
	client    mqtt.Client
	status    StatusFunc
	interval  time.Duration
	connected atomic.Bool
	wake      chan struct{}

	published *prometheus.CounterVec
	dropped   *prometheus.CounterVec
	depth     prometheus.GaugeFunc
	latency   prometheus.Histogram
	connGauge prometheus.Gauge
}

// New prepares a publisher; it connects in Run.
func New(agentID string, cfg mqttc.Config, queueSize int, statusEvery time.Duration, status StatusFunc, reg prometheus.Registerer, log *slog.Logger) (*Publisher, error) {
	if cfg.ClientID == "" {
		cfg.ClientID = "xl-agent-" + agentID
	}
	p := &Publisher{agentID: agentID, cfg: cfg, log: log.With("component", "publish"), status: status, interval: statusEvery, wake: make(chan struct{}, 1)}
	f := promauto.With(reg)
	p.published = f.NewCounterVec(prometheus.CounterOpts{Name: "xl_agent_mqtt_published_total",
		Help: "Messages acknowledged by the broker, by kind."}, []string{"kind"})
	p.dropped = f.NewCounterVec(prometheus.CounterOpts{Name: "xl_agent_publish_dropped_total",
		Help: "Messages dropped because the publish queue was full, by kind."}, []string{"kind"})
	p.q = queue.New(queueSize, func(m message) {
		p.dropped.WithLabelValues(m.kind).Inc()
		p.log.Warn("publish queue full; dropped the oldest message", "kind", m.kind, "topic", m.topic)
	})
	p.depth = f.NewGaugeFunc(prometheus.GaugeOpts{Name: "xl_agent_publish_queue_depth",
		Help: "Messages waiting to be published."}, func() float64 { return float64(p.q.Len()) })
	p.latency = f.NewHistogram(prometheus.HistogramOpts{Name: "xl_agent_mqtt_publish_seconds",
		Help: "Time from publish to the broker's acknowledgement.", Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12)})
	p.connGauge = f.NewGauge(prometheus.GaugeOpts{Name: "xl_agent_mqtt_connected", Help: "1 while connected to the broker."})

	opts, err := cfg.Options()
	if err != nil {
		return nil, err
	}
	will, err := p.statusPayload(wire.StateOffline)
	if err != nil {
		return nil, err
	}
	opts.SetBinaryWill(wire.StatusTopic(agentID), will, 1, true)
	opts.SetOnConnectHandler(func(c mqtt.Client) {
		p.connected.Store(true)
		p.connGauge.Set(1)
		p.log.Info("connected", "broker", cfg.URL)
		p.enqueueStatus(wire.StateOnline)
	})
	opts.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		p.connected.Store(false)
		p.connGauge.Set(0)
		p.log.Warn("broker connection lost", "err", err)
	})
	p.client = mqtt.NewClient(opts)
	return p, nil
}

func (p *Publisher) statusPayload(state wire.AgentState) ([]byte, error) {
	st := p.status()
	st.AgentID, st.State, st.TS = p.agentID, state, time.Now()
	return wire.Marshal(&st)
}

func (p *Publisher) enqueueStatus(state wire.AgentState) {
	b, err := p.statusPayload(state)
	if err != nil {
		p.log.Error("status", "err", err)
		return
	}
	p.q.Push(message{topic: wire.StatusTopic(p.agentID), payload: b, retained: true, kind: "status"})
}

// RefreshStatus queues the current status (a camera's state changed).
func (p *Publisher) RefreshStatus() {
	if p.connected.Load() {
		p.enqueueStatus(wire.StateOnline)
	}
}

// Publish queues an alert and, when given, its snapshot. It never blocks.
func (p *Publisher) Publish(a *wire.Alert, snapshot []byte) error {
	if a.PublishedAt.IsZero() {
		a.PublishedAt = time.Now()
	}
	b, err := wire.Marshal(a)
	if err != nil {
		return fmt.Errorf("publish: encode alert: %w", err)
	}
	if len(b) > wire.MaxAlertBytes {
		return fmt.Errorf("publish: alert %s is %d bytes, over the contract's %d", a.AlertID, len(b), wire.MaxAlertBytes)
	}
	p.q.Push(message{topic: wire.AlertsTopic(p.agentID), payload: b, kind: "alert"})
	if len(snapshot) > 0 {
		p.q.Push(message{topic: wire.EvidenceTopic(p.agentID, a.AlertID, wire.EvidenceSnapshot), payload: snapshot, kind: "snapshot"})
	}
	return nil
}

// Ready reports whether the broker connection is up.
func (p *Publisher) Ready(context.Context) error {
	if !p.connected.Load() {
		return errors.New("not connected to the MQTT broker")
	}
	return nil
}

// Run connects and publishes until ctx is cancelled.
func (p *Publisher) Run(ctx context.Context) error {
	p.log.Info("connecting", "broker", p.cfg.URL, "client_id", p.cfg.ClientID)
	p.client.Connect() // retries in the background until the broker answers
	lastStatus := time.Now()
	for {
		if p.connected.Load() && time.Since(lastStatus) >= p.interval {
			p.enqueueStatus(wire.StateOnline)
			lastStatus = time.Now()
		}
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		m, ok := p.q.Pop(pctx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if ok && !p.send(ctx, m) {
			return nil
		}
	}
}

// send publishes m until the broker acknowledges it or ctx ends.
func (p *Publisher) send(ctx context.Context, m message) bool {
	backoff := 200 * time.Millisecond
	for {
		for !p.connected.Load() {
			select {
			case <-ctx.Done():
				return false
			case <-time.After(100 * time.Millisecond):
			}
		}
		start := time.Now()
		t := p.client.Publish(m.topic, 1, m.retained, m.payload)
		done := t.WaitTimeout(30 * time.Second)
		if done && t.Error() == nil {
			p.latency.Observe(time.Since(start).Seconds())
			p.published.WithLabelValues(m.kind).Inc()
			return true
		}
		err := t.Error()
		if !done {
			err = errors.New("no PUBACK within 30s")
		}
		p.log.Warn("publish failed; retrying", "kind", m.kind, "topic", m.topic, "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// Close publishes the offline status (best effort) and disconnects.
func (p *Publisher) Close() error {
	if p.connected.Load() {
		if b, err := p.statusPayload(wire.StateOffline); err == nil {
			mqttc.Wait(p.client.Publish(wire.StatusTopic(p.agentID), 1, true, b), 2*time.Second)
		}
	}
	p.client.Disconnect(500)
	p.q.Close()
	return nil
}
