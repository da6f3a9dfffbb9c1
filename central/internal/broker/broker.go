// Package broker runs the MQTT broker embedded in xl-central (mochi-mqtt), so
// one command runs the whole command centre. Production deployments point
// central at an external Mosquitto or EMQX instead.
package broker

import (
	"context"
	"fmt"
	"log/slog"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// Config is the embedded broker's configuration.
type Config struct {
	Enabled        bool   `mapstructure:"enabled"`
	Listen         string `mapstructure:"listen"`           // host:port for MQTT over TCP
	MaxPacketBytes int    `mapstructure:"max_packet_bytes"` // largest MQTT packet accepted
}

// Broker is the embedded broker.
type Broker struct {
	srv *mqtt.Server
	tcp *listeners.TCP
	log *slog.Logger
}

// New starts listening at once, so a taken port is reported here.
func New(cfg Config, log *slog.Logger) (*Broker, error) {
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = uint32(cfg.MaxPacketBytes)
	caps.MaximumSessionExpiryInterval = 7 * 24 * 3600
	srv := mqtt.New(&mqtt.Options{
		Capabilities: caps,
		Logger:       log.With("component", "broker"),
	})
	// Authentication and topic ACLs for agents come with the durable
	// transport work; until then the broker listens on loopback by default.
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	tcp := listeners.NewTCP(listeners.Config{Type: listeners.TypeTCP, ID: "tcp", Address: cfg.Listen})
	if err := srv.AddListener(tcp); err != nil {
		return nil, fmt.Errorf("broker: listen on %s: %w (another MQTT broker may hold the port; set broker.listen or XL_BROKER_LISTEN)", cfg.Listen, err)
	}
	return &Broker{srv: srv, tcp: tcp, log: log}, nil
}

// Addr is the address the broker listens on.
func (b *Broker) Addr() string { return b.tcp.Address() }

// URL is the address as an MQTT URL for clients.
func (b *Broker) URL() string { return "tcp://" + b.Addr() }

// Run serves until ctx is cancelled.
func (b *Broker) Run(ctx context.Context) error {
	if err := b.srv.Serve(); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	<-ctx.Done()
	return nil
}

// Close stops the broker and disconnects its clients.
func (b *Broker) Close() error { return b.srv.Close() }
