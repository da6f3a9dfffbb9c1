// Package postgres is central's store on PostgreSQL, for production and for
// several central replicas sharing one database. It has the method set of
// the SQLite store (the contract suite in storetest runs against both),
// talks to the server through a pgx connection pool and migrates the schema
// from SQL embedded in the binary.
//
// Replicas: the dispatcher's transactions (InTx) are serialised across every
// replica by an advisory lock, as SQLite serialises its writers, which keeps
// the audit chain linear and incident grouping free of races; intake's
// inserts and every read run without it.
package postgres

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/xueliang/xl/central/internal/store"
	"github.com/xueliang/xl/internal/wire"
)

//go:embed migrations/*.sql
var migrations embed.FS

// DefaultClaimLease is how long alerts handed out by UndispatchedAlerts stay
// claimed by the replica that took them, unless it marks them dispatched or
// closes first.
const DefaultClaimLease = 30 * time.Second

// Store is a PostgreSQL database (one schema of it).
type Store struct {
	pool    *pgxpool.Pool
	schema  string
	txLock  int64         // advisory lock of InTx, per schema
	txTurn  chan struct{} // one InTx of this process at a time
	lease   time.Duration
	claimer string // this Store's name on the alerts it claims

	closeOnce sync.Once
	closeErr  error
}

// Option changes how Open sets up a Store.
type Option func(*Store)

// WithClaimLease sets how long alerts handed out by UndispatchedAlerts stay
// claimed (DefaultClaimLease when not given).
func WithClaimLease(d time.Duration) Option {
	return func(s *Store) {
		if d > 0 {
			s.lease = d
		}
	}
}

// Open connects to the database at dsn (a postgres:// URL or key=value
// string; pgxpool's pool_max_conns and friends apply) and migrates it. The
// tables live in the connection's current schema: add search_path=NAME to
// the DSN to use a schema other than public.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: dsn: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	s := &Store{pool: pool, lease: DefaultClaimLease, txTurn: make(chan struct{}, 1)}
	for _, o := range opts {
		o(s)
	}
	var schema *string
	if err := pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect %s@%s/%s: %w", cfg.ConnConfig.User, cfg.ConnConfig.Host, cfg.ConnConfig.Database, err)
	}
	if schema == nil {
		pool.Close()
		return nil, errors.New("postgres: no current schema: the search_path names no schema that exists")
	}
	s.schema = *schema
	s.txLock = lockKey("tx", s.schema)
	var b [8]byte
	_, _ = rand.Read(b[:])
	s.claimer = hex.EncodeToString(b[:])
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// lockKey is the advisory lock for purpose in schema: replicas sharing a
// schema share the lock; deployments in other schemas of the same database
// do not wait for each other.
func lockKey(purpose, schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("xl-central/" + purpose + "/" + schema))
	return int64(h.Sum64())
}

