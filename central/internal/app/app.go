// Package app wires xl-central's components together: store, embedded
// broker, intake and HTTP, started in that order and stopped in reverse.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/xueliang/xl/central/internal/broker"
	"github.com/xueliang/xl/central/internal/dispatch"
	"github.com/xueliang/xl/central/internal/egress"
	"github.com/xueliang/xl/central/internal/events"
	"github.com/xueliang/xl/central/internal/intake"
	"github.com/xueliang/xl/central/internal/order"
	"github.com/xueliang/xl/central/internal/routing"
	"github.com/xueliang/xl/central/internal/store"
	"github.com/xueliang/xl/central/internal/web"
	"github.com/xueliang/xl/internal/lifecycle"
	"github.com/xueliang/xl/internal/opshttp"
	"github.com/xueliang/xl/internal/sdnotify"
	"github.com/xueliang/xl/internal/version"
	"github.com/xueliang/xl/internal/wire"
)

// Central is one running xl-central.
type Central struct {
	cfg    *Config
	log    *slog.Logger
	Reg    *prometheus.Registry
	store  Store
	broker *broker.Broker
	intake *intake.Intake
	disp   *dispatch.Dispatcher
	egress *egress.Sender
	hub    *events.Hub
	http   *opshttp.Server
	parts  lifecycle.Group

	ackResults *prometheus.CounterVec
}

// New opens the store and binds every listener, so that configuration and
// port problems are reported before anything runs.
func New(ctx context.Context, cfg *Config, log *slog.Logger) (_ *Central, err error) {
	c := &Central{cfg: cfg, log: log, Reg: prometheus.NewRegistry()}
	c.ackResults = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xl_central_order_acks_total",
		Help: "Agencies' actions on orders received over MQTT, by result."}, []string{"result"})
	c.Reg.MustRegister(c.ackResults)
	for _, r := range []string{"applied", "refused", "forbidden", "unknown_order"} {
		c.ackResults.WithLabelValues(r)
	}
	c.Reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "xl_central_build_info", Help: "Build version of xl-central."}, []string{"version"})
	buildInfo.WithLabelValues(version.Version).Set(1)
	c.Reg.MustRegister(buildInfo)
	defer func() {
		if err != nil {
			c.Close()
		}
	}()

	c.store, err = openStore(ctx, cfg.Store, false)
	if err != nil {
		return nil, err
	}
	c.Reg.MustRegister(newStatsCollector(c.store, 2*time.Second, log.With("component", "metrics")))
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
	embedded := cfg.MQTT.URL == "" && c.broker != nil
	c.intake, err = intake.New(mc, c.store, wire.Decoder{MaxFutureSkew: cfg.Intake.MaxFutureSkew}, !embedded, c.Reg, log)
	if err != nil {
		return nil, err
	}
	c.intake.ShareGroup(cfg.Intake.ShareGroup)
	// Orders and card notifications leave through the intake's broker
	// connection and agencies' webhooks.
	c.egress = egress.New(c.store, c.intake, egress.Options{
		MaxAttempts: cfg.Egress.MaxAttempts, MinBackoff: cfg.Egress.MinBackoff, MaxBackoff: cfg.Egress.MaxBackoff,
		Timeout: cfg.Egress.Timeout, WebhookSecret: cfg.Egress.WebhookSecret, Reg: c.Reg, Log: log})
	c.hub = events.New(c.Reg)
	c.disp = dispatch.New(liveStore{Store: c.store, hub: c.hub}, router, dispatch.Options{Window: cfg.Incidents.Window, Reg: c.Reg, Log: log,
		PublicURL: cfg.HTTP.PublicURL, OnEgress: c.egress.Notify})
	// The SLA and auto-dispatch timers.
	c.parts.Add(c.disp)
	c.intake.OnOrderAck(c.orderAck)
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
	c.intake.OnStored(func(_ context.Context, alerts []*wire.Alert) {
		c.disp.NotifyStored()
		publishAlerts(c.hub, alerts)
	})
	c.parts.Add(c.intake)
	c.parts.Add(c.egress) // after intake: it publishes through its connection
	c.http, err = opshttp.NewWithLimits(cfg.HTTP.Addr, c.Reg, log.With("component", "http"), cfg.HTTP.Limits())
	if err != nil {
		return nil, err
	}
	if cfg.HTTP.Pprof {
		c.http.EnablePprof()
	}
	c.http.AddCheck("store", c.store.Ping)
	c.http.AddCheck("mqtt", c.intake.Ready)
	secure := strings.HasPrefix(cfg.HTTP.PublicURL, "https://")
	web.New(c.store, c.intake, log).WithDispatch(c.store, c.disp).WithEgress(c.store, c.egress.Notify).
		WithAuth(c.store, web.AuthOptions{SecureCookies: secure}).WithEvents(c.hub).WithPhotos(c.store).
		WithPlaces(places(&cfg.Routing)).
		WithLimits(web.Limits{MaxPhotoBytes: cfg.HTTP.MaxPhotoBytes, UploadTimeout: cfg.HTTP.UploadTimeout, WriteTimeout: cfg.HTTP.WriteTimeout}).
		Register(c.http.Mux)
	c.parts.Add(c.http)
	c.parts.Add(c.hub) // closed first: live streams end before the HTTP server shuts down
	// Under systemd: READY=1, and watchdog keep-alives while the store answers.
	c.parts.Add(sdnotify.New(c.store.Ping, log))
	return c, nil
}

