// Package loadgen simulates a fleet of xl-agents over real MQTT
// connections: each simulated agent is its own paho client with the
// agent's client ID, username and retained status with an "offline" last
// will, publishing heartbeats and wire-contract alerts (and optional JPEG
// sized evidence) at QoS 1 on a seeded, deterministic schedule.
//
// Lifecycle: New → Run(ctx) → Close. Run connects the agents at the ramp
// rate, sends the schedule for the configured duration, publishes the
// agents' offline status, disconnects and returns the Summary.
package loadgen

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/xueliang/xl/internal/wire"
)

// Rate is an alert rate, either for the whole fleet or per camera.
type Rate struct {
	Value     float64
	PerCamera bool // Value is alerts per camera per hour; else alerts per second in total
}

// ParseRate reads "200" or "200/s" (alerts per second, all cameras
// together) or "6/cam/h" (alerts per camera per hour).
func ParseRate(s string) (Rate, error) {
	s = strings.TrimSpace(s)
	var r Rate
	num := s
	switch {
	case strings.HasSuffix(s, "/cam/h"):
		num, r.PerCamera = strings.TrimSuffix(s, "/cam/h"), true
	case strings.HasSuffix(s, "/s"):
		num = strings.TrimSuffix(s, "/s")
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 || v != v {
		return Rate{}, fmt.Errorf("%q: want a number ≥ 0 as N, N/s (alerts per second in total) or N/cam/h (per camera per hour)", s)
	}
	r.Value = v
	return r, nil
}

func (r Rate) String() string {
	if r.PerCamera {
		return strconv.FormatFloat(r.Value, 'g', -1, 64) + "/cam/h"
	}
	return strconv.FormatFloat(r.Value, 'g', -1, 64) + "/s"
}

// PerCameraPerSecond is one camera's mean rate in alerts per second.
func (r Rate) PerCameraPerSecond(cameras int) float64 {
	if r.PerCamera {
		return r.Value / 3600
	}
	if cameras == 0 {
		return 0
	}
	return r.Value / float64(cameras)
}

// Config is a load generator run.
type Config struct {
	Broker          string        // tcp://host:port
	AgentPrefix     string        // agent IDs are PREFIX-NNNNN (and broker usernames)
	Password        string        // every simulated agent's broker password
	FirstAgent      int           // index of the first agent (several loadgens share one ID space)
	Agents          int           // simulated agents (edge boxes), one MQTT connection each
	CamerasPerAgent int           // cameras per agent
	Rate            Rate          // alert rate, the daily mean of the profile
	Profile         string        // flat or diurnal
	Compress        float64       // simulated seconds per real second for the profile (1: real time)
	StartHour       float64       // simulated hour of day when the traffic starts
	Duration        time.Duration // how long the alert traffic runs, after the ramp
	Seed            int64         // seeds the schedule
	Ramp            float64       // new connections per second
	Evidence        float64       // share of start/update alerts sent with a snapshot, 0–1
	EvidenceMedian  int           // median snapshot size, bytes
	EvidenceSigma   float64       // lognormal sigma of the snapshot size
	StormAt         time.Duration // after the ramp: when a reconnect storm hits; 0: none
	StormFraction   float64       // share of agents whose connection drops in the storm
	StatusInterval  time.Duration // heartbeat: the retained status is published again this often
	KeepAlive       time.Duration
	AckTimeout      time.Duration // a publish not acknowledged in this time counts as unacked
	Journal         string        // file: one line per alert sent and per acknowledgement; empty: none
	Senders         int           // sending goroutines (agents are spread over them)
}

// Default is a small run against a local broker.
func Default() Config {
	return Config{Broker: "tcp://127.0.0.1:1883", AgentPrefix: "lg", Agents: 100, CamerasPerAgent: 8,
		Rate: Rate{Value: 6, PerCamera: true}, Profile: "flat", Compress: 1, StartHour: 12,
		Duration: time.Minute, Seed: 1, Ramp: 500, EvidenceMedian: 90 << 10, EvidenceSigma: 0.5,
		StormFraction: 0.2, StatusInterval: 30 * time.Second, KeepAlive: 30 * time.Second,
		AckTimeout: 30 * time.Second, Senders: 16}
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(flag, format string, args ...any) {
		errs = append(errs, fmt.Errorf("--%s: %s", flag, fmt.Sprintf(format, args...)))
	}
	if !strings.Contains(c.Broker, "://") {
		bad("broker", "%q is not a URL such as tcp://127.0.0.1:1883", c.Broker)
	}
	if !wire.ValidID(c.AgentPrefix) || len(c.AgentPrefix) > 40 {
		bad("agent-prefix", "%q must be a valid agent ID of at most 40 characters", c.AgentPrefix)
	}
	if c.Agents < 1 || c.Agents > 1_000_000 {
		bad("agents", "%d is outside 1–1000000", c.Agents)
	}
	if c.FirstAgent < 0 || c.FirstAgent+c.Agents > 99_999+1 {
		bad("first-agent", "agents %d–%d do not fit the 5-digit agent number", c.FirstAgent, c.FirstAgent+c.Agents-1)
	}
	if c.CamerasPerAgent < 1 || c.CamerasPerAgent > 32 {
		bad("cameras-per-agent", "%d is outside 1–32 (an edge box's limit)", c.CamerasPerAgent)
	}
	if c.Rate.Value < 0 {
		bad("rate", "negative")
	}
	if _, ok := profiles[c.Profile]; !ok {
		bad("profile", "%q is not one of %s", c.Profile, strings.Join(ProfileNames(), ", "))
	}
	if c.Compress <= 0 {
		bad("compress", "must be > 0 (1 is real time; 144 runs a day in 10 minutes)")
	}
	if c.StartHour < 0 || c.StartHour >= 24 {
		bad("start-hour", "%g is outside 0–24", c.StartHour)
	}
	if c.Duration <= 0 {
		bad("duration", "must be > 0")
	}
	if c.Ramp <= 0 {
		bad("ramp", "must be > 0 connections per second")
	}
	if c.Evidence < 0 || c.Evidence > 1 {
		bad("evidence", "%g is outside 0–1", c.Evidence)
	}
	if c.EvidenceMedian < 4 || c.EvidenceMedian > wire.MaxSnapshotBytes {
		bad("evidence-median", "%d is outside 4–%d bytes", c.EvidenceMedian, wire.MaxSnapshotBytes)
	}
	if c.EvidenceSigma < 0 || c.EvidenceSigma > 3 {
		bad("evidence-sigma", "%g is outside 0–3", c.EvidenceSigma)
	}
	if c.StormAt < 0 {
		bad("storm-at", "negative")
	}
	if c.StormFraction < 0 || c.StormFraction > 1 {
		bad("storm-fraction", "%g is outside 0–1", c.StormFraction)
	}
	if c.StatusInterval < time.Second {
		bad("status-interval", "at least 1s")
	}
	if c.KeepAlive < time.Second {
		bad("keep-alive", "at least 1s")
	}
	if c.AckTimeout < time.Second {
		bad("ack-timeout", "at least 1s")
	}
	if c.Senders < 1 || c.Senders > 1024 {
		bad("senders", "%d is outside 1–1024", c.Senders)
	}
	return errors.Join(errs...)
}