// migrate applies the embedded migrations that are missing, in one
// transaction, under an advisory lock: replicas starting together apply
// each once, the others wait and find them applied.
func (s *Store) migrate(ctx context.Context) error {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	slices.Sort(names)
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey("migrate", s.schema)); err != nil {
		return fmt.Errorf("postgres: migrate: lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("postgres: migrations table: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	applied, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	for _, name := range names {
		version := strings.TrimSuffix(path.Base(name), ".sql")
		if slices.Contains(applied, version) {
			continue
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		// The simple protocol runs a file of several statements.
		if _, err := tx.Conn().PgConn().Exec(ctx, string(body)).ReadAll(); err != nil {
			return fmt.Errorf("postgres: migrate %s: %w", version, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, version); err != nil {
			return fmt.Errorf("postgres: migrate %s: %w", version, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: migrate: commit: %w", err)
	}
	return nil
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// Close hands back the alerts this Store claimed and has not dispatched, so
// another replica takes them at once, and closes the pool. Calling it again
// does nothing.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := s.pool.Exec(ctx, `UPDATE dispatch_queue SET claimed_until = NULL, claimed_by = NULL WHERE claimed_by = $1`, s.claimer); err != nil {
			s.closeErr = fmt.Errorf("postgres: release claimed alerts (they are taken again after %s): %w", s.lease, err)
		}
		s.pool.Close()
	})
	return s.closeErr
}

// InsertAlert stores a once; inserted is false when an alert with the same
// alert_id was stored before (a redelivery).
func (s *Store) InsertAlert(ctx context.Context, a *wire.Alert, receivedAt time.Time) (inserted bool, err error) {
	ins, err := s.InsertAlerts(ctx, []*wire.Alert{a}, receivedAt)
	if err != nil {
		return false, err
	}
	return ins[0], nil
}

// insertAlerts inserts a batch in one statement (one round trip, one
// implicit transaction), in the order given so seq follows arrival, and
// queues the new ones for the dispatcher in the same statement.
const insertAlerts = `WITH input AS (
	SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int2[], $8::text[],
		$9::int8[], $10::int8[], $11::text[]) WITH ORDINALITY
		AS t(alert_id, event_id, phase, agent_id, camera_id, type, severity, zone, started_at, detected_at, payload, ord)
), ins AS (
	INSERT INTO alerts (alert_id, event_id, phase, agent_id, camera_id, type, severity, zone, started_at, detected_at, received_at, payload)
	SELECT alert_id, event_id, phase, agent_id, camera_id, type, severity, zone, started_at, detected_at, $12, payload
	FROM input ORDER BY ord
	ON CONFLICT (alert_id) DO NOTHING
	RETURNING seq, alert_id
), queued AS (
	INSERT INTO dispatch_queue (seq, alert_id) SELECT seq, alert_id FROM ins
)
SELECT alert_id FROM ins`

// InsertAlerts stores alerts in one transaction; inserted[i] is false for
// an alert stored before (or earlier in the same batch).
func (s *Store) InsertAlerts(ctx context.Context, alerts []*wire.Alert, receivedAt time.Time) (inserted []bool, err error) {
	inserted = make([]bool, len(alerts))
	if len(alerts) == 0 {
		return inserted, nil
	}
	n := len(alerts)
	ids, events, phases, agents, cameras, types, zones, payloads :=
		make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	sev, started, detected := make([]int16, n), make([]int64, n), make([]int64, n)
	for i, a := range alerts {
		p, err := wire.Marshal(a)
		if err != nil {
			return nil, err
		}
		if a.Severity < -1<<15 || a.Severity >= 1<<15 {
			return nil, fmt.Errorf("postgres: alert %s: severity %d out of range", a.AlertID, a.Severity)
		}
		ids[i], events[i], phases[i], agents[i], cameras[i], types[i], zones[i], payloads[i] =
			a.AlertID, a.EventID, string(a.Phase), a.AgentID, a.CameraID, a.Type, a.Zone, string(p)
		sev[i], started[i], detected[i] = int16(a.Severity), a.StartedAt.UnixNano(), a.DetectedAt.UnixNano()
	}
	var fresh []string
	// Two replicas inserting the same redelivered alerts in different
	// orders can deadlock on the unique index; the server aborts one
	// statement, which is then simply run again.
	for attempt := 0; ; attempt++ {
		rows, err := s.pool.Query(ctx, insertAlerts, ids, events, phases, agents, cameras, types, sev, zones, started, detected, payloads, receivedAt.UnixNano())
		if err == nil {
			fresh, err = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		if err == nil {
			break
		}
		if attempt < 3 && retryable(err) {
			continue
		}
		return nil, fmt.Errorf("postgres: insert %d alerts: %w", n, err)
	}
	isNew := make(map[string]bool, len(fresh))
	for _, id := range fresh {
		isNew[id] = true
	}
	for i, id := range ids {
		inserted[i] = isNew[id]
		delete(isNew, id) // a repeat later in the batch is a duplicate
	}
	return inserted, nil
}

// retryable reports a deadlock or serialisation failure: the statement was
// rolled back and may run again.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}

// PutEvidence stores evidence once per (alert, kind); inserted is false for a
// redelivery.
func (s *Store) PutEvidence(ctx context.Context, ev store.Evidence) (inserted bool, err error) {
	tag, err := s.pool.Exec(ctx, `INSERT INTO evidence (alert_id, kind, sha256, size, data, received_at)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (alert_id, kind) DO NOTHING`,
		ev.AlertID, string(ev.Kind), ev.SHA256, len(ev.Data), ev.Data, ev.ReceivedAt.UnixNano())
	if err != nil {
		return false, fmt.Errorf("postgres: insert evidence %s/%s: %w", ev.AlertID, ev.Kind, err)
	}
	return tag.RowsAffected() == 1, nil
}

// PutEvidencePart stores one part of evidence sent in parts. With the last
// part, in the same transaction, the parts are joined, stored as the
// evidence (once per alert and kind) and deleted; stored reports that.
// A part repeated, or arriving after its evidence was stored, changes
// nothing. Parts of one clip arriving at two replicas at once are
// serialised by a transaction-scoped advisory lock on the alert.
func (s *Store) PutEvidencePart(ctx context.Context, p store.EvidencePart) (stored bool, err error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("postgres: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, "xl-evidence-parts/"+p.AlertID); err != nil {
		return false, fmt.Errorf("postgres: evidence part lock: %w", err)
	}
	var have int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM evidence WHERE alert_id = $1 AND kind = $2`, p.AlertID, string(p.Kind)).Scan(&have); err != nil {
		return false, fmt.Errorf("postgres: evidence part: %w", err)
	}
	if have > 0 {
		return false, nil
	}
	if _, err := tx.Exec(ctx, `INSERT INTO evidence_parts (alert_id, kind, idx, parts, data, received_at) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT DO NOTHING`, p.AlertID, string(p.Kind), p.Index, p.Parts, p.Data, p.ReceivedAt.UnixNano()); err != nil {
		return false, fmt.Errorf("postgres: evidence part: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT data FROM evidence_parts WHERE alert_id = $1 AND kind = $2 AND parts = $3 ORDER BY idx`,
		p.AlertID, string(p.Kind), p.Parts)
	if err != nil {
		return false, fmt.Errorf("postgres: evidence parts: %w", err)
	}
	chunks, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return false, fmt.Errorf("postgres: evidence parts: %w", err)
	}
	if len(chunks) == p.Parts {
		data := bytes.Join(chunks, nil)
		sum := sha256.Sum256(data)
		if _, err := tx.Exec(ctx, `INSERT INTO evidence (alert_id, kind, sha256, size, data, received_at)
			VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (alert_id, kind) DO NOTHING`,
			p.AlertID, string(p.Kind), hex.EncodeToString(sum[:]), len(data), data, p.ReceivedAt.UnixNano()); err != nil {
			return false, fmt.Errorf("postgres: evidence from parts: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM evidence_parts WHERE alert_id = $1 AND kind = $2`, p.AlertID, string(p.Kind)); err != nil {
			return false, fmt.Errorf("postgres: evidence parts: %w", err)
		}
		stored = true
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("postgres: commit evidence part: %w", err)
	}
	return stored, nil
}

// PutAgentStatus records an agent's status. The last status to arrive
// wins: one agent's statuses travel in order on one topic, and its last
// will ("offline") carries the time it connected, which is older than the
// statuses it sent since.
func (s *Store) PutAgentStatus(ctx context.Context, st *wire.Status, seen time.Time) error {
	return s.PutAgentStatuses(ctx, []store.AgentStatus{{Status: st, Seen: seen}})
}

// putAgentStatuses upserts a batch of agents in one statement (one round
// trip, one implicit transaction).
const putAgentStatuses = `INSERT INTO agents (agent_id, state, version, config_version, cameras, status_at, last_seen)
	SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::int8[])
	ON CONFLICT (agent_id) DO UPDATE SET
		state = excluded.state, version = excluded.version, config_version = excluded.config_version,
		cameras = excluded.cameras, status_at = excluded.status_at, last_seen = excluded.last_seen`

// PutAgentStatuses records agents' statuses in one statement, each as
// PutAgentStatus does: a later status of the same agent, in the slice or
// in a later call, wins whatever its timestamp.
func (s *Store) PutAgentStatuses(ctx context.Context, sts []store.AgentStatus) error {
	// One row per agent (an upsert may not touch a row twice): the last
	// of each agent's statuses. Rows go in agent order, so that replicas
	// writing overlapping batches lock them in the same order.
	last := make(map[string]int, len(sts))
	for i, a := range sts {
		last[a.Status.AgentID] = i
	}
	if len(last) == 0 {
		return nil
	}
	agents := make([]string, 0, len(last))
	for id := range last {
		agents = append(agents, id)
	}
	slices.Sort(agents)
	n := len(agents)
	states, versions, configs, cams := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	statusAt, seen := make([]int64, n), make([]int64, n)
	for k, id := range agents {
		a := sts[last[id]]
		c, err := json.Marshal(a.Status.Cameras)
		if err != nil {
			return err
		}
		states[k], versions[k], configs[k], cams[k] = string(a.Status.State), a.Status.Version, a.Status.ConfigVersion, string(c)
		statusAt[k], seen[k] = a.Status.TS.UnixNano(), a.Seen.UnixNano()
	}
	for attempt := 0; ; attempt++ {
		_, err := s.pool.Exec(ctx, putAgentStatuses, agents, states, versions, configs, cams, statusAt, seen)
		if err == nil {
			return nil
		}
		if attempt < 3 && retryable(err) {
			continue
		}
		return fmt.Errorf("postgres: %d agent statuses: %w", n, err)
	}
}

// MarkAllOffline records every agent as offline without touching its status
// time, so the next status an agent sends wins.
func (s *Store) MarkAllOffline(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, `UPDATE agents SET state = 'offline' WHERE state <> 'offline'`); err != nil {
		return fmt.Errorf("postgres: mark agents offline: %w", err)
	}
	return nil
}

const alertColumns = `a.seq, a.payload, a.received_at`

// ListAlerts returns alerts newest first (by detection time, then arrival).
func (s *Store) ListAlerts(ctx context.Context, f store.AlertFilter) ([]store.AlertRecord, error) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if f.CameraID != "" {
		where = append(where, "a.camera_id = "+arg(f.CameraID))
	}
	if f.AgentID != "" {
		where = append(where, "a.agent_id = "+arg(f.AgentID))
	}
	if f.Type != "" {
		where = append(where, "a.type = "+arg(f.Type))
	}
	if !f.Since.IsZero() {
		where = append(where, "a.detected_at >= "+arg(f.Since.UnixNano()))
	}
	if c := f.Before; c != nil {
		// A row comparison: one index range on (detected_at DESC, seq DESC).
		where = append(where, "(a.detected_at, a.seq) < ("+arg(c.DetectedAt.UnixNano())+"::bigint, "+arg(c.Seq)+"::bigint)")
	}
	q := `SELECT ` + alertColumns + ` FROM alerts a`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	q += " ORDER BY a.detected_at DESC, a.seq DESC LIMIT " + arg(limit)
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: list alerts: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanAlert)
	if err != nil {
		return nil, fmt.Errorf("postgres: list alerts: %w", err)
	}
	if err := s.attachEvidence(ctx, out); err != nil {
		return nil, err
	}
	return out, nil
}

