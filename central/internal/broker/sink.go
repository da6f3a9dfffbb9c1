package broker

import (
	"strings"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/xueliang/xl/internal/wire"
)

// Sink takes what agents publish before the broker acknowledges it.
type Sink interface {
	// Deliver stores a message and reports whether it did; false means it
	// could not be stored (central is stopping). An agent status is
	// reported once intake holds it, before it is stored (it is state,
	// retained here and repeated by the agent's next heartbeat).
	Deliver(topic string, payload []byte) bool
	// DeliverAsync stores a message and calls done once it is stored
	// (true) or could not be (false), possibly from another goroutine and
	// in any order; done must not block.
	DeliverAsync(topic string, payload []byte, done func(stored bool))
}

// SetSink makes the broker hand every agent message to s and acknowledge
// it only once s has stored it: when an agent holds a PUBACK, central has
// stored the message, and a crash of central in between loses nothing.
//
// The acknowledgement is sent when the store commits, not from inside the
// publish: the broker reads the agent's next messages meanwhile, so many
// of one agent's alerts share one commit (group commit) instead of each
// waiting for its own. Acknowledgements leave in the order the messages
// came, as MQTT requires. Messages the sink takes are not forwarded to
// other subscribers of the embedded broker (central is their consumer);
// agent status is, and stays retained. Call before Run.
func (b *Broker) SetSink(s Sink) error {
	return b.srv.AddHook(&sinkHook{sink: s, srv: b.srv, m: b.m}, nil)
}

type sinkHook struct {
	mqtt.HookBase
	sink   Sink
	srv    *mqtt.Server
	m      *metrics
	ackers sync.Map // *mqtt.Client → *acker
}

func (h *sinkHook) ID() string { return "xl-intake-sink" }

func (h *sinkHook) Provides(b byte) bool {
	return b == mqtt.OnPublish || b == mqtt.OnWillSent || b == mqtt.OnDisconnect
}

// OnWillSent hands a disconnected agent's last will (its "offline" status)
// to the sink: the broker publishes wills without the publish hooks.
func (h *sinkHook) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	if strings.HasPrefix(pk.TopicName, wire.Root+"/agents/") && len(pk.Payload) > 0 {
		h.sink.Deliver(pk.TopicName, pk.Payload)
	}
}

// OnDisconnect drops the agent's pending acknowledgements: their messages
// were not acknowledged, so the agent sends them again.
func (h *sinkHook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	if a, ok := h.ackers.LoadAndDelete(cl); ok {
		a.(*acker).close()
	}
}

func (h *sinkHook) acker(cl *mqtt.Client) *acker {
	if a, ok := h.ackers.Load(cl); ok {
		return a.(*acker)
	}
	a := newAcker(cl, h.m)
	if prev, loaded := h.ackers.LoadOrStore(cl, a); loaded {
		a.close()
		return prev.(*acker)
	}
	return a
}

func (h *sinkHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline || !strings.HasPrefix(pk.TopicName, wire.Root+"/agents/") || strings.HasSuffix(pk.TopicName, "/"+wire.KindCmd) {
		return pk, nil
	}
	if len(pk.Payload) == 0 && pk.FixedHeader.Retain {
		return pk, nil // clearing a retained message
	}
	if pk.FixedHeader.Qos == 0 {
		h.sink.Deliver(pk.TopicName, pk.Payload) // nothing to acknowledge
		return pk, nil
	}
	a := h.acker(cl)
	if pk.FixedHeader.Retain {
		// The agent's status: the broker keeps it as the retained message
		// and acknowledges it itself, after the agent's earlier messages.
		a.waitIdle()
		if !h.sink.Deliver(pk.TopicName, pk.Payload) {
			return pk, packets.ErrRejectPacket // no PUBACK: the agent retries
		}
		return pk, nil
	}
	p := a.push(pk.PacketID)
	h.sink.DeliverAsync(pk.TopicName, pk.Payload, func(stored bool) { a.finish(p, stored) })
	// The broker neither acknowledges nor forwards the message: the acker
	// acknowledges it once it is stored.
	return pk, packets.ErrRejectPacket
}

// acker sends one agent's PUBACKs in the order its publishes came, each
// once its message is stored. A writer goroutine owned by the acker does
// the socket writes, so the store's commit never waits for a slow agent.
type acker struct {
	cl *mqtt.Client
	m  *metrics

	mu     sync.Mutex
	queue  []*pendingAck
	idle   *sync.Cond // signalled when queue empties
	closed bool

	out  chan uint16 // packet IDs to acknowledge
	done chan struct{}
}

type pendingAck struct {
	id       uint16
	finished bool
	stored   bool
}

// ackBuffer bounds the acknowledgements waiting for the socket; beyond it
// the agent is not reading and an acknowledgement is dropped (counted): the
// agent sends that message again and central stores it once.
const ackBuffer = 4096

func newAcker(cl *mqtt.Client, m *metrics) *acker {
	a := &acker{cl: cl, m: m, out: make(chan uint16, ackBuffer), done: make(chan struct{})}
	a.idle = sync.NewCond(&a.mu)
	go a.writeLoop()
	return a
}

func (a *acker) push(id uint16) *pendingAck {
	p := &pendingAck{id: id}
	a.mu.Lock()
	a.queue = append(a.queue, p)
	a.mu.Unlock()
	return p
}

// finish records the outcome of p and sends every acknowledgement that is
// now at the head of the queue. A message that was not stored gets none.
func (a *acker) finish(p *pendingAck, stored bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p.finished, p.stored = true, stored
	n := 0
	for n < len(a.queue) && a.queue[n].finished {
		if q := a.queue[n]; q.stored && !a.closed {
			select {
			case a.out <- q.id:
			default:
				a.m.acksDropped.Inc()
			}
		}
		n++
	}
	if n > 0 {
		clear(a.queue[:n])
		a.queue = a.queue[n:]
		if len(a.queue) == 0 {
			a.queue = nil
			a.idle.Broadcast()
		}
	}
}

// waitIdle returns once every earlier message is acknowledged or dropped.
func (a *acker) waitIdle() {
	a.mu.Lock()
	for len(a.queue) > 0 && !a.closed {
		a.idle.Wait()
	}
	a.mu.Unlock()
}

func (a *acker) writeLoop() {
	for {
		select {
		case <-a.done:
			return
		case id := <-a.out:
			ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: id}
			if err := a.cl.WritePacket(ack); err != nil {
				a.m.acksDropped.Inc()
			}
		}
	}
}

// close stops the writer; acknowledgements still pending are not sent.
func (a *acker) close() {
	a.mu.Lock()
	if !a.closed {
		a.closed = true
		close(a.done)
		a.idle.Broadcast()
	}
	a.mu.Unlock()
}

type metrics struct {
	acksDropped prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{acksDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "xl_central_broker_acks_dropped_total",
		Help: "PUBACKs not sent for stored messages because the agent was gone or not reading (it sends them again)."})}
	reg.MustRegister(m.acksDropped)
	return m
}
