package intake

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/xueliang/xl/central/internal/broker"
	"github.com/xueliang/xl/central/internal/store"
	"github.com/xueliang/xl/central/internal/store/sqlite"
	"github.com/xueliang/xl/internal/mqttc"
	"github.com/xueliang/xl/internal/wire"
)

type rig struct {
	in    *Intake
	st    *sqlite.Store
	agent mqtt.Client
}

// start runs a real embedded broker, a SQLite store and the intake, and
// connects an agent-side paho client. viaSink: the broker hands messages to
// intake before its PUBACK (embedded mode); otherwise intake subscribes
// (external-broker mode).
func start(t *testing.T, viaSink bool) *rig { t.Helper(); return startWith(t, viaSink, nil) }

// startWith is start with a hook for alerts stored for the first time.
func startWith(t *testing.T, viaSink bool, onStored func(context.Context, []*wire.Alert)) *rig {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	hash, err := broker.HashPassword([]byte("agent-a1-password"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(broker.Config{Enabled: true, Listen: "127.0.0.1:0", MaxPacketBytes: 16 << 20,
		Users: []broker.User{{Username: "a1", PasswordHash: hash, Role: broker.RoleAgent}}}, prometheus.NewRegistry(), log)
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := mqttc.Default()
	cfg.URL = b.URL()
	cfg.Username, cfg.Password = b.InternalCredentials()
	in, err := New(cfg, st, wire.Decoder{}, !viaSink, prometheus.NewRegistry(), log)
	if err != nil {
		t.Fatal(err)
	}
	if onStored != nil {
		in.OnStored(onStored)
	}
	if viaSink {
		if err := b.SetSink(in); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { b.Run(ctx) })
	wg.Go(func() { in.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		in.Close()
		b.Close()
		wg.Wait()
		st.Close()
	})
	waitFor(t, "intake connected", func() bool { return in.Ready(ctx) == nil })
	o := mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID("test-agent").SetUsername("a1").SetPassword("agent-a1-password")
	agent := mqtt.NewClient(o)
	if err := mqttc.Wait(agent.Connect(), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Disconnect(100) })
	return &rig{in: in, st: st, agent: agent}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *rig) publish(t *testing.T, topic string, payload []byte) {
	t.Helper()
	if err := mqttc.Wait(r.agent.Publish(topic, 1, false, payload), 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

func newAlert(agent string) *wire.Alert {
	now := time.Now()
	return &wire.Alert{AlertID: wire.NewULID(now), EventID: "e1", Phase: wire.PhaseStart, AgentID: agent, CameraID: "cam-1",
		Type: wire.TypeIntrusion, Severity: 3, Zone: "lawn", StartedAt: now, DetectedAt: now}
}

func TestIntakeStoresOnceAndRejectsBadInput(t *testing.T) {
	for _, viaSink := range []bool{false, true} {
		t.Run(map[bool]string{false: "subscribed", true: "broker-sink"}[viaSink], func(t *testing.T) {
			testStoresOnceAndRejectsBadInput(t, viaSink)
		})
	}
}

func testStoresOnceAndRejectsBadInput(t *testing.T, viaSink bool) {
	r := start(t, viaSink)
	m := r.in.m
	a := newAlert("a1")
	b, _ := wire.Marshal(a)
	r.publish(t, wire.AlertsTopic("a1"), b)
	r.publish(t, wire.AlertsTopic("a1"), b) // a redelivery
	jpeg := []byte{0xff, 0xd8, 0xff, 0xe0, 0, 1, 2, 3}
	r.publish(t, wire.EvidenceTopic("a1", a.AlertID, wire.EvidenceSnapshot), jpeg)

	// Bad input of every kind, none of which may disturb the good traffic.
	other := newAlert("a2")
	ob, _ := wire.Marshal(other)
	r.publish(t, wire.AlertsTopic("a1"), ob)                                 // payload agent differs from topic
	r.publish(t, wire.AlertsTopic("a1"), []byte("{not json"))                // bad JSON
	r.publish(t, wire.AlertsTopic("a1"), []byte(`{"schema":"xl.alert/v9"}`)) // wrong schema
	r.publish(t, wire.AlertsTopic("a1"), []byte("{\"schema\":\"\xff\"}"))    // invalid UTF-8
	r.publish(t, wire.AlertsTopic("a1"), []byte(`{"schema":"xl.alert/v1","x":"`+strings.Repeat("a", 10<<20)+`"}`))
	r.publish(t, wire.EvidenceTopic("a1", a.AlertID, wire.EvidenceClip), []byte("not an mp4"))

	good := newAlert("a1")
	gb, _ := wire.Marshal(good)
	r.publish(t, wire.AlertsTopic("a1"), gb)

	// Intake handles messages in order, and the good alert was sent last:
	// once it is stored, everything before it has been handled.
	waitFor(t, "all messages handled", func() bool {
		return testutil.ToFloat64(m.ingested) == 2 &&
			testutil.ToFloat64(m.received.WithLabelValues(wire.KindAlerts)) == 8 &&
			testutil.ToFloat64(m.received.WithLabelValues(wire.KindEvidence)) == 2
	})
	for _, c := range []struct {
		name string
		got  float64
		want float64
	}{
		{"ingested", testutil.ToFloat64(m.ingested), 2},
		{"duplicate", testutil.ToFloat64(m.duplicate), 1},
		{"agent_mismatch", testutil.ToFloat64(m.rejected.WithLabelValues(wire.KindAlerts, string(ReasonAgentMismatch))), 1},
		{"bad_json", testutil.ToFloat64(m.rejected.WithLabelValues(wire.KindAlerts, string(wire.ReasonBadJSON))), 1},
		{"wrong_schema", testutil.ToFloat64(m.rejected.WithLabelValues(wire.KindAlerts, string(wire.ReasonWrongSchema))), 1},
		{"invalid_utf8", testutil.ToFloat64(m.rejected.WithLabelValues(wire.KindAlerts, string(wire.ReasonInvalidUTF8))), 1},
		{"too_large", testutil.ToFloat64(m.rejected.WithLabelValues(wire.KindAlerts, string(wire.ReasonTooLarge))), 1},
		{"bad clip", testutil.ToFloat64(m.rejected.WithLabelValues(wire.KindEvidence, string(wire.ReasonInvalid))), 1},
		{"snapshots", testutil.ToFloat64(m.evidence.WithLabelValues("snapshot")), 1},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	recs, err := r.st.ListAlerts(context.Background(), store.AlertFilter{})
	if err != nil || len(recs) != 2 {
		t.Fatalf("stored %d alerts (%v), want 2", len(recs), err)
	}
	rec, err := r.st.GetAlert(context.Background(), a.AlertID)
	if err != nil || len(rec.Evidence) != 1 || rec.Evidence[0].Size != len(jpeg) {
		t.Fatalf("evidence: %+v %v", rec.Evidence, err)
	}
}

// A status is stored through the coalescer in both modes; an "offline"
// dated before the "online" that preceded it still wins (a last will).
func TestIntakeRecordsAgentStatus(t *testing.T) {
	for _, viaSink := range []bool{false, true} {
		t.Run(map[bool]string{false: "subscribed", true: "broker-sink"}[viaSink], func(t *testing.T) {
			r := start(t, viaSink)
			st := &wire.Status{AgentID: "a1", State: wire.StateOnline, Version: "1.0", TS: time.Now(),
				Cameras: []wire.CameraStatus{{CameraID: "cam-1", State: "streaming", FPS: 10}}}
			b, _ := wire.Marshal(st)
			if err := mqttc.Wait(r.agent.Publish(wire.StatusTopic("a1"), 1, true, b), 5*time.Second); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "agent stored", func() bool {
				ags, _ := r.st.ListAgents(context.Background())
				return len(ags) == 1 && ags[0].State == wire.StateOnline && len(ags[0].Cameras) == 1
			})
			off := &wire.Status{AgentID: "a1", State: wire.StateOffline, TS: st.TS.Add(-time.Minute)}
			b, _ = wire.Marshal(off)
			if err := mqttc.Wait(r.agent.Publish(wire.StatusTopic("a1"), 1, true, b), 5*time.Second); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "agent offline", func() bool {
				ags, _ := r.st.ListAgents(context.Background())
				return len(ags) == 1 && ags[0].State == wire.StateOffline
			})
		})
	}
}

func TestOnStoredSeesFirstStoresOnly(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	r := startWith(t, true, func(_ context.Context, alerts []*wire.Alert) {
		mu.Lock()
		defer mu.Unlock()
		for _, a := range alerts {
			seen = append(seen, a.AlertID)
		}
	})
	a, b := newAlert("a1"), newAlert("a1")
	ab, _ := wire.Marshal(a)
	bb, _ := wire.Marshal(b)
	r.publish(t, wire.AlertsTopic("a1"), ab)
	r.publish(t, wire.AlertsTopic("a1"), ab) // a redelivery
	r.publish(t, wire.AlertsTopic("a1"), bb)
	waitFor(t, "hook called", func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) >= 2 })
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[0] != a.AlertID || seen[1] != b.AlertID {
		t.Fatalf("hook saw %v", seen)
	}
}