func (s *Store) attachEvidence(ctx context.Context, recs []store.AlertRecord) error {
	if len(recs) == 0 {
		return nil
	}
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = r.Alert.AlertID
	}
	rows, err := s.pool.Query(ctx, `SELECT alert_id, kind, sha256, size, received_at FROM evidence WHERE alert_id = ANY($1) ORDER BY kind`, ids)
	if err != nil {
		return fmt.Errorf("postgres: evidence: %w", err)
	}
	defer rows.Close()
	byID := map[string][]store.EvidenceMeta{}
	for rows.Next() {
		var m store.EvidenceMeta
		var kind string
		var at int64
		if err := rows.Scan(&m.AlertID, &kind, &m.SHA256, &m.Size, &at); err != nil {
			return fmt.Errorf("postgres: evidence: %w", err)
		}
		m.Kind, m.ReceivedAt = wire.EvidenceKind(kind), time.Unix(0, at).UTC()
		byID[m.AlertID] = append(byID[m.AlertID], m)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres: evidence: %w", err)
	}
	for i := range recs {
		recs[i].Evidence = byID[recs[i].Alert.AlertID]
	}
	return nil
}

func scanAlert(r pgx.CollectableRow) (store.AlertRecord, error) {
	var rec store.AlertRecord
	var payload string
	var received int64
	if err := r.Scan(&rec.Seq, &payload, &received); err != nil {
		return rec, err
	}
	if err := json.Unmarshal([]byte(payload), &rec.Alert); err != nil {
		return rec, fmt.Errorf("postgres: stored alert %d is unreadable: %w", rec.Seq, err)
	}
	rec.ReceivedAt = time.Unix(0, received).UTC()
	return rec, nil
}

