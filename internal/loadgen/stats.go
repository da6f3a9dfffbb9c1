package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// stats are the run's counters; Prometheus reads the same atomics.
type stats struct {
	attempted, failed, held, lost, reconnects, stormDropped atomic.Int64
	scheduled, dropped                                      atomic.Int64
	alertsSent, alertsAcked, alertsUnacked                  atomic.Int64
	evidenceSent, evidenceAcked, statusSent, statusAcked    atomic.Int64
	bytesAlerts, bytesEvidence, bytesStatus                 atomic.Int64
	commands                                                atomic.Int64

	heldAtEnd                   int64
	rampSeconds, trafficSeconds float64
	interrupted                 bool

	lag, ackSeconds prometheus.Histogram
}

func newHistograms(s *stats) {
	if s.lag != nil {
		return
	}
	s.lag = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "xl_loadgen_schedule_lag_seconds",
		Help: "How late an alert was handed to its sender against the schedule.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)})
	s.ackSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "xl_loadgen_alert_ack_seconds",
		Help: "From publishing an alert to the broker's PUBACK.", Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 14)})
}

func (s *stats) register(reg prometheus.Registerer) error {
	newHistograms(s)
	counter := func(name, help string, v *atomic.Int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
	}
	cs := []prometheus.Collector{
		s.lag, s.ackSeconds,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "xl_loadgen_connections_held", Help: "Simulated agents connected now."},
			func() float64 { return float64(s.held.Load()) }),
		counter("xl_loadgen_connects_attempted_total", "First connection attempts of simulated agents.", &s.attempted),
		counter("xl_loadgen_connects_failed_total", "First connection attempts that failed.", &s.failed),
		counter("xl_loadgen_connections_lost_total", "Connections lost (reconnect storms included).", &s.lost),
		counter("xl_loadgen_reconnects_total", "Connections made again after a loss.", &s.reconnects),
		counter("xl_loadgen_alerts_scheduled_total", "Alerts the schedule produced.", &s.scheduled),
		counter("xl_loadgen_alerts_dropped_total", "Scheduled alerts dropped because a sender fell behind.", &s.dropped),
		counter("xl_loadgen_alerts_sent_total", "Alerts published.", &s.alertsSent),
		counter("xl_loadgen_alerts_acked_total", "Alerts acknowledged by the broker.", &s.alertsAcked),
		counter("xl_loadgen_alerts_unacked_total", "Alerts not acknowledged within the ack timeout.", &s.alertsUnacked),
		counter("xl_loadgen_evidence_sent_total", "Snapshots published.", &s.evidenceSent),
		counter("xl_loadgen_status_sent_total", "Status messages published.", &s.statusSent),
		counter("xl_loadgen_alert_bytes_total", "Alert payload bytes published.", &s.bytesAlerts),
		counter("xl_loadgen_evidence_bytes_total", "Snapshot payload bytes published.", &s.bytesEvidence),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("loadgen metrics: %w", err)
		}
	}
	return nil
}

// Summary is what a run sent, printed at the end.
type Summary struct {
	Seed            int64   `json:"seed"`
	Agents          int     `json:"agents"`
	Cameras         int     `json:"cameras"`
	Rate            string  `json:"rate"`
	Profile         string  `json:"profile"`
	RampSeconds     float64 `json:"ramp_s"`
	TrafficSeconds  float64 `json:"traffic_s"`
	Interrupted     bool    `json:"interrupted"`
	ConnAttempted   int64   `json:"connections_attempted"`
	ConnHeld        int64   `json:"connections_held"`
	ConnFailed      int64   `json:"connections_failed"`
	ConnLost        int64   `json:"connections_lost"`
	Reconnects      int64   `json:"reconnects"`
	StormDropped    int64   `json:"storm_dropped"`
	AlertsScheduled int64   `json:"alerts_scheduled"`
	AlertsDropped   int64   `json:"alerts_dropped"`
	AlertsSent      int64   `json:"alerts_sent"`
	AlertsAcked     int64   `json:"alerts_acked"`
	AlertsUnacked   int64   `json:"alerts_unacked"`
	EvidenceSent    int64   `json:"evidence_sent"`
	EvidenceAcked   int64   `json:"evidence_acked"`
	StatusSent      int64   `json:"status_sent"`
	StatusAcked     int64   `json:"status_acked"`
	BytesAlerts     int64   `json:"bytes_alerts"`
	BytesEvidence   int64   `json:"bytes_evidence"`
	BytesStatus     int64   `json:"bytes_status"`
	Commands        int64   `json:"commands"`
	JournalError    string  `json:"journal_error,omitempty"`
}

func (s *stats) summary(cfg Config) Summary {
	return Summary{Seed: cfg.Seed, Agents: cfg.Agents, Cameras: cfg.Agents * cfg.CamerasPerAgent, Rate: cfg.Rate.String(), Profile: cfg.Profile,
		RampSeconds: s.rampSeconds, TrafficSeconds: s.trafficSeconds, Interrupted: s.interrupted,
		ConnAttempted: s.attempted.Load(), ConnHeld: s.heldAtEnd, ConnFailed: s.failed.Load(), ConnLost: s.lost.Load(),
		Reconnects: s.reconnects.Load(), StormDropped: s.stormDropped.Load(),
		AlertsScheduled: s.scheduled.Load(), AlertsDropped: s.dropped.Load(), AlertsSent: s.alertsSent.Load(),
		AlertsAcked: s.alertsAcked.Load(), AlertsUnacked: s.alertsUnacked.Load(),
		EvidenceSent: s.evidenceSent.Load(), EvidenceAcked: s.evidenceAcked.Load(), StatusSent: s.statusSent.Load(), StatusAcked: s.statusAcked.Load(),
		BytesAlerts: s.bytesAlerts.Load(), BytesEvidence: s.bytesEvidence.Load(), BytesStatus: s.bytesStatus.Load(), Commands: s.commands.Load()}
}

// Print writes the summary for people, then one line "SUMMARY {json}" for
// scripts.
func (s Summary) Print(w io.Writer) {
	fmt.Fprintf(w, "xl-loadgen: seed %d, %d agents, %d cameras, rate %s, profile %s; ramp %.1fs, traffic %.1fs%s\n",
		s.Seed, s.Agents, s.Cameras, s.Rate, s.Profile, s.RampSeconds, s.TrafficSeconds, map[bool]string{true: " (interrupted)"}[s.Interrupted])
	fmt.Fprintf(w, "  connections  attempted %d, held %d at the end, failed %d, lost %d, reconnects %d (storm dropped %d)\n",
		s.ConnAttempted, s.ConnHeld, s.ConnFailed, s.ConnLost, s.Reconnects, s.StormDropped)
	fmt.Fprintf(w, "  alerts       scheduled %d, sent %d, acked %d, unacked %d, dropped (sender behind) %d\n",
		s.AlertsScheduled, s.AlertsSent, s.AlertsAcked, s.AlertsUnacked, s.AlertsDropped)
	fmt.Fprintf(w, "  evidence     sent %d, acked %d; status sent %d, acked %d; commands answered %d\n",
		s.EvidenceSent, s.EvidenceAcked, s.StatusSent, s.StatusAcked, s.Commands)
	fmt.Fprintf(w, "  bytes        alerts %d, evidence %d, status %d\n", s.BytesAlerts, s.BytesEvidence, s.BytesStatus)
	if s.JournalError != "" {
		fmt.Fprintf(w, "  journal      ERROR %s\n", s.JournalError)
	}
	b, _ := json.Marshal(s)
	fmt.Fprintf(w, "SUMMARY %s\n", b)
}
