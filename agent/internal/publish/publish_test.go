package publish

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/xueliang/xl/agent/internal/outbox"
	"github.com/xueliang/xl/internal/mqttc"
	"github.com/xueliang/xl/internal/wire"
)

// Publish puts an alert, its snapshot and the snapshot's clean copy in the
// outbox in one go: the clean copy as the snapshot of its own ULID, which
// the alert names; a clean copy the alert does not name is refused.
func TestPublishWritesTheCleanSnapshotUnderItsOwnID(t *testing.T) {
	reg := prometheus.NewRegistry()
	log := slog.New(slog.DiscardHandler)
	ob, err := outbox.Open(filepath.Join(t.TempDir(), "ob.db"), outbox.Limits{MaxBytes: 1 << 20, MaxAge: time.Hour}, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	p, err := New("box-1", mqttc.Default(), ob, time.Minute, func() wire.Status { return wire.Status{} }, nil, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	now := time.Now()
	jpeg := []byte{0xFF, 0xD8, 0xFF, 0xE0, 1}
	clean := []byte{0xFF, 0xD8, 0xFF, 0xE0, 2}
	a := &wire.Alert{AlertID: wire.NewULID(now), EventID: "e1", Phase: wire.PhaseStart, AgentID: "box-1", CameraID: "cam-1",
		Type: wire.TypeIntrusion, Severity: 3, StartedAt: now, DetectedAt: now,
		Evidence: wire.Evidence{CleanSnapshotID: wire.NewULID(now)}}
	if err := p.Publish(a, jpeg, clean); err != nil {
		t.Fatal(err)
	}
	var topics []string
	for range 2 { // the alert lane, then the snapshot lane
		msgs, err := ob.Pending(context.Background(), 10, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			topics = append(topics, m.Topic)
		}
		if err := ob.Ack(msgs...); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{
		wire.AlertsTopic("box-1"),
		wire.EvidenceTopic("box-1", a.AlertID, wire.EvidenceSnapshot),
		wire.EvidenceTopic("box-1", a.Evidence.CleanSnapshotID, wire.EvidenceSnapshot),
	}
	if strings.Join(topics, " ") != strings.Join(want, " ") {
		t.Fatalf("topics\n %v\nwant\n %v", topics, want)
	}
	b := *a
	b.AlertID, b.Evidence.CleanSnapshotID = wire.NewULID(now), ""
	if err := p.Publish(&b, jpeg, clean); err == nil {
		t.Fatal("a clean snapshot without an ID was accepted")
	}
}

// A clip larger than one message leaves the outbox in parts, on the part
// topics, and is deleted only once the broker acknowledged every part; the
// parts join into the clip. Against the Mosquitto on 127.0.0.1:1883.
func TestLargeClipTravelsInParts(t *testing.T) {
	reg := prometheus.NewRegistry()
	log := slog.New(slog.DiscardHandler)
	ob, err := outbox.Open(filepath.Join(t.TempDir(), "ob.db"), outbox.Limits{MaxBytes: 1 << 30, MaxAge: time.Hour}, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	agent := "parts-" + strings.ToLower(wire.NewULID(time.Now())[16:])
	cfg := mqttc.Default()
	cfg.ClientID = agent
	sub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(cfg.URL).SetClientID(agent + "-sub"))
	if tok := sub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("Mosquitto on %s: %v", cfg.URL, tok.Error())
		}
		t.Skipf("no MQTT broker on %s: %v", cfg.URL, tok.Error())
	}
	defer sub.Disconnect(100)
	var mu sync.Mutex
	got := map[string][]byte{}
	if tok := sub.Subscribe(wire.Root+"/agents/"+agent+"/evidence/#", 1, func(_ mqtt.Client, m mqtt.Message) {
		mu.Lock()
		got[m.Topic()] = append([]byte(nil), m.Payload()...)
		mu.Unlock()
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	clip := make([]byte, 2*wire.MaxClipBytes+1000)
	for i := range clip {
		clip[i] = byte(i * 7)
	}
	copy(clip[4:], "ftyp")
	alert := wire.NewULID(time.Now())
	if err := ob.Put(outbox.Message{Lane: outbox.LaneClip, CameraID: "cam-1", Topic: wire.EvidenceTopic(agent, alert, wire.EvidenceClip),
		Payload: clip, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	p, err := New(agent, cfg, ob, time.Minute, func() wire.Status { return wire.Status{AgentID: agent} }, nil, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done; p.Close() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, _ := ob.Stats()
		mu.Lock()
		parts := len(got)
		mu.Unlock()
		if n == 0 && parts == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s: %d messages in the outbox, %d parts received", n, parts)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var joined []byte
	for i := range 3 {
		part, ok := got[wire.ClipPartTopic(agent, alert, i, 3)]
		if !ok {
			t.Fatalf("no part %d; got %d topics", i, len(got))
		}
		joined = append(joined, part...)
	}
	if !bytes.Equal(joined, clip) {
		t.Fatal("the parts do not join into the clip")
	}
	if _, ok := got[wire.EvidenceTopic(agent, alert, wire.EvidenceClip)]; ok {
		t.Fatal("the whole clip was published as one message too")
	}
}