// GetAlert returns one alert with its evidence metadata.
func (s *Store) GetAlert(ctx context.Context, alertID string) (store.AlertRecord, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+alertColumns+` FROM alerts a WHERE a.alert_id = $1`, alertID)
	if err != nil {
		return store.AlertRecord{}, fmt.Errorf("postgres: get alert: %w", err)
	}
	rec, err := pgx.CollectExactlyOneRow(rows, scanAlert)
	if errors.Is(err, pgx.ErrNoRows) {
		return rec, store.ErrNotFound
	}
	if err != nil {
		return rec, fmt.Errorf("postgres: get alert: %w", err)
	}
	recs := []store.AlertRecord{rec}
	if err := s.attachEvidence(ctx, recs); err != nil {
		return rec, err
	}
	return recs[0], nil
}

// GetEvidence returns the evidence of one kind for an alert.
func (s *Store) GetEvidence(ctx context.Context, alertID string, kind wire.EvidenceKind) (store.Evidence, error) {
	var ev store.Evidence
	var at int64
	err := s.pool.QueryRow(ctx, `SELECT sha256, size, data, received_at FROM evidence WHERE alert_id = $1 AND kind = $2`, alertID, string(kind)).
		Scan(&ev.SHA256, &ev.Size, &ev.Data, &at)
	if errors.Is(err, pgx.ErrNoRows) {
		return ev, store.ErrNotFound
	}
	if err != nil {
		return ev, fmt.Errorf("postgres: get evidence: %w", err)
	}
	ev.AlertID, ev.Kind, ev.ReceivedAt = alertID, kind, time.Unix(0, at).UTC()
	return ev, nil
}

