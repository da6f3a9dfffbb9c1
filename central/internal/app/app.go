// Package app wires xl-central's components together: store, embedded
// broker, intake and HTTP, started in that order and stopped in reverse.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/xueliang/xl/central/internal/broker"
	"github.com/xueliang/xl/central/internal/dispatch"
	"github.com/xueliang/xl/central/internal/intake"
	"github.com/xueliang/xl/central/internal/routing"
	"github.com/xueliang/xl/central/internal/store/sqlite"
	"github.com/xueliang/xl/central/internal/web"
	"github.com/xueliang/xl/internal/lifecycle"
	"github.com/xueliang/xl/internal/opshttp"
	"github.com/xueliang/xl/internal/version"
	"github.com/xueliang/xl/internal/wire"
)

// Central is one running xl-central.
type Central struct {
	cfg    *Config
	log    *slog.Logger
	Reg    *prometheus.Registry
	store  *sqlite.Store
	broker *broker.Broker
	intake *intake.Intake
	disp   *dispatch.Dispatcher
	http   *opshttp.Server
	parts  lifecycle.Group
}

// New opens the store and binds every listener, so that configuration and
// port problems are reported before anything runs.
func New(ctx context.Context, cfg *Config, log *slog.Logger) (_ *Central, err error) {
	c := &Central{cfg: cfg, log: log, Reg: prometheus.NewRegistry()}
	c.Reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "xl_central_build_info", Help: "Build version of xl-central."}, []string{"version"})
	buildInfo.WithLabelValues(version.Version).Set(1)
	c.Reg.MustRegister(buildInfo)
	defer func() {
		if err != nil {
			c.Close()
		}
	}()

	c.store, err = sqlite.Open(ctx, cfg.Store.Path)
	if err != nil {
		return nil, err
	}
	brokerAddr := ""
	if cfg.Broker.Enabled {
		c.broker, err = broker.New(cfg.Broker, c.Reg, log)
		if err != nil {
			return nil, err
		}
		brokerAddr = c.broker.Addr()
		c.parts.Add(c.broker)
	}
	mc := cfg.MQTT
	mc.URL = cfg.BrokerURL(brokerAddr)
	if cfg.MQTT.URL == "" && c.broker != nil {
		mc.Username, mc.Password = c.broker.InternalCredentials()
	}
	router, err := routing.New(&cfg.Routing)
	if err != nil {
		return nil, err
	}
	c.disp = dispatch.New(c.store, router, dispatch.Options{Window: cfg.Incidents.Window, Reg: c.Reg, Log: log})
	// The SLA and auto-dispatch timers.
	c.parts.Add(c.disp)
	embedded := cfg.MQTT.URL == "" && c.broker != nil
	c.intake, err = intake.New(mc, c.store, wire.Decoder{MaxFutureSkew: cfg.Intake.MaxFutureSkew}, !embedded, c.Reg, log)
	if err != nil {
		return nil, err
	}
	if embedded {
		// A new broker has no connections: agents count as offline until
		// they connect again and publish their status.
		if err := c.store.MarkAllOffline(ctx); err != nil {
			return nil, err
		}
		// Agents' messages are stored before the broker acknowledges them.
		if err := c.broker.SetSink(c.intake); err != nil {
			return nil, err
		}
	}
	// Stored alerts wait in the store until the dispatcher has put them into
	// incidents; intake only tells it that there are new ones.
	c.intake.OnStored(func(context.Context, []*wire.Alert) { c.disp.NotifyStored() })
	c.parts.Add(c.intake)
	c.http, err = opshttp.New(cfg.HTTP.Addr, c.Reg, log.With("component", "http"))
	if err != nil {
		return nil, err
	}
	if cfg.HTTP.Pprof {
		c.http.EnablePprof()
	}
	c.http.AddCheck("store", c.store.Ping)
	c.http.AddCheck("mqtt", c.intake.Ready)
	web.New(c.store, c.intake, log).WithDispatch(c.store, c.disp).Register(c.http.Mux)
	c.parts.Add(c.http)
	return c, nil
}

// HTTPAddr is the address of the API and console.
func (c *Central) HTTPAddr() string { return c.http.Addr() }

// BrokerAddr is the embedded broker's address, or "" when it is disabled.
func (c *Central) BrokerAddr() string {
	if c.broker == nil {
		return ""
	}
	return c.broker.Addr()
}

// Run runs every component until ctx is cancelled or one fails; then it
// stops them in reverse order of start and closes the store.
func (c *Central) Run(ctx context.Context) error {
	c.log.Info("xl-central running", "version", version.Version, "http", c.HTTPAddr(), "broker", c.BrokerAddr(), "store", c.cfg.Store.Path)
	err := c.parts.Run(ctx)
	return errors.Join(err, c.Close())
}

// Close stops every component in reverse order of start and closes the store.
func (c *Central) Close() error {
	errs := []error{c.parts.Close()}
	if c.store != nil {
		if err := c.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("store: %w", err))
		}
		c.store = nil
	}
	return errors.Join(errs...)
}