// A clip sent in parts is stored whole once its last part is in, through
// the broker's sink and through a subscription; a part with a bad first
// chunk is rejected with a reason.
func TestClipInParts(t *testing.T) {
	for _, viaSink := range []bool{false, true} {
		t.Run(map[bool]string{false: "subscribed", true: "broker-sink"}[viaSink], func(t *testing.T) {
			r := start(t, viaSink)
			alert := wire.NewULID(time.Now())
			clip := make([]byte, wire.MaxClipBytes+4096)
			for i := range clip {
				clip[i] = byte(i)
			}
			copy(clip[4:], "ftyp")
			parts, err := wire.SplitClip(clip)
			if err != nil || len(parts) != 2 {
				t.Fatalf("%d parts: %v", len(parts), err)
			}
			for i := len(parts) - 1; i >= 0; i-- { // last part first: order does not matter
				r.publish(t, wire.ClipPartTopic("a1", alert, i, len(parts)), parts[i])
			}
			waitFor(t, "the joined clip", func() bool {
				ev, err := r.st.GetEvidence(context.Background(), alert, wire.EvidenceClip)
				return err == nil && bytes.Equal(ev.Data, clip)
			})
			r.publish(t, wire.ClipPartTopic("a1", wire.NewULID(time.Now()), 0, 2), []byte("not the start of an MP4"))
			waitFor(t, "the bad part rejected", func() bool {
				return testutil.ToFloat64(r.in.m.rejected.WithLabelValues(wire.KindEvidence, string(wire.ReasonInvalid))) == 1
			})
		})
	}
}
