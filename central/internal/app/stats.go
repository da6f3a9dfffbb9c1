package app

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xueliang/xl/central/internal/order"
	"github.com/xueliang/xl/central/internal/store"
	"github.com/xueliang/xl/internal/wire"
)

// StatsReader is the store's side of the state gauges.
type StatsReader interface {
	Stats(ctx context.Context) (store.Stats, error)
}

// statsCollector exports how many incidents, orders, agents and messages
// to agencies are in each state, read from the store when Prometheus
// scrapes (at most once per maxAge, so that several scrapers or replicas
// cost one set of queries). With replicas on one database, each replica
// reports the same totals: aggregate with max(), not sum().
type statsCollector struct {
	st     StatsReader
	maxAge time.Duration
	log    *slog.Logger

	incidents, orders, cards, agents, egress, online, seconds, errs *prometheus.Desc

	mu      sync.Mutex
	last    store.Stats
	lastAt  time.Time
	lastDur float64
	failed  float64
}

func newStatsCollector(st StatsReader, maxAge time.Duration, log *slog.Logger) *statsCollector {
	return &statsCollector{
		st: st, maxAge: maxAge, log: log,
		incidents: prometheus.NewDesc("xl_central_incidents", "Incidents by state.", []string{"state"}, nil),
		orders:    prometheus.NewDesc("xl_central_orders", "Disposal orders by state.", []string{"state"}, nil),
		cards: prometheus.NewDesc("xl_central_active_orders", "Orders that still need work (pending … on_scene) by their SLA card: none, blue, yellow, red.",
			[]string{"card"}, nil),
		agents:  prometheus.NewDesc("xl_central_agents", "Agents by their last state (online, offline).", []string{"state"}, nil),
		online:  prometheus.NewDesc("xl_central_agents_online", "Agents whose last status is online.", nil, nil),
		egress:  prometheus.NewDesc("xl_central_egress_messages", "Messages to agencies kept in the store, by state (pending, delivered, dead).", []string{"state"}, nil),
		seconds: prometheus.NewDesc("xl_central_stats_query_seconds", "Time the last reading of these state counts took from the store.", nil, nil),
		errs:    prometheus.NewDesc("xl_central_stats_errors_total", "Failed readings of the state counts from the store.", nil, nil),
	}
}

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.incidents, c.orders, c.cards, c.agents, c.online, c.egress, c.seconds, c.errs} {
		ch <- d
	}
}

// Collect reports every known state, zero included, so that a state that
// is empty now still has a series.
func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	st, dur, failed := c.read()
	gauges := func(d *prometheus.Desc, counts store.Counts, known []string) {
		seen := map[string]bool{}
		for _, k := range known {
			seen[k] = true
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(counts[k]), k)
		}
		for k, n := range counts { // a state this build does not know
			if !seen[k] {
				ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(n), k)
			}
		}
	}
	var incStates, orderStates, cards []string
	for _, s := range []order.IncidentState{order.IncidentOpen, order.IncidentDispatched, order.IncidentInProgress,
		order.IncidentResolved, order.IncidentClosed, order.IncidentFalseAlarm, order.IncidentCancelled} {
		incStates = append(incStates, string(s))
	}
	for _, s := range order.States() {
		orderStates = append(orderStates, string(s))
	}
	for k := order.CardNone; k <= order.CardRed; k++ {
		cards = append(cards, k.String())
	}
	gauges(c.incidents, st.Incidents, incStates)
	gauges(c.orders, st.Orders, orderStates)
	gauges(c.cards, st.Cards, cards)
	gauges(c.agents, st.Agents, []string{string(wire.StateOnline), string(wire.StateOffline)})
	gauges(c.egress, st.Egress, []string{store.EgressPending, store.EgressDelivered, store.EgressDead})
	ch <- prometheus.MustNewConstMetric(c.online, prometheus.GaugeValue, float64(st.Agents[string(wire.StateOnline)]))
	ch <- prometheus.MustNewConstMetric(c.seconds, prometheus.GaugeValue, dur)
	ch <- prometheus.MustNewConstMetric(c.errs, prometheus.CounterValue, failed)
}

// read returns the counts, from the store when the last reading is older
// than maxAge; on a failure the last good reading stays.
func (c *statsCollector) read() (store.Stats, float64, float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lastAt.IsZero() || time.Since(c.lastAt) >= c.maxAge {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		t0 := time.Now()
		st, err := c.st.Stats(ctx)
		c.lastDur = time.Since(t0).Seconds()
		c.lastAt = time.Now()
		if err != nil {
			c.failed++
			c.log.Warn("state counts for metrics", "err", err)
		} else {
			c.last = st
		}
	}
	return c.last, c.lastDur, c.failed
}
