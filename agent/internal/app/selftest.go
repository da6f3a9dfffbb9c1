package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xueliang/xl/agent/internal/outbox"
	"github.com/xueliang/xl/agent/internal/publish"
	"github.com/xueliang/xl/internal/version"
	"github.com/xueliang/xl/internal/wire"
)

// SelfTest sends count synthetic alerts of type "selftest" (severity 4,
// zone "selftest") through the agent's real outbox and broker connection,
// spread over cameras camera IDs, batch alerts per outbox transaction
// (one fsync each), one batch every interval, then waits until the
// outbox is empty. It prints "PUT <n> <alert_id> <camera_id>" once each
// alert is on disk and "DRAINED" at the end. With count 0 it only drains
// what an earlier run left. Operators use it to check the path to central;
// the fault tests use it to raise alerts on demand.
//
// clockOffset is a test hook for an edge box whose clock is wrong: every
// timestamp the self-test stamps (the alert ID's time, started_at,
// detected_at, published_at) is time.Now()+clockOffset. Go reads the clock
// through the vDSO, so faking the system clock for one process (libfaketime)
// does not work; this offsets exactly what a skewed box would send.
//
// snapshotBytes > 0 gives every alert a synthetic snapshot of that size
// (JPEG-marked filler, one alert and its snapshot per transaction), so that
// the outbox holds evidence it can shed when its disk fills.
func SelfTest(ctx context.Context, cfg *Config, count, cameras, batch int, interval, clockOffset time.Duration, snapshotBytes int, out io.Writer, log *slog.Logger) error {
	if cameras < 1 {
		cameras = 1
	}
	if batch < 1 {
		batch = 1
	}
	var snapshot []byte
	var snapshotSum string
	if snapshotBytes > 0 {
		if snapshotBytes < 4 || snapshotBytes > wire.EvidenceSnapshot.MaxBytes() {
			return fmt.Errorf("selftest: --snapshot-bytes must be within 4–%d", wire.EvidenceSnapshot.MaxBytes())
		}
		snapshot = make([]byte, snapshotBytes)
		copy(snapshot, []byte{0xFF, 0xD8, 0xFF, 0xE0})
		sum := sha256.Sum256(snapshot)
		snapshotSum = hex.EncodeToString(sum[:])
		batch = 1
	}
	reg := prometheus.NewRegistry()
	ob, err := outbox.Open(cfg.Outbox.Path, outbox.Limits{MaxBytes: cfg.Outbox.MaxBytes, MaxAge: cfg.Outbox.MaxAge}, reg, log)
	if err != nil {
		return err
	}
	defer ob.Close()
	status := func() wire.Status { return wire.Status{Version: version.Version, ConfigVersion: cfg.Version} }
	pub, err := publish.New(cfg.Agent.ID, cfg.MQTT, ob, cfg.Publish.StatusInterval, status, nil, reg, log)
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { pub.Run(runCtx) })
	defer func() {
		stop()
		wg.Wait()
		pub.Close()
	}()
	for i := 0; i < count; i += batch {
		var alerts []*wire.Alert
		for j := i; j < min(i+batch, count); j++ {
			now := time.Now().Add(clockOffset)
			a := &wire.Alert{
				AlertID: wire.NewULID(now), EventID: fmt.Sprintf("selftest-%06d", j), Phase: wire.PhaseStart,
				AgentID: cfg.Agent.ID, CameraID: fmt.Sprintf("selftest-%d", j%cameras), Type: "selftest", Severity: 4,
				Zone: "selftest", StartedAt: now, DetectedAt: now, ConfigVersion: cfg.Version,
			}
			if clockOffset != 0 {
				a.PublishedAt = now // else the publisher stamps its (correct) clock
			}
			alerts = append(alerts, a)
		}
		if snapshot != nil {
			alerts[0].Evidence.SnapshotSHA256 = snapshotSum
			if err := pub.Publish(alerts[0], snapshot, nil); err != nil {
				return err
			}
		} else if err := pub.PublishAll(alerts); err != nil {
			return err
		}
		for k, a := range alerts {
			fmt.Fprintf(out, "PUT %d %s %s\n", i+k, a.AlertID, a.CameraID)
		}
		if interval > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(interval):
			}
		}
	}
	for {
		if n, _ := ob.Stats(); n == 0 {
			fmt.Fprintln(out, "DRAINED")
			return nil
		}
		select {
		case <-ctx.Done():
			n, _ := ob.Stats()
			return fmt.Errorf("stopped with %d messages still in the outbox (they are sent on the next start)", n)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
