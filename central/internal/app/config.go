package app

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/xueliang/xl/central/internal/broker"
	"github.com/xueliang/xl/central/internal/routing"
	"github.com/xueliang/xl/internal/config"
	"github.com/xueliang/xl/internal/logging"
	"github.com/xueliang/xl/internal/mqttc"
	"github.com/xueliang/xl/internal/opshttp"
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
	Egress    EgressConfig   `mapstructure:"egress"`
}

// EgressConfig is how orders and card notifications reach agencies.
type EgressConfig struct {
	MaxAttempts int           `mapstructure:"max_attempts"` // then the message is a dead letter
	MinBackoff  time.Duration `mapstructure:"min_backoff"`  // first retry delay, doubling
	MaxBackoff  time.Duration `mapstructure:"max_backoff"`
	Timeout     time.Duration `mapstructure:"timeout"` // one webhook call or MQTT publish
	// WebhookSecret signs webhook bodies (X-XL-Signature: sha256=HMAC);
	// empty: unsigned. Prefer XL_EGRESS_WEBHOOK_SECRET to the file.
	WebhookSecret string `mapstructure:"webhook_secret"`
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
	// PublicURL is central's address as agencies and field units reach it,
	// for the links in their orders; empty: orders carry no links.
	PublicURL string `mapstructure:"public_url"`

	// Limits on clients (docs/operations.md, "HTTP limits").
	ReadHeaderTimeout time.Duration `mapstructure:"read_header_timeout"` // request line and headers (slowloris)
	ReadTimeout       time.Duration `mapstructure:"read_timeout"`        // a whole request, body included
	WriteTimeout      time.Duration `mapstructure:"write_timeout"`       // a response; per write for event streams
	IdleTimeout       time.Duration `mapstructure:"idle_timeout"`        // an idle keep-alive connection
	MaxHeaderBytes    int           `mapstructure:"max_header_bytes"`    // larger: 431
	MaxPhotoBytes     int           `mapstructure:"max_photo_bytes"`     // a field unit's photo; larger: 413
	UploadTimeout     time.Duration `mapstructure:"upload_timeout"`      // a photo upload, instead of read_timeout
}

// StoreConfig selects central's database.
type StoreConfig struct {
	Driver string `mapstructure:"driver"` // sqlite or postgres
	Path   string `mapstructure:"path"`   // SQLite file
	// DSN is the PostgreSQL connection string (postgres://user:pass@host/db?…,
	// optionally with search_path=schema); prefer XL_STORE_DSN to the file.
	DSN string `mapstructure:"dsn"`
}

// IntakeConfig tunes message validation.
type IntakeConfig struct {
	MaxFutureSkew time.Duration `mapstructure:"max_future_skew"`
	// ShareGroup, with an external broker, subscribes through
	// $share/<group>/ so that several central replicas split the agents'
	// messages; each replica needs its own mqtt.client_id.
	ShareGroup string `mapstructure:"share_group"`
}

// maxMQTTPacket is the largest packet MQTT's length field can describe
// (256 MiB - 1); the broker keeps the limit in 32 bits.
const maxMQTTPacket = 268435455

// DefaultConfig is the configuration with nothing set.
func DefaultConfig() *Config {
	m := mqttc.Default()
	m.URL = "" // the embedded broker
	m.ClientID = "xl-central"
	return &Config{
		HTTP: HTTPConfig{Addr: "127.0.0.1:8080", ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
			MaxPhotoBytes: 10 << 20, UploadTimeout: 2 * time.Minute},
		Broker:    broker.Config{Enabled: true, Listen: "127.0.0.1:1883", MaxPacketBytes: 16 << 20},
		MQTT:      m,
		Store:     StoreConfig{Driver: "sqlite", Path: "data/xl-central.db"},
		Intake:    IntakeConfig{MaxFutureSkew: 5 * time.Minute},
		Log:       logging.Default(),
		Incidents: IncidentConfig{Window: 10 * time.Minute},
		Egress:    EgressConfig{MaxAttempts: 12, MinBackoff: time.Second, MaxBackoff: 5 * time.Minute, Timeout: 10 * time.Second},
	}
}

// ApplyDefaults fills in derived defaults after the file is read.
func (c *Config) ApplyDefaults() { c.Routing.ApplyDefaults() }

