package publish

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
