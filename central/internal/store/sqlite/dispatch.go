package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"strings"
	"time"

	"github.com/xueliang/xl/central/internal/audit"
	"github.com/xueliang/xl/central/internal/order"
	"github.com/xueliang/xl/central/internal/store"
	"github.com/xueliang/xl/internal/wire"
)

// InTx runs fn in one write transaction: committed when fn returns nil,
// rolled back otherwise. SQLite serialises write transactions, which keeps
// the audit chain linear.
func (s *Store) InTx(ctx context.Context, fn func(store.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	defer tx.Rollback()
	q := &stmtCache{tx: tx, stmts: make(map[string]*sql.Stmt)}
	defer q.close()
	if err := fn(&dtx{ctx: ctx, q: q}); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit: %w", err)
	}
	return nil
}

// UndispatchedAlerts returns up to limit alerts not yet put into incidents,
// in the order they arrived.
func (s *Store) UndispatchedAlerts(ctx context.Context, limit int) ([]*wire.Alert, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT payload FROM alerts WHERE dispatched = 0 ORDER BY seq LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: undispatched alerts: %w", err)
	}
	defer rows.Close()
	var out []*wire.Alert
	for rows.Next() {
		var payload string
		if err := rows.Scan(&payload); err != nil {
			return nil, err
		}
		a := new(wire.Alert)
		if err := json.Unmarshal([]byte(payload), a); err != nil {
			return nil, fmt.Errorf("sqlite: stored alert is unreadable: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// MarkDispatched records that the dispatcher is done with these alerts.
func (t *dtx) MarkDispatched(alertIDs []string) error {
	for len(alertIDs) > 0 {
		chunk := alertIDs[:min(inChunk, len(alertIDs))]
		alertIDs = alertIDs[len(chunk):]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		if _, err := t.q.ExecContext(t.ctx, `UPDATE alerts SET dispatched = 1 WHERE dispatched = 0 AND alert_id IN (`+placeholders(len(chunk))+`)`, args...); err != nil {
			return fmt.Errorf("sqlite: mark dispatched: %w", err)
		}
	}
	return nil
}

type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// dtx implements store.Tx; reads outside a transaction use it over the
// database itself.
type dtx struct {
	ctx context.Context
	q   querier
	// head is the audit chain's last entry once this transaction has
	// read or written it: a batch appends many entries and reads the head
	// once.
	head    audit.Entry
	hasHead bool
}

// stmtCache prepares each statement once per transaction. A dispatch batch
// runs the same few statements for hundreds of alerts; preparing them
// every time cost more than running them.
type stmtCache struct {
	tx    *sql.Tx
	stmts map[string]*sql.Stmt
}

func (c *stmtCache) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := c.stmts[query]; ok {
		return st, nil
	}
	st, err := c.tx.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.stmts[query] = st
	return st, nil
}

func (c *stmtCache) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

func (c *stmtCache) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// QueryRowContext returns the preparation error through the row, as
// database/sql does for an unprepared query.
func (c *stmtCache) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := c.stmt(ctx, query)
	if err != nil {
		return c.tx.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

func (c *stmtCache) close() {
	for _, st := range c.stmts {
		st.Close()
	}
}

func nanos(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

func fromNanos(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(0, n.Int64).UTC()
}

const incidentColumns = `id, camera_id, type, zone, grid, state, severity, first_alert_at, last_alert_at, alert_count,
	recurrence_of, rule, sla_profile, why, created_at, updated_at, version`

func scanIncident(r scanner) (store.Incident, error) {
	var inc store.Incident
	var state, why string
	var rec sql.NullString
	var first, last, created, updated int64
	if err := r.Scan(&inc.ID, &inc.CameraID, &inc.Type, &inc.Zone, &inc.Grid, &state, &inc.Severity, &first, &last, &inc.AlertCount,
		&rec, &inc.Rule, &inc.SLAProfile, &why, &created, &updated, &inc.Version); err != nil {
		return inc, err
	}
	inc.State = order.IncidentState(state)
	inc.RecurrenceOf = rec.String
	inc.FirstAlertAt, inc.LastAlertAt = time.Unix(0, first).UTC(), time.Unix(0, last).UTC()
	inc.CreatedAt, inc.UpdatedAt = time.Unix(0, created).UTC(), time.Unix(0, updated).UTC()
	if err := json.Unmarshal([]byte(why), &inc.Why); err != nil {
		return inc, fmt.Errorf("sqlite: incident %s: why: %w", inc.ID, err)
	}
	return inc, nil
}

func (t *dtx) incident(q string, args ...any) (store.Incident, bool, error) {
	inc, err := scanIncident(t.q.QueryRowContext(t.ctx, `SELECT `+incidentColumns+` FROM incidents `+q, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return inc, false, nil
	}
	if err != nil {
		return inc, false, fmt.Errorf("sqlite: incident: %w", err)
	}
	return inc, true, nil
}

// collect runs query on q and scans every row with scan; what names the
// query in errors.
func collect[T any](ctx context.Context, q querier, what, query string, args []any, scan func(scanner) (T, error)) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: %s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", what, err)
	}
	return out, nil
}

func scanString(r scanner) (string, error) {
	var v string
	err := r.Scan(&v)
	return v, err
}

// inChunk is the most alert IDs one IN (…) list carries.
const inChunk = 500

// placeholders is "?, ?, …" for n parameters.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

func (t *dtx) IncidentsOfAlerts(alertIDs []string) (map[string]string, error) {
	out := map[string]string{}
	for len(alertIDs) > 0 {
		chunk := alertIDs[:min(inChunk, len(alertIDs))]
		alertIDs = alertIDs[len(chunk):]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		rows, err := t.q.QueryContext(t.ctx, `SELECT alert_id, incident_id FROM incident_alerts WHERE alert_id IN (`+placeholders(len(chunk))+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("sqlite: incidents of alerts: %w", err)
		}
		for rows.Next() {
			var a, inc string
			if err := rows.Scan(&a, &inc); err != nil {
				rows.Close()
				return nil, fmt.Errorf("sqlite: incidents of alerts: %w", err)
			}
			out[a] = inc
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("sqlite: incidents of alerts: %w", err)
		}
	}
	return out, nil
}

func (t *dtx) LatestIncident(cameraID, typ, zone string) (store.Incident, bool, error) {
	// A key's incidents do not overlap in time, so the latest created is
	// the one with the latest alert (which the index orders by).
	return t.incident(`WHERE camera_id = ? AND type = ? AND zone = ? ORDER BY last_alert_at DESC, created_at DESC, id DESC LIMIT 1`, cameraID, typ, zone)
}

func (t *dtx) LastClosedIncident(cameraID, typ, zone string) (store.Incident, bool, error) {
	return t.incident(`WHERE camera_id = ? AND type = ? AND zone = ? AND state IN ('closed', 'false_alarm', 'cancelled')
		ORDER BY created_at DESC, id DESC LIMIT 1`, cameraID, typ, zone)
}

func (t *dtx) GetIncident(id string) (store.Incident, error) {
	inc, ok, err := t.incident(`WHERE id = ?`, id)
	if err == nil && !ok {
		err = store.ErrNotFound
	}
	return inc, err
}

func whyJSON(why []string) string {
	if why == nil {
		why = []string{}
	}
	b, _ := json.Marshal(why)
	return string(b)
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (t *dtx) InsertIncident(inc store.Incident) error {
	_, err := t.q.ExecContext(t.ctx, `INSERT INTO incidents (`+incidentColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		inc.ID, inc.CameraID, inc.Type, inc.Zone, inc.Grid, string(inc.State), inc.Severity, inc.FirstAlertAt.UnixNano(), inc.LastAlertAt.UnixNano(),
		inc.AlertCount, nullString(inc.RecurrenceOf), inc.Rule, inc.SLAProfile, whyJSON(inc.Why), inc.CreatedAt.UnixNano(), inc.UpdatedAt.UnixNano(), inc.Version)
	if err != nil {
		return fmt.Errorf("sqlite: insert incident: %w", err)
	}
	return nil
}

func (t *dtx) UpdateIncident(inc store.Incident, prevVersion int64) error {
	res, err := t.q.ExecContext(t.ctx, `UPDATE incidents SET grid = ?, state = ?, severity = ?, first_alert_at = ?, last_alert_at = ?,
		alert_count = ?, rule = ?, sla_profile = ?, why = ?, updated_at = ?, version = ? WHERE id = ? AND version = ?`,
		inc.Grid, string(inc.State), inc.Severity, inc.FirstAlertAt.UnixNano(), inc.LastAlertAt.UnixNano(), inc.AlertCount,
		inc.Rule, inc.SLAProfile, whyJSON(inc.Why), inc.UpdatedAt.UnixNano(), inc.Version, inc.ID, prevVersion)
	return affectedOne(res, err, "update incident")
}

func affectedOne(res sql.Result, err error, what string) error {
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", what, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", what, err)
	}
	if n != 1 {
		return store.ErrConflict
	}
	return nil
}

func (t *dtx) LinkAlert(incidentID, alertID string, detectedAt time.Time) error {
	_, err := t.q.ExecContext(t.ctx, `INSERT INTO incident_alerts (alert_id, incident_id, detected_at) VALUES (?, ?, ?)`,
		alertID, incidentID, detectedAt.UnixNano())
	if err != nil {
		return fmt.Errorf("sqlite: link alert: %w", err)
	}
	return nil
}

const orderColumns = `data, sla_profile, auto_dispatch_at, next_timer_at`

func scanOrder(r scanner) (store.OrderRecord, error) {
	var rec store.OrderRecord
	var data string
	var auto, next sql.NullInt64
	if err := r.Scan(&data, &rec.SLAProfile, &auto, &next); err != nil {
		return rec, err
	}
	if err := json.Unmarshal([]byte(data), &rec.Order); err != nil {
		return rec, fmt.Errorf("sqlite: stored order is unreadable: %w", err)
	}
	rec.AutoDispatchAt, rec.NextTimerAt = fromNanos(auto), fromNanos(next)
	return rec, nil
}

func (t *dtx) orders(q string, args ...any) ([]store.OrderRecord, error) {
	return collect(t.ctx, t.q, "orders", `SELECT `+orderColumns+` FROM orders `+q, args, scanOrder)
}

func (t *dtx) GetOrder(id string) (store.OrderRecord, error) {
	rec, err := scanOrder(t.q.QueryRowContext(t.ctx, `SELECT `+orderColumns+` FROM orders WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return rec, store.ErrNotFound
	}
	if err != nil {
		return rec, fmt.Errorf("sqlite: get order: %w", err)
	}
	return rec, nil
}

func (t *dtx) OrdersOf(incidentID string) ([]store.OrderRecord, error) {
	return t.orders(`WHERE incident_id = ? ORDER BY role = 'support', id`, incidentID)
}

func (t *dtx) InsertOrder(rec store.OrderRecord) error {
	o := rec.Order
	data, err := json.Marshal(o)
	if err != nil {
		return err
	}
	_, err = t.q.ExecContext(t.ctx, `INSERT INTO orders (id, incident_id, agency_id, role, state, version, data, sla_profile, auto_dispatch_at, next_timer_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, o.ID, o.IncidentID, o.AgencyID, string(o.Role), string(o.State), o.Version, string(data),
		rec.SLAProfile, nanos(rec.AutoDispatchAt), nanos(rec.NextTimerAt))
	if err != nil {
		return fmt.Errorf("sqlite: insert order: %w", err)
	}
	return nil
}

func (t *dtx) UpdateOrder(rec store.OrderRecord, prevVersion int64, claimTimer time.Time) error {
	o := rec.Order
	data, err := json.Marshal(o)
	if err != nil {
		return err
	}
	q := `UPDATE orders SET state = ?, version = ?, data = ?, sla_profile = ?, auto_dispatch_at = ?, next_timer_at = ? WHERE id = ? AND version = ?`
	args := []any{string(o.State), o.Version, string(data), rec.SLAProfile, nanos(rec.AutoDispatchAt), nanos(rec.NextTimerAt), o.ID, prevVersion}
	if !claimTimer.IsZero() {
		q += ` AND next_timer_at <= ?`
		args = append(args, claimTimer.UnixNano())
	}
	res, err := t.q.ExecContext(t.ctx, q, args...)
	return affectedOne(res, err, "update order")
}

func (t *dtx) lastAudit() (audit.Entry, bool, error) {
	if t.hasHead {
		return t.head, true, nil
	}
	e, err := scanAudit(t.q.QueryRowContext(t.ctx, `SELECT `+auditColumns+` FROM audit ORDER BY seq DESC LIMIT 1`))
	if errors.Is(err, sql.ErrNoRows) {
		return e, false, nil
	}
	if err != nil {
		return e, false, fmt.Errorf("sqlite: audit head: %w", err)
	}
	return e, true, nil
}

func (t *dtx) AppendAudit(e audit.Entry) (audit.Entry, error) {
	last, ok, err := t.lastAudit()
	if err != nil {
		return e, err
	}
	chain := audit.NewChain(nil)
	if ok {
		if chain, err = audit.Resume(last, nil); err != nil {
			return e, err
		}
	}
	sealed, err := chain.Append(e)
	if err != nil {
		return e, err
	}
	_, err = t.q.ExecContext(t.ctx, `INSERT INTO audit (`+auditColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		sealed.Seq, sealed.At.UnixNano(), sealed.Actor, sealed.Entity, sealed.EntityID, sealed.Action,
		rawOrNull(sealed.Before), rawOrNull(sealed.After), sealed.PrevHash, sealed.Hash)
	if err != nil {
		return e, fmt.Errorf("sqlite: append audit: %w", err)
	}
	t.head, t.hasHead = sealed, true
	return sealed, nil
}

const auditColumns = `seq, at, actor, entity, entity_id, action, before, after, prev_hash, hash`

func rawOrNull(b json.RawMessage) any {
	if b == nil {
		return nil
	}
	return string(b)
}

func scanAudit(r scanner) (audit.Entry, error) {
	var e audit.Entry
	var at int64
	var before, after sql.NullString
	if err := r.Scan(&e.Seq, &at, &e.Actor, &e.Entity, &e.EntityID, &e.Action, &before, &after, &e.PrevHash, &e.Hash); err != nil {
		return e, err
	}
	e.At = time.Unix(0, at).UTC()
	if before.Valid {
		e.Before = json.RawMessage(before.String)
	}
	if after.Valid {
		e.After = json.RawMessage(after.String)
	}
	return e, nil
}

// AuditEntries yields the audit log in order of seq; a read error ends the
// sequence and is reported by the returned function.
func (s *Store) AuditEntries(ctx context.Context) (iter.Seq[audit.Entry], func() error) {
	var ferr error
	seq := func(yield func(audit.Entry) bool) {
		rows, err := s.db.QueryContext(ctx, `SELECT `+auditColumns+` FROM audit ORDER BY seq`)
		if err != nil {
			ferr = fmt.Errorf("sqlite: audit: %w", err)
			return
		}
		defer rows.Close()
		for rows.Next() {
			e, err := scanAudit(rows)
			if err != nil {
				ferr = fmt.Errorf("sqlite: audit: %w", err)
				return
			}
			if !yield(e) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			ferr = fmt.Errorf("sqlite: audit: %w", err)
		}
	}
	return seq, func() error { return ferr }
}

// AuditOf is the audit log of one entity, oldest first.
func (s *Store) AuditOf(ctx context.Context, entity, id string) ([]audit.Entry, error) {
	return collect(ctx, s.db, "audit", `SELECT `+auditColumns+` FROM audit WHERE entity = ? AND entity_id = ? ORDER BY seq`,
		[]any{entity, id}, scanAudit)
}

// ListIncidents returns incidents, the most recent alert first.
func (s *Store) ListIncidents(ctx context.Context, f store.IncidentFilter) ([]store.Incident, error) {
	q := `SELECT ` + incidentColumns + ` FROM incidents WHERE 1 = 1`
	var args []any
	if f.CameraID != "" {
		q, args = q+` AND camera_id = ?`, append(args, f.CameraID)
	}
	if f.State != "" {
		q, args = q+` AND state = ?`, append(args, f.State)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	q, args = q+` ORDER BY last_alert_at DESC, id DESC LIMIT ?`, append(args, limit)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list incidents: %w", err)
	}
	defer rows.Close()
	var out []store.Incident
	for rows.Next() {
		inc, err := scanIncident(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, inc)
	}
	return out, rows.Err()
}

// GetIncident returns one incident.
func (s *Store) GetIncident(ctx context.Context, id string) (store.Incident, error) {
	return (&dtx{ctx: ctx, q: s.db}).GetIncident(id)
}

// IncidentAlertIDs lists the alerts of an incident in order of detection.
func (s *Store) IncidentAlertIDs(ctx context.Context, id string, limit int) ([]string, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := s.db.QueryContext(ctx, `SELECT alert_id FROM incident_alerts WHERE incident_id = ? ORDER BY detected_at, alert_id LIMIT ?`, id, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: incident alerts: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// IncidentAlerts returns the stored alerts of an incident, oldest first.
func (s *Store) IncidentAlerts(ctx context.Context, id string, limit int) ([]store.AlertRecord, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+alertColumns+` FROM incident_alerts ia JOIN alerts a ON a.alert_id = ia.alert_id
		WHERE ia.incident_id = ? ORDER BY ia.detected_at, a.seq LIMIT ?`, id, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: incident alerts: %w", err)
	}
	defer rows.Close()
	var out []store.AlertRecord
	for rows.Next() {
		r, err := scanAlert(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// OrdersOf returns an incident's orders, lead first.
func (s *Store) OrdersOf(ctx context.Context, incidentID string) ([]store.OrderRecord, error) {
	return (&dtx{ctx: ctx, q: s.db}).OrdersOf(incidentID)
}

// GetOrder returns one order.
func (s *Store) GetOrder(ctx context.Context, id string) (store.OrderRecord, error) {
	return (&dtx{ctx: ctx, q: s.db}).GetOrder(id)
}

// ListOrders returns orders, newest first, of one agency when agencyID is
// not empty.
func (s *Store) ListOrders(ctx context.Context, agencyID string, limit int) ([]store.OrderRecord, error) {
	if limit <= 0 {
		limit = 100
	}
	t := &dtx{ctx: ctx, q: s.db}
	if agencyID == "" {
		return t.orders(`ORDER BY id DESC LIMIT ?`, limit)
	}
	return t.orders(`WHERE agency_id = ? ORDER BY id DESC LIMIT ?`, agencyID, limit)
}

// DueTimers lists the orders whose timer is due at now, earliest first.
func (s *Store) DueTimers(ctx context.Context, now time.Time, limit int) ([]string, error) {
	return collect(ctx, s.db, "due timers", `SELECT id FROM orders WHERE next_timer_at IS NOT NULL AND next_timer_at <= ?
		ORDER BY next_timer_at LIMIT ?`, []any{now.UnixNano(), limit}, scanString)
}

// NextTimer is the earliest order timer; ok is false when none is set.
func (s *Store) NextTimer(ctx context.Context) (time.Time, bool, error) {
	var n sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT min(next_timer_at) FROM orders WHERE next_timer_at IS NOT NULL`).Scan(&n); err != nil {
		return time.Time{}, false, fmt.Errorf("sqlite: next timer: %w", err)
	}
	return fromNanos(n), n.Valid, nil
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
		if _, err := t.q.ExecContext(t.ctx, `INSERT INTO egress (channel, target, agency_id, order_id, event, payload, created_at, state, next_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?)`,
			m.Channel, m.Target, m.AgencyID, m.OrderID, m.Event, string(m.Payload), created.UnixNano(), created.UnixNano()); err != nil {
			return fmt.Errorf("sqlite: enqueue egress: %w", err)
		}
	}
	return nil
}

const egressColumns = `id, channel, target, agency_id, order_id, event, payload, created_at, state, attempts, next_at, last_error, delivered_at`

func scanEgress(r scanner) (store.Egress, error) {
	var e store.Egress
	var payload string
	var created int64
	var next, delivered sql.NullInt64
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
	return collect(ctx, s.db, "egress", `SELECT `+egressColumns+` FROM egress `+q, args, scanEgress)
}

// DueEgress returns up to limit pending messages due at now, in the order
// they were queued. A message waits while an earlier one to the same
// target waits for its retry, so each target gets its messages in order.
func (s *Store) DueEgress(ctx context.Context, now time.Time, limit int) ([]store.Egress, error) {
	return s.egress(ctx, `WHERE next_at IS NOT NULL AND next_at <= ?1 AND NOT EXISTS (
		SELECT 1 FROM egress e2 WHERE e2.channel = egress.channel AND e2.target = egress.target
			AND e2.next_at IS NOT NULL AND e2.id < egress.id AND e2.next_at > ?1)
		ORDER BY id LIMIT ?2`, now.UnixNano(), limit)
}

// NextEgress is when the earliest pending message is due.
func (s *Store) NextEgress(ctx context.Context) (time.Time, bool, error) {
	var at sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT min(next_at) FROM egress WHERE next_at IS NOT NULL`).Scan(&at); err != nil {
		return time.Time{}, false, fmt.Errorf("sqlite: next egress: %w", err)
	}
	return fromNanos(at), at.Valid, nil
}

// UpdateEgress records an attempt: e's state, attempts, next due time,
// last error and delivery time, as the caller set them. Only a pending
// message changes (ErrConflict otherwise), so two senders cannot both
// record one.
func (s *Store) UpdateEgress(ctx context.Context, e store.Egress) error {
	var next any
	if e.State == store.EgressPending {
		next = e.NextAt.UnixNano()
	}
	res, err := s.db.ExecContext(ctx, `UPDATE egress SET state = ?, attempts = ?, next_at = ?, last_error = ?, delivered_at = ?
		WHERE id = ? AND state = 'pending'`, e.State, e.Attempts, next, e.LastError, nanos(e.DeliveredAt), e.ID)
	return affectedOne(res, err, "update egress")
}

// RetryEgress makes a dead message pending again, due at now.
func (s *Store) RetryEgress(ctx context.Context, id int64, now time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE egress SET state = 'pending', next_at = ? WHERE id = ? AND state = 'dead'`, now.UnixNano(), id)
	return affectedOne(res, err, "retry egress")
}

// ListEgress lists messages, newest first.
func (s *Store) ListEgress(ctx context.Context, f store.EgressFilter) ([]store.Egress, error) {
	q, args := `WHERE 1=1`, []any{}
	if f.State != "" {
		q += ` AND state = ?`
		args = append(args, f.State)
	}
	if f.OrderID != "" {
		q += ` AND order_id = ?`
		args = append(args, f.OrderID)
	}
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 100
	}
	return s.egress(ctx, q+` ORDER BY id DESC LIMIT ?`, append(args, f.Limit)...)
}
