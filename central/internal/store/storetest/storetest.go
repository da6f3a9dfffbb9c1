// Package storetest is the contract of central's stores: one suite of tests
// that every implementation (sqlite, postgres) runs, covering what intake,
// the dispatcher, the API and the commands rely on, and one set of
// benchmarks of the same shape for each.
//
// An implementation's test package calls Run with a function that opens a
// fresh, empty store wrapped with the test hooks of Store.
package storetest

import (
	"context"
	"iter"
	"testing"
	"time"

	"github.com/xueliang/xl/central/internal/audit"
	"github.com/xueliang/xl/central/internal/dispatch"
	"github.com/xueliang/xl/central/internal/egress"
	"github.com/xueliang/xl/central/internal/intake"
	"github.com/xueliang/xl/central/internal/store"
	"github.com/xueliang/xl/central/internal/web"
	"github.com/xueliang/xl/internal/wire"
)

// Central is the method set of a central store: what intake, the
// dispatcher, the API and central's wiring and commands call.
type Central interface {
	intake.Store
	dispatch.Store
	web.Reader
	web.Incidents
	web.Egress
	egress.Store
	Users

	Ping(ctx context.Context) error
	Close() error
	InsertAlert(ctx context.Context, a *wire.Alert, receivedAt time.Time) (bool, error)
	MarkAllOffline(ctx context.Context) error
	PutAgentStatus(ctx context.Context, st *wire.Status, seen time.Time) error
	PutAgentStatuses(ctx context.Context, sts []store.AgentStatus) error
	GetOrder(ctx context.Context, id string) (store.OrderRecord, error)
	IncidentAlertIDs(ctx context.Context, id string, limit int) ([]string, error)
	AuditOf(ctx context.Context, entity, id string) ([]audit.Entry, error)
	AuditEntries(ctx context.Context) (iter.Seq[audit.Entry], func() error)
	VerifyAudit(ctx context.Context) (n uint64, head string, err error)
	Stats(ctx context.Context) (store.Stats, error)
}

// Store is a Central under test, with hooks only a test has.
type Store interface {
	Central
	// TamperAudit edits the stored audit entry seq (its actor) behind the
	// store's back, as someone with write access to the database could.
	TamperAudit(ctx context.Context, seq uint64) error
	// Reopen opens another Store on the same database, as a second replica
	// or a restart does, and closes it when the test ends.
	Reopen(t *testing.T) Store
}

// Run runs the contract suite; open returns a new, empty store and closes
// it when the test ends. Subtests run in parallel, each on its own store.
func Run(t *testing.T, open func(t *testing.T) Store) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, func(*testing.T) Store)
	}{
		{"InsertIsIdempotent", testInsertIsIdempotent},
		{"BatchInsertReportsDuplicates", testBatchInsertReportsDuplicates},
		{"AlertRoundTripKeepsEveryField", testAlertRoundTrip},
		{"EvidenceJoinsEitherOrder", testEvidenceJoinsEitherOrder},
		{"ListFiltersAndOrder", testListFiltersAndOrder},
		{"PagingVisitsEveryAlertOnce", testPaging},
		{"AgentStatusLastArrivalWins", testAgentStatus},
		{"AgentStatusesInOneBatch", testAgentStatuses},
		{"ReopenKeepsData", testReopenKeepsData},
		{"IncidentsCRUDAndConflicts", testIncidents},
		{"IncidentAlerts", testIncidentAlerts},
		{"OrdersCRUDAndConflicts", testOrders},
		{"TxRollsBack", testTxRollsBack},
		{"TimersDueAndClaimedOnce", testTimers},
		{"TimerFiresOnceAcrossReplicas", testTimerAcrossReplicas},
		{"AuditChainVerifiesAndFindsTampering", testAudit},
		{"AuditChainStaysLinearAcrossReplicas", testAuditAcrossReplicas},
		{"DispatchQueue", testDispatchQueue},
		{"ReplicasDispatchEachAlertOnce", testReplicasDispatch},
		{"EgressInOrderPerTarget", testEgress},
		{"EvidenceJoinedFromParts", testEvidenceParts},
		{"UsersSessionsTokensPhotos", testUsers},
		{"StatsCountByState", testStats},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open)
		})
	}
}

// t0 has nanoseconds, which every store must keep.
var t0 = time.Date(2026, 11, 21, 12, 0, 0, 123456789, time.UTC)

func newAlert(agent, camera, typ string, detected time.Time) *wire.Alert {
	return &wire.Alert{
		Schema: wire.SchemaAlert, AlertID: wire.NewULID(detected), EventID: "e-" + camera, Phase: wire.PhaseStart,
		AgentID: agent, CameraID: camera, Type: typ, Severity: 2, Zone: "bank",
		StartedAt: detected.Add(-time.Second), DetectedAt: detected,
		Objects: []wire.Object{{Class: "person", Score: 0.8, BBox: [4]float64{0.1, 0.2, 0.1, 0.3}, TrackID: 3, DwellS: 4}},
	}
}

func ids(alerts []*wire.Alert) []string {
	out := make([]string, len(alerts))
	for i, a := range alerts {
		out[i] = a.AlertID
	}
	return out
}

func recIDs(recs []store.AlertRecord) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.Alert.AlertID
	}
	return out
}
