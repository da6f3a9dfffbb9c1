package broker

import (
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/xueliang/xl/internal/wire"
)

// Sink takes what agents publish before the broker acknowledges it.
// Deliver returns false when the message could not be stored; the broker
// then withholds the PUBACK and the agent sends the message again.
type Sink interface {
	Deliver(topic string, payload []byte) bool
}

// SetSink makes the broker hand every agent message to s inside the
// publish, before the PUBACK: when an agent holds a PUBACK, central has
// stored the message, and a crash of central in between loses nothing.
// Call before Run.
func (b *Broker) SetSink(s Sink) error {
	return b.srv.AddHook(&sinkHook{sink: s}, nil)
}

type sinkHook struct {
	mqtt.HookBase
	sink Sink
}

func (h *sinkHook) ID() string { return "xl-intake-sink" }

func (h *sinkHook) Provides(b byte) bool { return b == mqtt.OnPublish || b == mqtt.OnWillSent }

// OnWillSent hands a disconnected agent's last will (its "offline" status)
// to the sink: the broker publishes wills without the publish hooks.
func (h *sinkHook) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	if strings.HasPrefix(pk.TopicName, wire.Root+"/agents/") && len(pk.Payload) > 0 {
		h.sink.Deliver(pk.TopicName, pk.Payload)
	}
}

func (h *sinkHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline || !strings.HasPrefix(pk.TopicName, wire.Root+"/agents/") || strings.HasSuffix(pk.TopicName, "/"+wire.KindCmd) {
		return pk, nil
	}
	if len(pk.Payload) == 0 && pk.FixedHeader.Retain {
		return pk, nil // clearing a retained message
	}
	if !h.sink.Deliver(pk.TopicName, pk.Payload) {
		return pk, packets.ErrRejectPacket // no PUBACK: the agent retries
	}
	return pk, nil
}
