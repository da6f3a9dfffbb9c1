package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/xueliang/xl/central/internal/audit"
	"github.com/xueliang/xl/central/internal/order"
	"github.com/xueliang/xl/central/internal/store"
	"github.com/xueliang/xl/internal/wire"
)

// InTx runs fn in one transaction: committed when fn returns nil, rolled
// back otherwise. It first takes the schema's transaction lock (an advisory
// lock held until commit or rollback), so the dispatcher's transactions of
// every replica run one after the other, as SQLite's writers do: the audit
// chain stays linear (each append reads the head another replica just
// wrote), an alert's incident is looked up and created without a race, and
// an optimistic version check fails only on a really stale version.
//
// Within one process, transactions queue before taking a connection, so
// those waiting for the lock do not hold the connections intake needs.
// InTx must not be called from inside fn.
func (s *Store) InTx(ctx context.Context, fn func(store.Tx) error) error {
	select {
	case s.txTurn <- struct{}{}:
		defer func() { <-s.txTurn }()
	case <-ctx.Done():
		return fmt.Errorf("postgres: begin: %w", ctx.Err())
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: begin: %w", err)
	}
	defer tx.Rollback(ctx)
	// The lock goes to the server with the transaction's first statement,
	// and is taken before it runs.
	t := &dtx{ctx: ctx, q: tx, tx: tx, pending: &pgx.Batch{}}
	_ = t.write("transaction lock", `SELECT pg_advisory_xact_lock($1)`, s.txLock) // queued: fails with the first statement
	if err := fn(t); err != nil {
		return err
	}
	if err := t.flush(); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: commit: %w", err)
	}
	return nil
}

// UndispatchedAlerts claims and returns up to limit alerts not yet put into
// incidents, in the order they arrived. Replicas calling it together get
// different alerts (SKIP LOCKED, then a claim for the lease); an alert
// claimed but not marked dispatched is handed out again when the claim
// lapses or its Store closes.
func (s *Store) UndispatchedAlerts(ctx context.Context, limit int) ([]*wire.Alert, error) {
	rows, err := s.pool.Query(ctx, `WITH free AS (
			SELECT seq FROM dispatch_queue
			WHERE claimed_until IS NULL OR claimed_until < now()
			ORDER BY seq LIMIT $1
			FOR UPDATE SKIP LOCKED
		), claimed AS (
			UPDATE dispatch_queue q SET claimed_until = now() + make_interval(secs => $2), claimed_by = $3
			FROM free WHERE q.seq = free.seq
			RETURNING q.seq, q.alert_id
		)
		SELECT a.payload FROM claimed c JOIN alerts a ON a.alert_id = c.alert_id ORDER BY c.seq`,
		limit, s.lease.Seconds(), s.claimer)
	if err != nil {
		return nil, fmt.Errorf("postgres: undispatched alerts: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*wire.Alert, error) {
		var payload string
		if err := r.Scan(&payload); err != nil {
			return nil, err
		}
		a := new(wire.Alert)
		if err := json.Unmarshal([]byte(payload), a); err != nil {
			return nil, fmt.Errorf("postgres: stored alert is unreadable: %w", err)
		}
		return a, nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: undispatched alerts: %w", err)
	}
	return out, nil
}

// MarkDispatched records that the dispatcher is done with these alerts.
func (t *dtx) MarkDispatched(alertIDs []string) error {
	return t.write("mark dispatched", `DELETE FROM dispatch_queue WHERE alert_id = ANY($1)`, alertIDs)
}

// querier is a transaction or the pool.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// dtx implements store.Tx; reads outside a transaction use it over the pool.
//
// Inside InTx, statements whose only result is an error (inserts of
// incidents, orders, alert links and audit entries, dispatched marks) are
// not sent at once: they wait in pending and go to the server in one round
// trip (a pipeline) with the next statement that returns something, or
// before the commit. Reads still see them, and their errors still fail the
// transaction, reported by that later call. A dispatched alert then costs
// three round trips instead of six.
type dtx struct {
	ctx     context.Context
	q       querier
	tx      pgx.Tx     // nil outside InTx
	pending *pgx.Batch // nil outside InTx
	// chain is the audit chain after this transaction's last append: no
	// other transaction appends while InTx holds its lock.
	chain *audit.Chain
}

// write runs sql now, or inside InTx with the next statement.
func (t *dtx) write(what, sql string, args ...any) error {
	if t.pending == nil {
		if _, err := t.q.Exec(t.ctx, sql, args...); err != nil {
			return fmt.Errorf("postgres: %s: %w", what, err)
		}
		return nil
	}
	t.pending.Queue(sql, args...).Fn = func(br pgx.BatchResults) error {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("earlier %s in this transaction: %w", what, err)
		}
		return nil
	}
	return nil
}