// Validate reports every problem in c.
func (c *Config) Validate() []config.FieldError {
	var p config.Problems
	p.HostPort("http.addr", c.HTTP.Addr, true)
	c.HTTP.validateLimits(&p)
	if c.Broker.Enabled {
		p.HostPort("broker.listen", c.Broker.Listen, true)
		for _, msg := range c.Broker.Validate() {
			key, rest, _ := strings.Cut(msg, ": ")
			p.Add("broker."+key, "%s", rest)
		}
		if c.Broker.MaxPacketBytes < 256<<10 || c.Broker.MaxPacketBytes > maxMQTTPacket {
			p.Add("broker.max_packet_bytes", "must be within 262144 (256 KiB, so that snapshots fit) and %d (MQTT's largest packet)", maxMQTTPacket)
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
	case "postgres":
		if u, err := url.Parse(c.Store.DSN); c.Store.DSN == "" || err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			p.Add("store.dsn", "a postgres:// URL is required for the postgres driver")
		}
	default:
		p.Add("store.driver", "%q is not supported; use sqlite or postgres", c.Store.Driver)
	}
	if g := c.Intake.ShareGroup; g != "" {
		if strings.ContainsAny(g, "/+#") {
			p.Add("intake.share_group", "%q may not contain /, + or #", g)
		}
		if c.MQTT.URL == "" {
			p.Add("intake.share_group", "needs an external broker (mqtt.url): the embedded one serves one central")
		}
	}
	if c.Intake.MaxFutureSkew < time.Second || c.Intake.MaxFutureSkew > 24*time.Hour {
		p.Add("intake.max_future_skew", "must be within 1s–24h")
	}
	if c.Incidents.Window < time.Second || c.Incidents.Window > 7*24*time.Hour {
		p.Add("incidents.window", "must be within 1s–168h")
	}
	p.Merge("routing", c.Routing.Validate())
	if c.HTTP.PublicURL != "" {
		if u, err := url.Parse(c.HTTP.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.Add("http.public_url", "%q is not an http(s) URL", c.HTTP.PublicURL)
		}
	}
	if c.Egress.MaxAttempts < 1 || c.Egress.MaxAttempts > 1000 {
		p.Add("egress.max_attempts", "must be within 1–1000")
	}
	if c.Egress.MinBackoff < 10*time.Millisecond || c.Egress.MinBackoff > c.Egress.MaxBackoff {
		p.Add("egress.min_backoff", "must be at least 10ms and at most egress.max_backoff")
	}
	if c.Egress.MaxBackoff > 24*time.Hour {
		p.Add("egress.max_backoff", "must be at most 24h")
	}
	if c.Egress.Timeout < 100*time.Millisecond || c.Egress.Timeout > 5*time.Minute {
		p.Add("egress.timeout", "must be within 100ms–5m")
	}
	for _, msg := range c.Log.Validate("log") {
		p.Add("log", "%s", msg)
	}
	return p.List()
}

func (h HTTPConfig) validateLimits(p *config.Problems) {
	for _, d := range []struct {
		key      string
		v        time.Duration
		min, max time.Duration
	}{
		{"http.read_header_timeout", h.ReadHeaderTimeout, 100 * time.Millisecond, time.Minute},
		{"http.read_timeout", h.ReadTimeout, 100 * time.Millisecond, 10 * time.Minute},
		{"http.write_timeout", h.WriteTimeout, 100 * time.Millisecond, 10 * time.Minute},
		{"http.idle_timeout", h.IdleTimeout, time.Second, time.Hour},
		{"http.upload_timeout", h.UploadTimeout, time.Second, time.Hour},
	} {
		if d.v < d.min || d.v > d.max {
			p.Add(d.key, "must be within %s–%s", d.min, d.max)
		}
	}
	if h.ReadHeaderTimeout > h.ReadTimeout {
		p.Add("http.read_header_timeout", "must not be longer than http.read_timeout")
	}
	if h.MaxHeaderBytes < 4<<10 || h.MaxHeaderBytes > 1<<20 {
		p.Add("http.max_header_bytes", "must be within 4096–1048576")
	}
	if h.MaxPhotoBytes < 64<<10 || h.MaxPhotoBytes > 64<<20 {
		p.Add("http.max_photo_bytes", "must be within 65536 (64 KiB)–67108864 (64 MiB)")
	}
}

// Limits are the HTTP server's limits.
func (h HTTPConfig) Limits() opshttp.Limits {
	return opshttp.Limits{ReadHeaderTimeout: h.ReadHeaderTimeout, ReadTimeout: h.ReadTimeout, WriteTimeout: h.WriteTimeout,
		IdleTimeout: h.IdleTimeout, MaxHeaderBytes: h.MaxHeaderBytes,
		// The backstop on every route: a photo and its form.
		MaxBodyBytes: int64(h.MaxPhotoBytes) + 128<<10}
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
