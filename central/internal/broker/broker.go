// Package broker runs the MQTT broker embedded in xl-central (mochi-mqtt), so
// one command runs the whole command centre. Production deployments point
// central at an external Mosquitto or EMQX instead.
package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/xueliang/xl/internal/wire"
)

// Config is the embedded broker's configuration.
type Config struct {
	Enabled        bool      `mapstructure:"enabled"`
	Listen         string    `mapstructure:"listen"`           // host:port for MQTT over TCP
	MaxPacketBytes int       `mapstructure:"max_packet_bytes"` // largest MQTT packet accepted
	AllowAnonymous bool      `mapstructure:"allow_anonymous"`  // development only: no credentials, no ACLs
	Users          []User    `mapstructure:"users"`
	TLS            TLSConfig `mapstructure:"tls"`
}

// TLSConfig adds an MQTT-over-TLS listener.
type TLSConfig struct {
	Listen       string `mapstructure:"listen"`         // e.g. 0.0.0.0:8883; empty: no TLS listener
	CertFile     string `mapstructure:"cert_file"`      // server certificate (PEM)
	KeyFile      string `mapstructure:"key_file"`       // its key
	ClientCAFile string `mapstructure:"client_ca_file"` // when set, clients must present a certificate it signed
}

// Broker is the embedded broker.
type Broker struct {
	srv  *mqtt.Server
	tcp  *listeners.TCP
	tls  *listeners.TCP
	auth *auth
	m    *metrics
	log  *slog.Logger
}

// New starts listening at once, so a taken port is reported here.
func New(cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Broker, error) {
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = uint32(cfg.MaxPacketBytes)
	caps.MaximumSessionExpiryInterval = 7 * 24 * 3600
	srv := mqtt.New(&mqtt.Options{
		Capabilities: caps,
		Logger:       log.With("component", "broker"),
	})
	a, err := newAuth(cfg.Users, cfg.AllowAnonymous, reg)
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	if err := srv.AddHook(a, nil); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	if cfg.AllowAnonymous {
		log.Warn("embedded broker accepts anonymous clients without topic ACLs (broker.allow_anonymous); never do this on a network")
	}
	b := &Broker{srv: srv, auth: a, m: newMetrics(reg), log: log}
	b.tcp = listeners.NewTCP(listeners.Config{Type: listeners.TypeTCP, ID: "tcp", Address: cfg.Listen})
	if err := srv.AddListener(b.tcp); err != nil {
		return nil, fmt.Errorf("broker: listen on %s: %w (another MQTT broker may hold the port; set broker.listen or XL_BROKER_LISTEN)", cfg.Listen, err)
	}
	if cfg.TLS.Listen != "" {
		tc, err := serverTLS(cfg.TLS)
		if err != nil {
			b.Close()
			return nil, err
		}
		b.tls = listeners.NewTCP(listeners.Config{Type: listeners.TypeTCP, ID: "tls", Address: cfg.TLS.Listen, TLSConfig: tc})
		if err := srv.AddListener(b.tls); err != nil {
			b.Close()
			return nil, fmt.Errorf("broker: TLS listen on %s: %w", cfg.TLS.Listen, err)
		}
	}
	return b, nil
}

func serverTLS(c TLSConfig) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("broker: TLS certificate: %w", err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if c.ClientCAFile != "" {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("broker: client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("broker: client_ca_file %s holds no PEM certificate", c.ClientCAFile)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// TLSAddr is the TLS listener's address, or "" without one.
func (b *Broker) TLSAddr() string {
	if b.tls == nil {
		return ""
	}
	return b.tls.Address()
}

// InternalCredentials are the username and password central's own intake
// uses on this broker.
func (b *Broker) InternalCredentials() (string, string) {
	return InternalUser, string(b.auth.internalPass)
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

// Validate checks the broker settings; key prefix is added by the caller.
func (c Config) Validate() []string {
	var out []string
	seen := map[string]bool{}
	for i, u := range c.Users {
		switch {
		case u.Username == InternalUser:
			out = append(out, fmt.Sprintf("users[%d].username: %q is reserved", i, u.Username))
		case !wire.ValidID(u.Username):
			out = append(out, fmt.Sprintf("users[%d].username: %q must be a valid ID (agents log in with their agent ID)", i, u.Username))
		case seen[u.Username]:
			out = append(out, fmt.Sprintf("users[%d].username: %q appears twice", i, u.Username))
		}
		seen[u.Username] = true
		if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
			out = append(out, fmt.Sprintf("users[%d].password_hash: not a bcrypt hash (make one with `xl-central passwd`)", i))
		}
		if u.Role != RoleAgent && u.Role != RoleCentral && u.Role != RoleAgency {
			out = append(out, fmt.Sprintf("users[%d].role: %q is not agent, agency or central", i, u.Role))
		}
	}
	if c.TLS.Listen != "" && (c.TLS.CertFile == "" || c.TLS.KeyFile == "") {
		out = append(out, "tls: cert_file and key_file are required with tls.listen")
	}
	return out
}
