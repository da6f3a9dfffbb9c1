package app

import (
	"fmt"
	"strings"
	"time"

	"github.com/xueliang/xl/central/internal/broker"
	"github.com/xueliang/xl/central/internal/routing"
	"github.com/xueliang/xl/internal/config"
	"github.com/xueliang/xl/internal/logging"
	"github.com/xueliang/xl/internal/mqttc"
)

// Config is xl-central's configuration (configs/central.yaml).
type Config struct {
	HTTP   HTTPConfig     `mapstructure:"http"`
	Broker broker.Config  `mapstructure:"broker"`
	MQTT   mqttc.Config   `mapstructure:"mqtt"`
	Store  StoreConfig    `mapstructure:"store"`
	Intake IntakeConfig   `mapstructure:"intake"`
	Log    logging.Config `mapstructure:"log"`
	// Routing is the agencies, places, cameras, SLA profiles and rules the
	// dispatcher routes incidents with. Empty: every incident waits for the
	// duty officer.
	Routing   routing.Config `mapstructure:"routing"`
	Incidents IncidentConfig `mapstructure:"incidents"`
}

// IncidentConfig groups alerts into incidents.
type IncidentConfig struct {
	// Window: an alert joins the open incident of its (camera, type, zone)
	// when that incident's last alert is at most this old.
	Window time.Duration `mapstructure:"window"`
}

// HTTPConfig is the API, console and metrics listener.
type HTTPConfig struct {
	Addr  string `mapstructure:"addr"`
	Pprof bool   `mapstructure:"pprof"` // serve /debug/pprof/ (off: it reveals internals)
}

// StoreConfig selects central's database.
type StoreConfig struct {
	Driver string `mapstructure:"driver"` // sqlite
	Path   string `mapstructure:"path"`   // SQLite file
}

// IntakeConfig tunes message validation.
type IntakeConfig struct {
	MaxFutureSkew time.Duration `mapstructure:"max_future_skew"`
}

// DefaultConfig is the configuration with nothing set.
func DefaultConfig() *Config {
	m := mqttc.Default()
	m.URL = "" // the embedded broker
	m.ClientID = "xl-central"
	return &Config{
		HTTP:      HTTPConfig{Addr: "127.0.0.1:8080"},
		Broker:    broker.Config{Enabled: true, Listen: "127.0.0.1:1883", MaxPacketBytes: 16 << 20},
		MQTT:      m,
		Store:     StoreConfig{Driver: "sqlite", Path: "data/xl-central.db"},
		Intake:    IntakeConfig{MaxFutureSkew: 5 * time.Minute},
		Log:       logging.Default(),
		Incidents: IncidentConfig{Window: 10 * time.Minute},
	}
}

// ApplyDefaults fills in derived defaults after the file is read.
func (c *Config) ApplyDefaults() { c.Routing.ApplyDefaults() }

// Validate reports every problem in c.
func (c *Config) Validate() []config.FieldError {
	var p config.Problems
	p.HostPort("http.addr", c.HTTP.Addr, true)
	if c.Broker.Enabled {
		p.HostPort("broker.listen", c.Broker.Listen, true)
		for _, msg := range c.Broker.Validate() {
			key, rest, _ := strings.Cut(msg, ": ")
			p.Add("broker."+key, "%s", rest)
		}
		if c.Broker.MaxPacketBytes < 256<<10 {
			p.Add("broker.max_packet_bytes", "at least 262144 (256 KiB), so that snapshots fit")
		}
	} else if c.MQTT.URL == "" {
		p.Add("mqtt.url", "required when broker.enabled is false")
	}
	p.Merge("mqtt", c.MQTT.Validate(c.Broker.Enabled))
	switch c.Store.Driver {
	case "sqlite":
		if c.Store.Path == "" {
			p.Add("store.path", "required for the sqlite driver")
		}
	default:
		p.Add("store.driver", "%q is not supported; use sqlite", c.Store.Driver)
	}
	if c.Intake.MaxFutureSkew < time.Second || c.Intake.MaxFutureSkew > 24*time.Hour {
		p.Add("intake.max_future_skew", "must be within 1s–24h")
	}
	if c.Incidents.Window < time.Second || c.Incidents.Window > 7*24*time.Hour {
		p.Add("incidents.window", "must be within 1s–168h")
	}
	p.Merge("routing", c.Routing.Validate())
	for _, msg := range c.Log.Validate("log") {
		p.Add("log", "%s", msg)
	}
	return p.List()
}

// LoadConfig reads, overrides from XL_* and validates a configuration file.
func LoadConfig(path string) (*Config, error) {
	cfg := DefaultConfig()
	if err := config.Load(path, cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// BrokerURL is the broker central's intake connects to.
func (c *Config) BrokerURL(embeddedAddr string) string {
	if c.MQTT.URL != "" {
		return c.MQTT.URL
	}
	return fmt.Sprintf("tcp://%s", embeddedAddr)
}
