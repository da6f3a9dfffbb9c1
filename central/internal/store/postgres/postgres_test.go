package postgres

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/xueliang/xl/central/internal/store"
	"github.com/xueliang/xl/central/internal/store/storetest"
	"github.com/xueliang/xl/internal/pgtest"
	"github.com/xueliang/xl/internal/wire"
)

// testStore is a Store with the contract suite's test hooks.
type testStore struct {
	*Store
	dsn string
}

func (s testStore) TamperAudit(ctx context.Context, seq uint64) error {
	tag, err := s.pool.Exec(ctx, `UPDATE audit SET actor = actor || ' (edited)' WHERE seq = $1`, int64(seq))
	if err != nil {
		return err
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("tamper with audit seq %d: %d rows", seq, tag.RowsAffected())
	}
	return nil
}

func (s testStore) Reopen(t *testing.T) storetest.Store { return openAt(t, s.dsn) }

func openAt(tb testing.TB, dsn string, opts ...Option) testStore {
	tb.Helper()
	s, err := Open(context.Background(), dsn, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Error(err)
		}
	})
	return testStore{Store: s, dsn: dsn}
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store { return openAt(t, pgtest.Schema(t)) })
}

func alerts(n int) []*wire.Alert {
	t0 := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	out := make([]*wire.Alert, n)
	for i := range out {
		at := t0.Add(time.Duration(i) * time.Millisecond)
		out[i] = &wire.Alert{Schema: wire.SchemaAlert, AlertID: wire.NewULID(at), EventID: "e", Phase: wire.PhaseStart,
			AgentID: "a1", CameraID: "c1", Type: "intrusion", Severity: 2, StartedAt: at, DetectedAt: at}
	}
	return out
}