// fieldActions are what agencies may do to their orders over MQTT.
var fieldActions = map[order.Action]bool{order.ActionAccept: true, order.ActionReject: true, order.ActionDepart: true,
	order.ActionArrive: true, order.ActionResolve: true}

// orderAck applies an agency's action on one of its orders, sent over
// MQTT. It returns false only when the action could not be tried (the
// store failed), so that the message comes again.
func (c *Central) orderAck(agencyID string, ack *wire.OrderAck) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	log := c.log.With("component", "order-ack", "agency_id", agencyID, "order_id", ack.OrderID, "action", ack.Action, "cmd_id", ack.CmdID)
	rec, err := c.store.GetOrder(ctx, ack.OrderID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		log.Warn("ack for an unknown order")
		c.ackResults.WithLabelValues("unknown_order").Inc()
		return true
	case err != nil:
		log.Error("ack not applied; it will come again", "err", err)
		return false
	case rec.Order.AgencyID != agencyID:
		// An agency acts only on its own orders, whatever it claims.
		log.Warn("ack refused: the order belongs to another agency", "owner", rec.Order.AgencyID)
		c.ackResults.WithLabelValues("forbidden").Inc()
		return true
	case !fieldActions[order.Action(ack.Action)]:
		// Dispatching, closing, cancelling and escalating are the officer's.
		log.Warn("ack refused: not an action of a field unit")
		c.ackResults.WithLabelValues("forbidden").Inc()
		return true
	}
	_, err = c.disp.Transition(ctx, ack.OrderID, order.Command{ID: ack.CmdID, Action: order.Action(ack.Action),
		ExpectedVersion: ack.ExpectedVersion, Actor: "agency:" + agencyID + "/" + ack.Actor, Note: ack.Note, Reason: ack.Reason})
	switch {
	case err == nil:
		c.ackResults.WithLabelValues("applied").Inc()
		log.Info("order action applied", "actor", ack.Actor)
		return true
	case errors.Is(err, order.ErrConflict), errors.Is(err, order.ErrInvalidTransition), errors.Is(err, order.ErrInvalidCommand),
		errors.Is(err, order.ErrCommandReused), errors.Is(err, dispatch.ErrForbiddenAction), errors.Is(err, store.ErrNotFound):
		c.ackResults.WithLabelValues("refused").Inc()
		log.Warn("order action refused", "err", err)
		return true
	default:
		log.Error("ack not applied; it will come again", "err", err)
		return false
	}
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
	c.log.Info("xl-central running", "version", version.Version, "http", c.HTTPAddr(), "broker", c.BrokerAddr(), "store", storeName(c.cfg.Store))
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
