package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xueliang/xl/central/internal/store/storetest"
	"github.com/xueliang/xl/internal/wire"
)

// testStore is a Store with the contract suite's test hooks.
type testStore struct {
	*Store
	path string
}

func (s testStore) TamperAudit(ctx context.Context, seq uint64) error {
	return tamper(ctx, s.db, seq)
}

func tamper(ctx context.Context, db *sql.DB, seq uint64) error {
	res, err := db.ExecContext(ctx, `UPDATE audit SET actor = actor || ' (edited)' WHERE seq = ?`, seq)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("tamper with audit seq %d: %d rows (%v)", seq, n, err)
	}
	return nil
}

func (s testStore) Reopen(t *testing.T) storetest.Store { return openAt(t, s.path) }

func openAt(tb testing.TB, path string) testStore {
	tb.Helper()
	s, err := Open(context.Background(), path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return testStore{Store: s, path: path}
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store {
		return openAt(t, filepath.Join(t.TempDir(), "central.db"))
	})
}

func TestOpenCreatesTheDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "sub", "central.db")
	s := openAt(t, path)
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
}

// Alerts stored before the dispatch queue existed (migration 0003) count as
// dispatched; the ones stored after wait for the dispatcher.
func TestQueueMigrationMarksOldAlertsDispatched(t *testing.T) {
	path := filepath.Join(t.TempDir(), "central.db")
	ctx := context.Background()
	s := openAt(t, path)
	old := &wire.Alert{Schema: wire.SchemaAlert, AlertID: wire.NewULID(time.Now()), EventID: "e", Phase: wire.PhaseStart,
		AgentID: "a1", CameraID: "c1", Type: "intrusion", Severity: 2, DetectedAt: time.Now(), StartedAt: time.Now()}
	if _, err := s.InsertAlert(ctx, old, time.Now()); err != nil {
		t.Fatal(err)
	}
	// Undo 0003 as a database of the release before would be.
	for _, q := range []string{`DROP INDEX alerts_undispatched`, `ALTER TABLE alerts DROP COLUMN dispatched`,
		`DELETE FROM schema_migrations WHERE version = '0003_dispatch_queue'`} {
		if _, err := s.db.ExecContext(ctx, q); err != nil {
			t.Fatal(q, err)
		}
	}
	s.Close()
	s = openAt(t, path)
	if got, err := s.UndispatchedAlerts(ctx, 10); err != nil || len(got) != 0 {
		t.Fatalf("old alerts queued: %d %v", len(got), err)
	}
	fresh := *old
	fresh.AlertID = wire.NewULID(time.Now())
	if _, err := s.InsertAlert(ctx, &fresh, time.Now()); err != nil {
		t.Fatal(err)
	}
	if got, err := s.UndispatchedAlerts(ctx, 10); err != nil || len(got) != 1 || got[0].AlertID != fresh.AlertID {
		t.Fatalf("new alert not queued: %v %v", got, err)
	}
}