// send runs the waiting writes and then q in one round trip.
func (t *dtx) send(q *pgx.QueuedQuery) error {
	b := t.pending
	t.pending = &pgx.Batch{}
	if q != nil {
		b.QueuedQueries = append(b.QueuedQueries, q)
	}
	if b.Len() == 0 {
		return nil
	}
	return t.tx.SendBatch(t.ctx, b).Close()
}

// flush runs the waiting writes.
func (t *dtx) flush() error {
	if t.pending == nil {
		return nil
	}
	if err := t.send(nil); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return nil
}

// query runs sql after the waiting writes and hands its rows to fn, which
// reads them all. fn must not fail for a missing row: a failing batch
// drops pgx's prepared statements.
func (t *dtx) query(sql string, args []any, fn func(pgx.Rows) error) error {
	if t.pending == nil || t.pending.Len() == 0 {
		rows, err := t.q.Query(t.ctx, sql, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		if err := fn(rows); err != nil {
			return err
		}
		return rows.Err()
	}
	q := &pgx.QueuedQuery{SQL: sql, Arguments: args}
	q.Query(fn)
	return t.send(q)
}

// exec runs sql after the waiting writes and returns its command tag.
func (t *dtx) exec(sql string, args ...any) (pgconn.CommandTag, error) {
	if t.pending == nil || t.pending.Len() == 0 {
		return t.q.Exec(t.ctx, sql, args...)
	}
	var tag pgconn.CommandTag
	q := &pgx.QueuedQuery{SQL: sql, Arguments: args}
	q.Exec(func(ct pgconn.CommandTag) error { tag = ct; return nil })
	return tag, t.send(q)
}

// collect reads every row with scan.
func collect[T any](t *dtx, sql string, args []any, scan pgx.RowToFunc[T]) ([]T, error) {
	var out []T
	err := t.query(sql, args, func(rows pgx.Rows) error {
		var err error
		out, err = pgx.CollectRows(rows, scan)
		return err
	})
	return out, err
}

func nanos(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	n := t.UnixNano()
	return &n
}

func fromNanos(n *int64) time.Time {
	if n == nil {
		return time.Time{}
	}
	return time.Unix(0, *n).UTC()
}

const incidentColumns = `id, camera_id, type, zone, grid, state, severity, first_alert_at, last_alert_at, alert_count,
	recurrence_of, rule, sla_profile, why, created_at, updated_at, version`

func scanIncident(r pgx.CollectableRow) (store.Incident, error) {
	var inc store.Incident
	var state, why string
	var rec *string
	var first, last, created, updated int64
	if err := r.Scan(&inc.ID, &inc.CameraID, &inc.Type, &inc.Zone, &inc.Grid, &state, &inc.Severity, &first, &last, &inc.AlertCount,
		&rec, &inc.Rule, &inc.SLAProfile, &why, &created, &updated, &inc.Version); err != nil {
		return inc, err
	}
	inc.State = order.IncidentState(state)
	if rec != nil {
		inc.RecurrenceOf = *rec
	}
	inc.FirstAlertAt, inc.LastAlertAt = time.Unix(0, first).UTC(), time.Unix(0, last).UTC()
	inc.CreatedAt, inc.UpdatedAt = time.Unix(0, created).UTC(), time.Unix(0, updated).UTC()
	if err := json.Unmarshal([]byte(why), &inc.Why); err != nil {
		return inc, fmt.Errorf("postgres: incident %s: why: %w", inc.ID, err)
	}
	return inc, nil
}

func (t *dtx) incident(q string, args ...any) (store.Incident, bool, error) {
	list, err := collect(t, `SELECT `+incidentColumns+` FROM incidents `+q+` LIMIT 1`, args, scanIncident)
	if err != nil {
		return store.Incident{}, false, fmt.Errorf("postgres: incident: %w", err)
	}
	if len(list) == 0 {
		return store.Incident{}, false, nil
	}
	return list[0], true, nil
}

func (t *dtx) IncidentsOfAlerts(alertIDs []string) (map[string]string, error) {
	out := map[string]string{}
	err := t.query(`SELECT alert_id, incident_id FROM incident_alerts WHERE alert_id = ANY($1)`, []any{alertIDs}, func(rows pgx.Rows) error {
		for rows.Next() {
			var a, inc string
			if err := rows.Scan(&a, &inc); err != nil {
				return err
			}
			out[a] = inc
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: incidents of alerts: %w", err)
	}
	return out, nil
}

func (t *dtx) LatestIncident(cameraID, typ, zone string) (store.Incident, bool, error) {
	return t.incident(`WHERE camera_id = $1 AND type = $2 AND zone = $3 ORDER BY created_at DESC, id DESC`, cameraID, typ, zone)
}

func (t *dtx) LastClosedIncident(cameraID, typ, zone string) (store.Incident, bool, error) {
	return t.incident(`WHERE camera_id = $1 AND type = $2 AND zone = $3 AND state IN ('closed', 'false_alarm', 'cancelled')
		ORDER BY created_at DESC, id DESC`, cameraID, typ, zone)
}

func (t *dtx) GetIncident(id string) (store.Incident, error) {
	inc, ok, err := t.incident(`WHERE id = $1`, id)
	if err == nil && !ok {
		err = store.ErrNotFound
	}
	return inc, err
}

func whyJSON(why []string) string {
	if why == nil {
		why = []string{}
	}
	b, _ := json.Marshal(why) // a []string always marshals
	return string(b)
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (t *dtx) InsertIncident(inc store.Incident) error {
	return t.write("insert incident", `INSERT INTO incidents (`+incidentColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`,
		inc.ID, inc.CameraID, inc.Type, inc.Zone, inc.Grid, string(inc.State), inc.Severity, inc.FirstAlertAt.UnixNano(), inc.LastAlertAt.UnixNano(),
		inc.AlertCount, nullString(inc.RecurrenceOf), inc.Rule, inc.SLAProfile, whyJSON(inc.Why), inc.CreatedAt.UnixNano(), inc.UpdatedAt.UnixNano(), inc.Version)
}

func (t *dtx) UpdateIncident(inc store.Incident, prevVersion int64) error {
	tag, err := t.exec(`UPDATE incidents SET grid = $1, state = $2, severity = $3, first_alert_at = $4, last_alert_at = $5,
		alert_count = $6, rule = $7, sla_profile = $8, why = $9, updated_at = $10, version = $11 WHERE id = $12 AND version = $13`,
		inc.Grid, string(inc.State), inc.Severity, inc.FirstAlertAt.UnixNano(), inc.LastAlertAt.UnixNano(), inc.AlertCount,
		inc.Rule, inc.SLAProfile, whyJSON(inc.Why), inc.UpdatedAt.UnixNano(), inc.Version, inc.ID, prevVersion)
	return affectedOne(tag, err, "update incident")
}

func affectedOne(tag pgconn.CommandTag, err error, what string) error {
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", what, err)
	}
	if tag.RowsAffected() != 1 {
		return store.ErrConflict
	}
	return nil
}

func (t *dtx) LinkAlert(incidentID, alertID string, detectedAt time.Time) error {
	return t.write("link alert", `INSERT INTO incident_alerts (alert_id, incident_id, detected_at) VALUES ($1, $2, $3)`,
		alertID, incidentID, detectedAt.UnixNano())
}

const orderColumns = `data, sla_profile, auto_dispatch_at, next_timer_at`

func scanOrder(r pgx.CollectableRow) (store.OrderRecord, error) {
	var rec store.OrderRecord
	var data string
	var auto, next *int64
	if err := r.Scan(&data, &rec.SLAProfile, &auto, &next); err != nil {
		return rec, err
	}
	if err := json.Unmarshal([]byte(data), &rec.Order); err != nil {
		return rec, fmt.Errorf("postgres: stored order is unreadable: %w", err)
	}
	rec.AutoDispatchAt, rec.NextTimerAt = fromNanos(auto), fromNanos(next)
	return rec, nil
}

func (t *dtx) orders(q string, args ...any) ([]store.OrderRecord, error) {
	out, err := collect(t, `SELECT `+orderColumns+` FROM orders `+q, args, scanOrder)
	if err != nil {
		return nil, fmt.Errorf("postgres: orders: %w", err)
	}
	return out, nil
}

func (t *dtx) GetOrder(id string) (store.OrderRecord, error) {
	list, err := collect(t, `SELECT `+orderColumns+` FROM orders WHERE id = $1`, []any{id}, scanOrder)
	if err != nil {
		return store.OrderRecord{}, fmt.Errorf("postgres: get order: %w", err)
	}
	if len(list) == 0 {
		return store.OrderRecord{}, store.ErrNotFound
	}
	return list[0], nil
}

func (t *dtx) OrdersOf(incidentID string) ([]store.OrderRecord, error) {
	return t.orders(`WHERE incident_id = $1 ORDER BY role = 'support', id`, incidentID)
}

func (t *dtx) InsertOrder(rec store.OrderRecord) error {
	o := rec.Order
	data, err := json.Marshal(o)
	if err != nil {
		return err
	}
	return t.write("insert order", `INSERT INTO orders (id, incident_id, agency_id, role, state, version, data, sla_profile, auto_dispatch_at, next_timer_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`, o.ID, o.IncidentID, o.AgencyID, string(o.Role), string(o.State), o.Version, string(data),
		rec.SLAProfile, nanos(rec.AutoDispatchAt), nanos(rec.NextTimerAt))
}

func (t *dtx) UpdateOrder(rec store.OrderRecord, prevVersion int64, claimTimer time.Time) error {
	o := rec.Order
	data, err := json.Marshal(o)
	if err != nil {
		return err
	}
	q := `UPDATE orders SET state = $1, version = $2, data = $3, sla_profile = $4, auto_dispatch_at = $5, next_timer_at = $6
		WHERE id = $7 AND version = $8`
	args := []any{string(o.State), o.Version, string(data), rec.SLAProfile, nanos(rec.AutoDispatchAt), nanos(rec.NextTimerAt), o.ID, prevVersion}
	if !claimTimer.IsZero() {
		q += ` AND next_timer_at <= $9`
		args = append(args, claimTimer.UnixNano())
	}
	tag, err := t.exec(q, args...)
	return affectedOne(tag, err, "update order")
}

const auditColumns = `seq, at, actor, entity, entity_id, action, before, after, prev_hash, hash`

func scanAudit(r pgx.CollectableRow) (audit.Entry, error) {
	var e audit.Entry
	var at int64
	var before, after *string
	if err := r.Scan(&e.Seq, &at, &e.Actor, &e.Entity, &e.EntityID, &e.Action, &before, &after, &e.PrevHash, &e.Hash); err != nil {
		return e, err
	}
	e.At = time.Unix(0, at).UTC()
	if before != nil {
		e.Before = json.RawMessage(*before)
	}
	if after != nil {
		e.After = json.RawMessage(*after)
	}
	return e, nil
}

func rawOrNull(b json.RawMessage) *string {
	if b == nil {
		return nil
	}
	s := string(b)
	return &s
}

// AppendAudit seals e after the chain's head. InTx holds the transaction
// lock, so no other replica appends between the read of the head and the
// insert, and the head is read once per transaction.
func (t *dtx) AppendAudit(e audit.Entry) (audit.Entry, error) {
	if t.chain == nil {
		last, err := collect(t, `SELECT `+auditColumns+` FROM audit ORDER BY seq DESC LIMIT 1`, nil, scanAudit)
		if err != nil {
			return e, fmt.Errorf("postgres: audit head: %w", err)
		}
		chain := audit.NewChain(nil)
		if len(last) == 1 {
			if chain, err = audit.Resume(last[0], nil); err != nil {
				return e, err
			}
		}
		t.chain = chain
	}
	sealed, err := t.chain.Append(e)
	if err != nil {
		return e, err
	}
	err = t.write("append audit", `INSERT INTO audit (`+auditColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		int64(sealed.Seq), sealed.At.UnixNano(), sealed.Actor, sealed.Entity, sealed.EntityID, sealed.Action,
		rawOrNull(sealed.Before), rawOrNull(sealed.After), sealed.PrevHash, sealed.Hash)
	if err != nil {
		return e, err
	}
	return sealed, nil
}

// AuditEntries yields the audit log in order of seq; a read error ends the
// sequence and is reported by the returned function.
func (s *Store) AuditEntries(ctx context.Context) (iter.Seq[audit.Entry], func() error) {
	var ferr error
	seq := func(yield func(audit.Entry) bool) {
		rows, err := s.pool.Query(ctx, `SELECT `+auditColumns+` FROM audit ORDER BY seq`)
		if err != nil {
			ferr = fmt.Errorf("postgres: audit: %w", err)
			return
		}
		defer rows.Close()
		for rows.Next() {
			e, err := scanAudit(rows)
			if err != nil {
				ferr = fmt.Errorf("postgres: audit: %w", err)
				return
			}
			if !yield(e) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			ferr = fmt.Errorf("postgres: audit: %w", err)
		}
	}
	return seq, func() error { return ferr }
}

// AuditOf is the audit log of one entity, oldest first.
func (s *Store) AuditOf(ctx context.Context, entity, id string) ([]audit.Entry, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+auditColumns+` FROM audit WHERE entity = $1 AND entity_id = $2 ORDER BY seq`, entity, id)
	if err != nil {
		return nil, fmt.Errorf("postgres: audit: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanAudit)
	if err != nil {
		return nil, fmt.Errorf("postgres: audit: %w", err)
	}
	return out, nil
}

// ListIncidents returns incidents, the most recent alert first.
func (s *Store) ListIncidents(ctx context.Context, f store.IncidentFilter) ([]store.Incident, error) {
	q := `SELECT ` + incidentColumns + ` FROM incidents WHERE true`
	var args []any
	if f.CameraID != "" {
		args = append(args, f.CameraID)
		q += ` AND camera_id = $` + strconv.Itoa(len(args))
	}
	if f.State != "" {
		args = append(args, f.State)
		q += ` AND state = $` + strconv.Itoa(len(args))
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	args = append(args, limit)
	q += ` ORDER BY last_alert_at DESC, id DESC LIMIT $` + strconv.Itoa(len(args))
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: list incidents: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanIncident)
	if err != nil {
		return nil, fmt.Errorf("postgres: list incidents: %w", err)
	}
	return out, nil
}

// GetIncident returns one incident.
func (s *Store) GetIncident(ctx context.Context, id string) (store.Incident, error) {
	return (&dtx{ctx: ctx, q: s.pool}).GetIncident(id)
}

// IncidentAlertIDs lists the alerts of an incident in order of detection.
func (s *Store) IncidentAlertIDs(ctx context.Context, id string, limit int) ([]string, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := s.pool.Query(ctx, `SELECT alert_id FROM incident_alerts WHERE incident_id = $1 ORDER BY detected_at, alert_id LIMIT $2`, id, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: incident alerts: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("postgres: incident alerts: %w", err)
	}
	return out, nil
}

// IncidentAlerts returns the stored alerts of an incident, oldest first.
func (s *Store) IncidentAlerts(ctx context.Context, id string, limit int) ([]store.AlertRecord, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := s.pool.Query(ctx, `SELECT `+alertColumns+` FROM incident_alerts ia JOIN alerts a ON a.alert_id = ia.alert_id
		WHERE ia.incident_id = $1 ORDER BY ia.detected_at, a.seq LIMIT $2`, id, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: incident alerts: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanAlert)
	if err != nil {
		return nil, fmt.Errorf("postgres: incident alerts: %w", err)
	}
	return out, nil
}

// OrdersOf returns an incident's orders, lead first.
func (s *Store) OrdersOf(ctx context.Context, incidentID string) ([]store.OrderRecord, error) {
	return (&dtx{ctx: ctx, q: s.pool}).OrdersOf(incidentID)
}

// GetOrder returns one order.
func (s *Store) GetOrder(ctx context.Context, id string) (store.OrderRecord, error) {
	return (&dtx{ctx: ctx, q: s.pool}).GetOrder(id)
}

// ListOrders returns orders, newest first, of one agency when agencyID is
// not empty.
func (s *Store) ListOrders(ctx context.Context, agencyID string, limit int) ([]store.OrderRecord, error) {
	if limit <= 0 {
		limit = 100
	}
	t := &dtx{ctx: ctx, q: s.pool}
	if agencyID == "" {
		return t.orders(`ORDER BY id DESC LIMIT $1`, limit)
	}
	return t.orders(`WHERE agency_id = $1 ORDER BY id DESC LIMIT $2`, agencyID, limit)
}

// DueTimers lists the orders whose timer is due at now, earliest first.
// Several replicas may list the same order: the timer is claimed in the
// transaction that fires it (UpdateOrder with claimTimer), and InTx runs
// those one at a time, so it fires once.
func (s *Store) DueTimers(ctx context.Context, now time.Time, limit int) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT id FROM orders WHERE next_timer_at IS NOT NULL AND next_timer_at <= $1
		ORDER BY next_timer_at, id LIMIT $2`, now.UnixNano(), limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: due timers: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("postgres: due timers: %w", err)
	}
	return out, nil
}

// NextTimer is the earliest order timer; ok is false when none is set.
func (s *Store) NextTimer(ctx context.Context) (time.Time, bool, error) {
	var n *int64
	if err := s.pool.QueryRow(ctx, `SELECT min(next_timer_at) FROM orders WHERE next_timer_at IS NOT NULL`).Scan(&n); err != nil {
		return time.Time{}, false, fmt.Errorf("postgres: next timer: %w", err)
	}
	return fromNanos(n), n != nil, nil
}

// VerifyAudit verifies the whole audit chain. It returns the number of
// entries and the head hash, or the first break (a *audit.VerifyError, which
// matches audit.ErrTampered).
func (s *Store) VerifyAudit(ctx context.Context) (n uint64, head string, err error) {
	entries, readErr := s.AuditEntries(ctx)
	head = audit.Genesis
	counted := func(yield func(audit.Entry) bool) {
		for e := range entries {
			n, head = n+1, e.Hash
			if !yield(e) {
				return
			}
		}
	}
	err = audit.Verify(counted)
	if rerr := readErr(); rerr != nil {
		return n, head, rerr
	}
	return n, head, err
}

// EnqueueEgress stores messages for agencies, due at once.
func (t *dtx) EnqueueEgress(msgs ...store.Egress) error {
	for _, m := range msgs {
		created := m.CreatedAt
		if created.IsZero() {
			created = time.Now()
		}
		if err := t.write("enqueue egress", `INSERT INTO egress (channel, target, agency_id, order_id, event, payload, created_at, state, next_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $7)`,
			m.Channel, m.Target, m.AgencyID, m.OrderID, m.Event, string(m.Payload), created.UnixNano()); err != nil {
			return err
		}
	}
	return nil
}

const egressColumns = `id, channel, target, agency_id, order_id, event, payload, created_at, state, attempts, next_at, last_error, delivered_at`

func scanEgress(r pgx.CollectableRow) (store.Egress, error) {
	var e store.Egress
	var payload string
	var created int64
	var next, delivered *int64
	if err := r.Scan(&e.ID, &e.Channel, &e.Target, &e.AgencyID, &e.OrderID, &e.Event, &payload, &created, &e.State,
		&e.Attempts, &next, &e.LastError, &delivered); err != nil {
		return e, err
	}
	e.Payload = []byte(payload)
	e.CreatedAt = time.Unix(0, created).UTC()
	e.NextAt, e.DeliveredAt = fromNanos(next), fromNanos(delivered)
	return e, nil
}

func (s *Store) egress(ctx context.Context, q string, args ...any) ([]store.Egress, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+egressColumns+` FROM egress `+q, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: egress: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanEgress)
	if err != nil {
		return nil, fmt.Errorf("postgres: egress: %w", err)
	}
	return out, nil
}

// DueEgress returns up to limit pending messages due at now, in the order
// they were queued. A message waits while an earlier one to the same
// target waits for its retry, so each target gets its messages in order.
func (s *Store) DueEgress(ctx context.Context, now time.Time, limit int) ([]store.Egress, error) {
	return s.egress(ctx, `WHERE next_at IS NOT NULL AND next_at <= $1 AND NOT EXISTS (
		SELECT 1 FROM egress e2 WHERE e2.channel = egress.channel AND e2.target = egress.target
			AND e2.next_at IS NOT NULL AND e2.id < egress.id AND e2.next_at > $1)
		ORDER BY id LIMIT $2`, now.UnixNano(), limit)
}

// NextEgress is when the earliest pending message is due.
func (s *Store) NextEgress(ctx context.Context) (time.Time, bool, error) {
	var n *int64
	if err := s.pool.QueryRow(ctx, `SELECT min(next_at) FROM egress WHERE next_at IS NOT NULL`).Scan(&n); err != nil {
		return time.Time{}, false, fmt.Errorf("postgres: next egress: %w", err)
	}
	return fromNanos(n), n != nil, nil
}

// UpdateEgress records an attempt as the caller set it. Only a pending
// message changes (ErrConflict otherwise), so two replicas cannot both
// record one.
func (s *Store) UpdateEgress(ctx context.Context, e store.Egress) error {
	var next *int64
	if e.State == store.EgressPending {
		n := e.NextAt.UnixNano()
		next = &n
	}
	tag, err := s.pool.Exec(ctx, `UPDATE egress SET state = $1, attempts = $2, next_at = $3, last_error = $4, delivered_at = $5
		WHERE id = $6 AND state = 'pending'`, e.State, e.Attempts, next, e.LastError, nanos(e.DeliveredAt), e.ID)
	return affectedOne(tag, err, "update egress")
}

// RetryEgress makes a dead message pending again, due at now.
func (s *Store) RetryEgress(ctx context.Context, id int64, now time.Time) error {
	tag, err := s.pool.Exec(ctx, `UPDATE egress SET state = 'pending', next_at = $1 WHERE id = $2 AND state = 'dead'`, now.UnixNano(), id)
	return affectedOne(tag, err, "retry egress")
}

// ListEgress lists messages, newest first.
func (s *Store) ListEgress(ctx context.Context, f store.EgressFilter) ([]store.Egress, error) {
	q, args := `WHERE true`, []any{}
	if f.State != "" {
		args = append(args, f.State)
		q += ` AND state = $` + strconv.Itoa(len(args))
	}
	if f.OrderID != "" {
		args = append(args, f.OrderID)
		q += ` AND order_id = $` + strconv.Itoa(len(args))
	}
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 100
	}
	args = append(args, f.Limit)
	return s.egress(ctx, q+` ORDER BY id DESC LIMIT $`+strconv.Itoa(len(args)), args...)
}
