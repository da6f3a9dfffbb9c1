// Package sqlite is central's embedded store: SQLite in WAL mode through the
// pure-Go modernc driver, with migrations embedded in the binary.
package sqlite

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	_ "modernc.org/sqlite" // database/sql driver "sqlite"

	"github.com/xueliang/xl/central/internal/store"
	"github.com/xueliang/xl/internal/wire"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is a SQLite database.
type Store struct {
	db   *sql.DB
	path string
}

// Open opens (creating if needed) the database at path and migrates it.
func Open(ctx context.Context, path string) (*Store, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("sqlite: %w", err)
		}
	}
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)&_pragma=wal_autocheckpoint(8000)&_pragma=cache_size(-65536)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(4)
	s := &Store{db: db, path: path}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("sqlite: migrations table: %w", err)
	}
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		version := strings.TrimSuffix(filepath.Base(name), ".sql")
		var n int
		if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, version).Scan(&n); err != nil {
			return fmt.Errorf("sqlite: %w", err)
		}
		if n > 0 {
			continue
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("sqlite: migrate %s: %w", version, err)
		}
		if _, err := tx.ExecContext(ctx, string(body)); err != nil {
			tx.Rollback()
			return fmt.Errorf("sqlite: migrate %s: %w", version, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, version, time.Now().UnixNano()); err != nil {
			tx.Rollback()
			return fmt.Errorf("sqlite: migrate %s: %w", version, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("sqlite: migrate %s: %w", version, err)
		}
	}
	return nil
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// InsertAlert stores a once; inserted is false when an alert with the same
// alert_id was stored before (a redelivery).
func (s *Store) InsertAlert(ctx context.Context, a *wire.Alert, receivedAt time.Time) (inserted bool, err error) {
	payload, err := wire.Marshal(a)
	if err != nil {
		return false, err
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO alerts
		(alert_id, event_id, phase, agent_id, camera_id, type, severity, zone, started_at, detected_at, received_at, payload)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (alert_id) DO NOTHING`,
		a.AlertID, a.EventID, string(a.Phase), a.AgentID, a.CameraID, a.Type, a.Severity, a.Zone,
		a.StartedAt.UnixNano(), a.DetectedAt.UnixNano(), receivedAt.UnixNano(), string(payload))
	if err != nil {
		return false, fmt.Errorf("sqlite: insert alert %s: %w", a.AlertID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, err
	}
	return n == 1, nil
}

// InsertAlerts stores alerts in one transaction; inserted[i] is false for
// an alert stored before (or earlier in the same batch).
func (s *Store) InsertAlerts(ctx context.Context, alerts []*wire.Alert, receivedAt time.Time) (inserted []bool, err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO alerts
		(alert_id, event_id, phase, agent_id, camera_id, type, severity, zone, started_at, detected_at, received_at, payload)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (alert_id) DO NOTHING`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	defer stmt.Close()
	inserted = make([]bool, len(alerts))
	for i, a := range alerts {
		payload, err := wire.Marshal(a)
		if err != nil {
			return nil, err
		}
		res, err := stmt.ExecContext(ctx, a.AlertID, a.EventID, string(a.Phase), a.AgentID, a.CameraID, a.Type, a.Severity, a.Zone,
			a.StartedAt.UnixNano(), a.DetectedAt.UnixNano(), receivedAt.UnixNano(), string(payload))
		if err != nil {
			return nil, fmt.Errorf("sqlite: insert alert %s: %w", a.AlertID, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return nil, err
		}
		inserted[i] = n == 1
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("sqlite: commit alerts: %w", err)
	}
	return inserted, nil
}

// PutEvidence stores evidence once per (alert, kind); inserted is false for a
// redelivery.
func (s *Store) PutEvidence(ctx context.Context, ev store.Evidence) (inserted bool, err error) {
	res, err := s.db.ExecContext(ctx, `INSERT INTO evidence (alert_id, kind, sha256, size, data, received_at)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (alert_id, kind) DO NOTHING`,
		ev.AlertID, string(ev.Kind), ev.SHA256, len(ev.Data), ev.Data, ev.ReceivedAt.UnixNano())
	if err != nil {
		return false, fmt.Errorf("sqlite: insert evidence %s/%s: %w", ev.AlertID, ev.Kind, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// PutEvidencePart stores one part of evidence sent in parts. With the last
// part, in the same transaction, the parts are joined, stored as the
// evidence (once per alert and kind) and deleted; stored reports that.
// A part repeated, or arriving after its evidence was stored, changes
// nothing.
func (s *Store) PutEvidencePart(ctx context.Context, p store.EvidencePart) (stored bool, err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("sqlite: %w", err)
	}
	defer tx.Rollback()
	var have int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM evidence WHERE alert_id = ? AND kind = ?`, p.AlertID, string(p.Kind)).Scan(&have); err != nil {
		return false, fmt.Errorf("sqlite: evidence part: %w", err)
	}
	if have > 0 {
		return false, nil
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO evidence_parts (alert_id, kind, idx, parts, data, received_at) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT DO NOTHING`, p.AlertID, string(p.Kind), p.Index, p.Parts, p.Data, p.ReceivedAt.UnixNano()); err != nil {
		return false, fmt.Errorf("sqlite: evidence part: %w", err)
	}
	chunks, err := collect(ctx, tx, "evidence parts", `SELECT data FROM evidence_parts WHERE alert_id = ? AND kind = ? AND parts = ? ORDER BY idx`,
		[]any{p.AlertID, string(p.Kind), p.Parts}, func(r scanner) ([]byte, error) {
			var b []byte
			err := r.Scan(&b)
			return b, err
		})
	if err != nil {
		return false, err
	}
	if len(chunks) == p.Parts {
		data := bytes.Join(chunks, nil)
		sum := sha256.Sum256(data)
		if _, err := tx.ExecContext(ctx, `INSERT INTO evidence (alert_id, kind, sha256, size, data, received_at)
			VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (alert_id, kind) DO NOTHING`,
			p.AlertID, string(p.Kind), hex.EncodeToString(sum[:]), len(data), data, p.ReceivedAt.UnixNano()); err != nil {
			return false, fmt.Errorf("sqlite: evidence from parts: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM evidence_parts WHERE alert_id = ? AND kind = ?`, p.AlertID, string(p.Kind)); err != nil {
			return false, fmt.Errorf("sqlite: evidence parts: %w", err)
		}
		stored = true
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("sqlite: commit evidence part: %w", err)
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

// PutAgentStatuses records agents' statuses in one transaction, each as
// PutAgentStatus does: a later status of the same agent, in the slice or
// in a later call, wins whatever its timestamp.
func (s *Store) PutAgentStatuses(ctx context.Context, sts []store.AgentStatus) error {
	if len(sts) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO agents (agent_id, state, version, config_version, cameras, status_at, last_seen)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (agent_id) DO UPDATE SET
			state = excluded.state, version = excluded.version, config_version = excluded.config_version,
			cameras = excluded.cameras, status_at = excluded.status_at, last_seen = excluded.last_seen`)
	if err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	defer stmt.Close()
	for _, a := range sts {
		st := a.Status
		cams, err := json.Marshal(st.Cameras)
		if err != nil {
			return err
		}
		if _, err := stmt.ExecContext(ctx, st.AgentID, string(st.State), st.Version, st.ConfigVersion, string(cams),
			st.TS.UnixNano(), a.Seen.UnixNano()); err != nil {
			return fmt.Errorf("sqlite: agent status %s: %w", st.AgentID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit %d agent statuses: %w", len(sts), err)
	}
	return nil
}

// MarkAllOffline records every agent as offline without touching its status
// time, so the next status an agent sends wins. Central calls it when its
// embedded broker starts: every agent that is really up connects again and
// says so.
func (s *Store) MarkAllOffline(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE agents SET state = 'offline' WHERE state <> 'offline'`); err != nil {
		return fmt.Errorf("sqlite: mark agents offline: %w", err)
	}
	return nil
}

const alertColumns = `a.seq, a.payload, a.received_at`

// ListAlerts returns alerts newest first (by detection time, then arrival).
func (s *Store) ListAlerts(ctx context.Context, f store.AlertFilter) ([]store.AlertRecord, error) {
	var where []string
	var args []any
	if f.CameraID != "" {
		where, args = append(where, "a.camera_id = ?"), append(args, f.CameraID)
	}
	if f.AgentID != "" {
		where, args = append(where, "a.agent_id = ?"), append(args, f.AgentID)
	}
	if f.Type != "" {
		where, args = append(where, "a.type = ?"), append(args, f.Type)
	}
	if !f.Since.IsZero() {
		where, args = append(where, "a.detected_at >= ?"), append(args, f.Since.UnixNano())
	}
	if c := f.Before; c != nil {
		ns := c.DetectedAt.UnixNano()
		where, args = append(where, "(a.detected_at < ? OR (a.detected_at = ? AND a.seq < ?))"), append(args, ns, ns, c.Seq)
	}
	q := `SELECT ` + alertColumns + ` FROM alerts a`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	q += " ORDER BY a.detected_at DESC, a.seq DESC LIMIT ?"
	args = append(args, limit)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list alerts: %w", err)
	}
	defer rows.Close()
	var out []store.AlertRecord
	var ids []string
	for rows.Next() {
		r, err := scanAlert(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
		ids = append(ids, r.Alert.AlertID)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if err := s.attachEvidence(ctx, out, ids); err != nil {
		return nil, err
	}
	return out, nil
}

func (s *Store) attachEvidence(ctx context.Context, recs []store.AlertRecord, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	ph := strings.TrimSuffix(strings.Repeat("?,", len(ids)), ",")
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	rows, err := s.db.QueryContext(ctx, `SELECT alert_id, kind, sha256, size, received_at FROM evidence WHERE alert_id IN (`+ph+`) ORDER BY kind`, args...)
	if err != nil {
		return fmt.Errorf("sqlite: evidence: %w", err)
	}
	defer rows.Close()
	byID := map[string][]store.EvidenceMeta{}
	for rows.Next() {
		var m store.EvidenceMeta
		var kind string
		var at int64
		if err := rows.Scan(&m.AlertID, &kind, &m.SHA256, &m.Size, &at); err != nil {
			return err
		}
		m.Kind, m.ReceivedAt = wire.EvidenceKind(kind), time.Unix(0, at).UTC()
		byID[m.AlertID] = append(byID[m.AlertID], m)
	}
	for i := range recs {
		recs[i].Evidence = byID[recs[i].Alert.AlertID]
	}
	return rows.Err()
}

type scanner interface{ Scan(...any) error }

func scanAlert(r scanner) (store.AlertRecord, error) {
	var rec store.AlertRecord
	var payload string
	var received int64
	if err := r.Scan(&rec.Seq, &payload, &received); err != nil {
		return rec, err
	}
	if err := json.Unmarshal([]byte(payload), &rec.Alert); err != nil {
		return rec, fmt.Errorf("sqlite: stored alert %d is unreadable: %w", rec.Seq, err)
	}
	rec.ReceivedAt = time.Unix(0, received).UTC()
	return rec, nil
}

// GetAlert returns one alert with its evidence metadata.
func (s *Store) GetAlert(ctx context.Context, alertID string) (store.AlertRecord, error) {
	row := s.db.QueryRowContext(ctx, `SELECT `+alertColumns+` FROM alerts a WHERE a.alert_id = ?`, alertID)
	rec, err := scanAlert(row)
	if errors.Is(err, sql.ErrNoRows) {
		return rec, store.ErrNotFound
	}
	if err != nil {
		return rec, fmt.Errorf("sqlite: get alert: %w", err)
	}
	recs := []store.AlertRecord{rec}
	if err := s.attachEvidence(ctx, recs, []string{alertID}); err != nil {
		return rec, err
	}
	return recs[0], nil
}

// GetEvidence returns the evidence of one kind for an alert.
func (s *Store) GetEvidence(ctx context.Context, alertID string, kind wire.EvidenceKind) (store.Evidence, error) {
	var ev store.Evidence
	var at int64
	err := s.db.QueryRowContext(ctx, `SELECT sha256, size, data, received_at FROM evidence WHERE alert_id = ? AND kind = ?`, alertID, string(kind)).
		Scan(&ev.SHA256, &ev.Size, &ev.Data, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return ev, store.ErrNotFound
	}
	if err != nil {
		return ev, fmt.Errorf("sqlite: get evidence: %w", err)
	}
	ev.AlertID, ev.Kind, ev.ReceivedAt = alertID, kind, time.Unix(0, at).UTC()
	return ev, nil
}

// ListAgents returns every agent's last status, by ID.
func (s *Store) ListAgents(ctx context.Context) ([]store.AgentRecord, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT agent_id, state, version, config_version, cameras, status_at, last_seen FROM agents ORDER BY agent_id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list agents: %w", err)
	}
	defer rows.Close()
	var out []store.AgentRecord
	for rows.Next() {
		var r store.AgentRecord
		var state, cams string
		var statusAt, seen int64
		if err := rows.Scan(&r.AgentID, &state, &r.Version, &r.ConfigVersion, &cams, &statusAt, &seen); err != nil {
			return nil, err
		}
		r.State = wire.AgentState(state)
		_ = json.Unmarshal([]byte(cams), &r.Cameras)
		r.StatusAt, r.LastSeen = time.Unix(0, statusAt).UTC(), time.Unix(0, seen).UTC()
		out = append(out, r)
	}
	return out, rows.Err()
}

// Stats counts incidents, orders, active orders' cards, agents and egress
// messages by state, one grouped query each.
func (s *Store) Stats(ctx context.Context) (store.Stats, error) {
	return store.CollectStats(func(q string, add func(key string, n int)) error {
		rows, err := s.db.QueryContext(ctx, q)
		if err != nil {
			return fmt.Errorf("sqlite: stats: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var k string
			var n int
			if err := rows.Scan(&k, &n); err != nil {
				return fmt.Errorf("sqlite: stats: %w", err)
			}
			add(k, n)
		}
		return rows.Err()
	}, `COALESCE(json_extract(data, '$.card'), 'none')`)
}