// ListAgents returns every agent's last status, by ID.
func (s *Store) ListAgents(ctx context.Context) ([]store.AgentRecord, error) {
	rows, err := s.pool.Query(ctx, `SELECT agent_id, state, version, config_version, cameras, status_at, last_seen FROM agents ORDER BY agent_id`)
	if err != nil {
		return nil, fmt.Errorf("postgres: list agents: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.AgentRecord, error) {
		var r store.AgentRecord
		var state, cams string
		var statusAt, seen int64
		if err := row.Scan(&r.AgentID, &state, &r.Version, &r.ConfigVersion, &cams, &statusAt, &seen); err != nil {
			return r, err
		}
		r.State = wire.AgentState(state)
		_ = json.Unmarshal([]byte(cams), &r.Cameras) // written by PutAgentStatus; a bad value lists no cameras
		r.StatusAt, r.LastSeen = time.Unix(0, statusAt).UTC(), time.Unix(0, seen).UTC()
		return r, nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: list agents: %w", err)
	}
	return out, nil
}

// Stats counts incidents, orders, active orders' cards, agents and egress
// messages by state, one grouped query each.
func (s *Store) Stats(ctx context.Context) (store.Stats, error) {
	return store.CollectStats(func(q string, add func(key string, n int)) error {
		rows, err := s.pool.Query(ctx, q)
		if err != nil {
			return fmt.Errorf("postgres: stats: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var k string
			var n int
			if err := rows.Scan(&k, &n); err != nil {
				return fmt.Errorf("postgres: stats: %w", err)
			}
			add(k, n)
		}
		return rows.Err()
	}, `COALESCE(data::jsonb ->> 'card', 'none')`)
}