// Replicas starting together on an empty schema migrate it once.
func TestReplicasMigrateOnce(t *testing.T) {
	dsn := pgtest.Schema(t)
	var wg sync.WaitGroup
	stores := make([]testStore, 4)
	for i := range stores {
		wg.Go(func() { stores[i] = openAt(t, dsn) })
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	var versions []string
	rows, err := stores[0].pool.Query(context.Background(), `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		versions = append(versions, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"0001_alerts", "0002_dispatch", "0003_egress", "0004_users", "0005_evidence_parts"}; !slices.Equal(versions, want) {
		t.Fatalf("migrations %v, want %v", versions, want)
	}
}

// Replicas asking for waiting alerts at the same time get different ones,
// together all of them, each once.
func TestReplicasClaimDifferentAlerts(t *testing.T) {
	dsn := pgtest.Schema(t)
	ctx := context.Background()
	replicas := []testStore{openAt(t, dsn), openAt(t, dsn), openAt(t, dsn)}
	all := alerts(1000)
	if _, err := replicas[0].InsertAlerts(ctx, all, time.Now()); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	handed := map[string]int{}
	var wg sync.WaitGroup
	for _, s := range replicas {
		wg.Go(func() {
			for {
				got, err := s.UndispatchedAlerts(ctx, 37)
				if err != nil {
					t.Error(err)
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, a := range got {
					handed[a.AlertID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(handed) != len(all) {
		t.Fatalf("%d of %d alerts handed out", len(handed), len(all))
	}
	for id, n := range handed {
		if n != 1 {
			t.Fatalf("alert %s handed out %d times", id, n)
		}
	}
}

// Alerts claimed by a replica that dies (it neither marks them nor closes)
// are handed out again when the claim lapses, not before.
func TestLapsedClaimIsTakenAgain(t *testing.T) {
	dsn := pgtest.Schema(t)
	ctx := context.Background()
	dead := openAt(t, dsn)
	other := openAt(t, dsn)
	all := alerts(3)
	if _, err := other.InsertAlerts(ctx, all, time.Now()); err != nil {
		t.Fatal(err)
	}
	if got, err := dead.UndispatchedAlerts(ctx, 10); err != nil || len(got) != 3 {
		t.Fatalf("claimed %d (%v)", len(got), err)
	}
	if got, err := other.UndispatchedAlerts(ctx, 10); err != nil || len(got) != 0 {
		t.Fatalf("alerts claimed by another replica handed out: %d (%v)", len(got), err)
	}
	// A replica with a short lease takes them, and its claim lapses too.
	short := openAt(t, dsn, WithClaimLease(20*time.Millisecond))
	if _, err := short.pool.Exec(ctx, `UPDATE dispatch_queue SET claimed_until = now() - interval '1 second'`); err != nil {
		t.Fatal(err) // as if the dead replica's lease ran out
	}
	if got, err := short.UndispatchedAlerts(ctx, 10); err != nil || len(got) != 3 {
		t.Fatalf("lapsed claims not taken again: %d (%v)", len(got), err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := other.UndispatchedAlerts(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the 20 ms claim did not lapse in 10 s: %d alerts", len(got))
		}
		time.Sleep(5 * time.Millisecond)
	}
	mustMark(t, other.Store, ids(all))
	if got, err := dead.UndispatchedAlerts(ctx, 10); err != nil || len(got) != 0 {
		t.Fatalf("dispatched alerts handed out: %d (%v)", len(got), err)
	}
}

func ids(alerts []*wire.Alert) []string {
	out := make([]string, len(alerts))
	for i, a := range alerts {
		out[i] = a.AlertID
	}
	return out
}

func mustMark(t *testing.T, s *Store, ids []string) {
	t.Helper()
	if err := s.InTx(context.Background(), func(tx store.Tx) error { return tx.MarkDispatched(ids) }); err != nil {
		t.Fatal(err)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := Open(ctx, "postgres://nobody@127.0.0.1:1/none?connect_timeout=2"); err == nil {
		t.Fatal("no server, no error")
	}
	if _, err := Open(ctx, "postgres://%zz"); err == nil {
		t.Fatal("bad DSN, no error")
	}
	dsn := pgtest.Schema(t) // skips without a server
	_, err := Open(ctx, pgtest.WithSearchPath(t, dsn, "no_such_schema"))
	if err == nil {
		t.Fatal("search_path of a schema that does not exist: no error")
	}
}

// A write sent with a later statement still fails its transaction, and the
// error says which write it was.
func TestDeferredWriteErrorNamesTheWrite(t *testing.T) {
	s := openAt(t, pgtest.Schema(t))
	err := s.InTx(context.Background(), func(tx store.Tx) error {
		if err := tx.LinkAlert("no-such-incident", "a1", time.Now()); err != nil {
			return err // queued, not sent yet
		}
		_, err := tx.IncidentsOfAlerts([]string{"a1"})
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "earlier link alert") || !strings.Contains(err.Error(), "incident_alerts_incident_id_fkey") {
		t.Fatalf("error %v, want the failed link named", err)
	}
	if ids, err := s.IncidentAlertIDs(context.Background(), "no-such-incident", 0); err != nil || len(ids) != 0 {
		t.Fatalf("rolled back: %v %v", ids, err)
	}
}

// Dispatcher transactions queued behind a long one wait in the process,
// not on the server's lock with a connection each, which would leave none
// to intake.
func TestQueuedTransactionsLeaveConnectionsToIntake(t *testing.T) {
	dsn := pgtest.Schema(t)
	s := openAt(t, dsn+"&pool_max_conns=2")
	ctx := context.Background()
	entered, release := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		err := s.InTx(ctx, func(tx store.Tx) error {
			if _, err := tx.IncidentsOfAlerts([]string{"x"}); err != nil { // holds the lock from here
				return err
			}
			close(entered)
			<-release
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	})
	<-entered
	for range 4 {
		wg.Go(func() {
			if err := s.InTx(ctx, func(tx store.Tx) error { return nil }); err != nil {
				t.Error(err)
			}
		})
	}
	// No session of this schema may wait for its lock. (Without the queue
	// one does within milliseconds; this looks for half a second, on a
	// connection of its own: the pool may have none left.)
	watch, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close(ctx)
	waiting := 0
	for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end) && waiting == 0; time.Sleep(10 * time.Millisecond) {
		err := watch.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
			AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1`,
			uint32(uint64(s.txLock)>>32), uint32(s.txLock)).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
	}
	ictx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	_, err = s.InsertAlerts(ictx, alerts(1), time.Now())
	close(release)
	wg.Wait()
	if waiting != 0 || err != nil {
		t.Fatalf("%d sessions waiting for the lock with a connection; intake: %v", waiting, err)
	}
}
