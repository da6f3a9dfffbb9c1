// Package outbox is the agent's durable queue of messages for the command
// centre. Every alert and piece of evidence is committed to disk (SQLite in
// WAL mode with synchronous=FULL, so each commit is fsync'd) before it is
// published, and deleted only once the broker has acknowledged it. After a
// broker outage, a power cut or kill -9, whatever was committed is sent again
// in order.
//
// Messages travel in lanes: alerts first, then snapshots, then clips, so a
// slow link still delivers the alarm first. Within a lane, messages leave in
// the order they were written, which keeps each camera's alerts in order.
// The outbox is bounded by bytes and by age; when it must shed, it evicts
// clips before snapshots before alerts, and counts and logs every eviction.
package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	_ "modernc.org/sqlite" // database/sql driver "sqlite"
)

// Lane is a message's priority class; lower lanes leave first and are
// evicted last.
type Lane int

// Lanes.
const (
	LaneAlert Lane = iota
	LaneSnapshot
	LaneClip
)

func (l Lane) String() string {
	switch l {
	case LaneAlert:
		return "alert"
	case LaneSnapshot:
		return "snapshot"
	case LaneClip:
		return "clip"
	}
	return fmt.Sprintf("lane%d", int(l))
}

// Message is one MQTT publish waiting in the outbox.
type Message struct {
	Seq       int64 // assigned by Put
	Lane      Lane
	CameraID  string
	Topic     string
	Payload   []byte
	CreatedAt time.Time
}

// Limits bound the outbox.
type Limits struct {
	MaxBytes int64         // total payload bytes kept
	MaxAge   time.Duration // older messages are evicted
}

// Outbox is the durable queue. It is safe for concurrent use.
type Outbox struct {
	db     *sql.DB
	limits Limits
	log    *slog.Logger
	wake   chan struct{}

	mu      sync.Mutex // serialises writers (Put, Ack, Evict)
	reserve string     // file holding ReserveBytes of disk for a full-disk shed
	bytes   int64
	count   int64

	written  *prometheus.CounterVec
	acked    *prometheus.CounterVec
	evicted  *prometheus.CounterVec
	depth    prometheus.Gauge
	size     prometheus.Gauge
	oldest   prometheus.GaugeFunc
	putTimer prometheus.Histogram
}

const schema = `
CREATE TABLE IF NOT EXISTS outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    lane       INTEGER NOT NULL,
    camera_id  TEXT    NOT NULL,
    topic      TEXT    NOT NULL,
    payload    BLOB    NOT NULL,
    size       INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_by_lane ON outbox (lane, seq);
CREATE INDEX IF NOT EXISTS outbox_by_age  ON outbox (created_at);
`

// Open opens or creates the outbox at path.
func Open(path string, limits Limits, reg prometheus.Registerer, log *slog.Logger) (*Outbox, error) {
	if limits.MaxBytes <= 0 || limits.MaxAge <= 0 {
		return nil, errors.New("outbox: max_bytes and max_age must be positive")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	// synchronous=FULL: every commit is fsync'd before it returns, so an
	// alert Put has returned for survives a power cut.
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("outbox: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1) // one writer; reads are short
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("outbox: %s: %w (a damaged outbox file can be moved aside; its messages are then lost)", path, err)
	}
	o := &Outbox{db: db, limits: limits, log: log.With("component", "outbox"), wake: make(chan struct{}, 1), reserve: path + ".reserve"}
	o.keepReserveLocked()
	f := promauto.With(reg)
	o.written = f.NewCounterVec(prometheus.CounterOpts{Name: "xl_agent_outbox_written_total", Help: "Messages committed to the outbox, by lane."}, []string{"lane"})
	o.acked = f.NewCounterVec(prometheus.CounterOpts{Name: "xl_agent_outbox_acked_total", Help: "Messages removed after the broker acknowledged them, by lane."}, []string{"lane"})
	o.evicted = f.NewCounterVec(prometheus.CounterOpts{Name: "xl_agent_outbox_evicted_total", Help: "Messages evicted unsent, by lane and reason (bytes, age, disk_full)."}, []string{"lane", "reason"})
	o.depth = f.NewGauge(prometheus.GaugeOpts{Name: "xl_agent_outbox_messages", Help: "Messages waiting in the outbox."})
	o.size = f.NewGauge(prometheus.GaugeOpts{Name: "xl_agent_outbox_bytes", Help: "Payload bytes waiting in the outbox."})
	o.oldest = f.NewGaugeFunc(prometheus.GaugeOpts{Name: "xl_agent_outbox_oldest_age_seconds", Help: "Age of the oldest message waiting."}, func() float64 {
		at, ok := o.oldestAt()
		if !ok {
			return 0
		}
		return time.Since(at).Seconds()
	})
	o.putTimer = f.NewHistogram(prometheus.HistogramOpts{Name: "xl_agent_outbox_put_seconds", Help: "Time to commit messages durably.", Buckets: prometheus.ExponentialBuckets(0.0002, 2.5, 12)})
	if err := db.QueryRow(`SELECT count(*), coalesce(sum(size), 0) FROM outbox`).Scan(&o.count, &o.bytes); err != nil {
		db.Close()
		return nil, fmt.Errorf("outbox: %w", err)
	}
	o.gauges()
	if o.count > 0 {
		o.log.Info("outbox has messages from before; they will be sent first", "messages", o.count, "bytes", o.bytes)
	}
	return o, nil
}

func (o *Outbox) gauges() {
	o.depth.Set(float64(o.count))
	o.size.Set(float64(o.bytes))
}

func (o *Outbox) oldestAt() (time.Time, bool) {
	var at sql.NullInt64
	if err := o.db.QueryRow(`SELECT min(created_at) FROM outbox`).Scan(&at); err != nil || !at.Valid {
		return time.Time{}, false
	}
	return time.Unix(0, at.Int64), true
}

// Wake is signalled whenever messages are added.
func (o *Outbox) Wake() <-chan struct{} { return o.wake }

// ErrDiskFull is returned (wrapped) by Put when the outbox's filesystem is
// full and shedding evidence did not make room for the messages' alerts.
var ErrDiskFull = errors.New("outbox: disk full")

// Put commits msgs in one transaction (all or none) and returns once they
// are on disk. It then evicts what the limits no longer allow.
//
// When the disk is full, Put sheds as the limits do: it evicts unsent
// clips, then snapshots, oldest first, and tries again. When no evidence is
// left and msgs carry evidence, it commits their alerts alone (the evidence
// they came with counts as evicted): an alert is never refused while
// evidence takes its room. Only when the alerts alone do not fit does Put
// fail, with ErrDiskFull, and then nothing of msgs was written.
func (o *Outbox) Put(msgs ...Message) error {
	if len(msgs) == 0 {
		return nil
	}
	start := time.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	for i := range msgs {
		if msgs[i].CreatedAt.IsZero() {
			msgs[i].CreatedAt = time.Now()
		}
	}
	written := msgs
	err := o.put(msgs)
	for err != nil && isDiskFull(err) {
		// The write-ahead log keeps the space it grew to: moving it into
		// the database and truncating it gives that space back. The move
		// itself may need room, which the reserve gives. Evicted evidence
		// leaves free pages in the database that new messages reuse, so
		// evict enough for these messages and the reserve's worth of
		// writes after them: otherwise the next ones grow the file again.
		o.releaseReserveLocked()
		o.checkpointLocked()
		need := int64(ReserveBytes)
		for _, m := range msgs {
			need += int64(len(m.Payload))
		}
		shed, serr := o.shedEvidenceLocked(need)
		if serr != nil {
			o.log.Error("disk full, and evicting evidence failed", "err", serr)
		}
		o.checkpointLocked()
		err = o.put(msgs)
		if !shed {
			break
		}
	}
	if err != nil && isDiskFull(err) {
		var alerts []Message
		for _, m := range msgs {
			if m.Lane == LaneAlert {
				alerts = append(alerts, m)
			}
		}
		if len(alerts) > 0 && len(alerts) < len(msgs) {
			if err = o.put(alerts); err == nil {
				written = alerts
				for _, m := range msgs {
					if m.Lane != LaneAlert {
						o.evicted.WithLabelValues(m.Lane.String(), reasonDiskFull).Inc()
						o.log.Warn("outbox full: evicted an unsent message", "lane", m.Lane, "reason", reasonDiskFull,
							"camera_id", m.CameraID, "topic", m.Topic, "bytes", len(m.Payload))
					}
				}
			}
		}
	}
	if err != nil {
		if isDiskFull(err) {
			o.log.Error("outbox full: disk full, messages not written", "messages", len(msgs), "err", err)
			return fmt.Errorf("%w: %w", ErrDiskFull, err)
		}
		return err
	}
	for _, m := range written {
		o.count++
		o.bytes += int64(len(m.Payload))
		o.written.WithLabelValues(m.Lane.String()).Inc()
	}
	o.putTimer.Observe(time.Since(start).Seconds())
	if err := o.evictLocked(time.Now()); err != nil {
		o.log.Error("eviction failed", "err", err)
	}
	o.gauges()
	select {
	case o.wake <- struct{}{}:
	default:
	}
	return nil
}

// put commits msgs in one transaction and sets their Seq.
func (o *Outbox) put(msgs []Message) error {
	tx, err := o.db.Begin()
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	defer tx.Rollback()
	stmt, err := tx.Prepare(`INSERT INTO outbox (lane, camera_id, topic, payload, size, created_at) VALUES (?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	defer stmt.Close()
	for i := range msgs {
		m := &msgs[i]
		res, err := stmt.Exec(int(m.Lane), m.CameraID, m.Topic, m.Payload, len(m.Payload), m.CreatedAt.UnixNano())
		if err != nil {
			return fmt.Errorf("outbox: write: %w", err)
		}
		if m.Seq, err = res.LastInsertId(); err != nil {
			return fmt.Errorf("outbox: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("outbox: commit: %w", err)
	}
	return nil
}

// checkpointLocked copies the write-ahead log into the database and
// truncates it (best effort: on a full disk it may not complete).
func (o *Outbox) checkpointLocked() {
	if _, err := o.db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		o.log.Debug("checkpoint on a full disk", "err", err)
	}
}

// reasonDiskFull labels evictions made because the disk was full.
const reasonDiskFull = "disk_full"

// shedEvidenceLocked evicts unsent clips, then snapshots, oldest first,
// until their payloads add up to need bytes or none is left. It reports
// whether it evicted anything.
func (o *Outbox) shedEvidenceLocked(need int64) (bool, error) {
	var freed int64
	shed := false
	for lane := LaneClip; lane > LaneAlert && freed < need; lane-- {
		for freed < need {
			var seq, size int64
			err := o.db.QueryRow(`SELECT seq, size FROM outbox WHERE lane = ? ORDER BY seq LIMIT 1`, int(lane)).Scan(&seq, &size)
			if errors.Is(err, sql.ErrNoRows) {
				break
			}
			if err != nil {
				return shed, fmt.Errorf("outbox: evict: %w", err)
			}
			if err := o.evictWhere(reasonDiskFull, `seq = ?`, seq); err != nil {
				return shed, err
			}
			freed += size
			shed = true
		}
	}
	return shed, nil
}

// isDiskFull reports whether err is SQLite's "database or disk is full" or
// the operating system's ENOSPC.
func isDiskFull(err error) bool {
	var coded interface{ Code() int }
	if errors.As(err, &coded) && coded.Code()&0xff == sqliteFull {
		return true
	}
	return errors.Is(err, syscall.ENOSPC)
}

// sqliteFull is SQLITE_FULL, the primary result code of a full disk.
const sqliteFull = 13

// Pending returns up to n messages of the most urgent non-empty lane, in the
// order they were written, skipping those with Seq ≤ after within that lane.
func (o *Outbox) Pending(ctx context.Context, n int, maxBytes int64) ([]Message, error) {
	for lane := LaneAlert; lane <= LaneClip; lane++ {
		rows, err := o.db.QueryContext(ctx, `SELECT seq, camera_id, topic, payload, created_at FROM outbox WHERE lane = ? ORDER BY seq LIMIT ?`, int(lane), n)
		if err != nil {
			return nil, fmt.Errorf("outbox: %w", err)
		}
		var out []Message
		var total int64
		for rows.Next() {
			m := Message{Lane: lane}
			var at int64
			if err := rows.Scan(&m.Seq, &m.CameraID, &m.Topic, &m.Payload, &at); err != nil {
				rows.Close()
				return nil, fmt.Errorf("outbox: %w", err)
			}
			m.CreatedAt = time.Unix(0, at)
			if len(out) > 0 && total+int64(len(m.Payload)) > maxBytes {
				break
			}
			total += int64(len(m.Payload))
			out = append(out, m)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("outbox: %w", err)
		}
		if len(out) > 0 {
			return out, nil
		}
	}
	return nil, nil
}

// Ack removes messages the broker has acknowledged.
func (o *Outbox) Ack(msgs ...Message) error {
	if len(msgs) == 0 {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = fmt.Sprint(m.Seq)
	}
	var n, b int64
	if err := o.db.QueryRow(`SELECT count(*), coalesce(sum(size), 0) FROM outbox WHERE seq IN (`+strings.Join(ids, ",")+`)`).Scan(&n, &b); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	if _, err := o.db.Exec(`DELETE FROM outbox WHERE seq IN (` + strings.Join(ids, ",") + `)`); err != nil {
		return fmt.Errorf("outbox: ack: %w", err)
	}
	o.count -= n
	o.bytes -= b
	for _, m := range msgs {
		o.acked.WithLabelValues(m.Lane.String()).Inc()
	}
	o.gauges()
	return nil
}

// Evict applies the limits now (Put does this too; the publisher calls it
// periodically so that age limits hold while nothing is written).
func (o *Outbox) Evict(now time.Time) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	err := o.evictLocked(now)
	o.gauges()
	o.keepReserveLocked()
	return err
}

// ReserveBytes is the disk space the outbox holds back in a file beside its
// database. On a full disk SQLite needs room to evict (deletions and the
// checkpoint of its write-ahead log write pages too): Put frees the reserve
// then, and Evict takes it back once the filesystem has twice that free.
const ReserveBytes = 4 << 20

func (o *Outbox) releaseReserveLocked() {
	if err := os.Remove(o.reserve); err == nil {
		o.log.Warn("disk full: released the outbox's reserve to make room", "bytes", ReserveBytes)
	}
}

// keepReserveLocked (re)creates the reserve file when it is missing and the
// filesystem has room for it with as much again to spare.
func (o *Outbox) keepReserveLocked() {
	if _, err := os.Stat(o.reserve); err == nil {
		return
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(o.reserve), &st); err != nil || int64(st.Bavail)*int64(st.Bsize) < 2*ReserveBytes {
		return
	}
	f, err := os.OpenFile(o.reserve, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return
	}
	_, err = f.Write(make([]byte, ReserveBytes)) // written, not sparse: the blocks are really taken
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(o.reserve)
		o.log.Warn("outbox reserve not made", "err", err)
	}
}

func (o *Outbox) evictLocked(now time.Time) error {
	// Age first: nothing older than MaxAge is worth sending.
	cutoff := now.Add(-o.limits.MaxAge).UnixNano()
	if err := o.evictWhere("age", `created_at < ?`, cutoff); err != nil {
		return err
	}
	// Then size: clips, then snapshots, then alerts, oldest first.
	for lane := LaneClip; lane >= LaneAlert && o.bytes > o.limits.MaxBytes; lane-- {
		for o.bytes > o.limits.MaxBytes {
			var seq, size int64
			err := o.db.QueryRow(`SELECT seq, size FROM outbox WHERE lane = ? ORDER BY seq LIMIT 1`, int(lane)).Scan(&seq, &size)
			if errors.Is(err, sql.ErrNoRows) {
				break
			}
			if err != nil {
				return fmt.Errorf("outbox: evict: %w", err)
			}
			if err := o.evictWhere("bytes", `seq = ?`, seq); err != nil {
				return err
			}
		}
	}
	return nil
}

func (o *Outbox) evictWhere(reason, cond string, arg any) error {
	rows, err := o.db.Query(`SELECT seq, lane, camera_id, topic, size FROM outbox WHERE `+cond, arg)
	if err != nil {
		return fmt.Errorf("outbox: evict: %w", err)
	}
	type victim struct {
		seq, size     int64
		lane          Lane
		camera, topic string
	}
	var vs []victim
	for rows.Next() {
		var v victim
		if err := rows.Scan(&v.seq, &v.lane, &v.camera, &v.topic, &v.size); err != nil {
			rows.Close()
			return err
		}
		vs = append(vs, v)
	}
	rows.Close()
	if len(vs) == 0 {
		return nil
	}
	if _, err := o.db.Exec(`DELETE FROM outbox WHERE `+cond, arg); err != nil {
		return fmt.Errorf("outbox: evict: %w", err)
	}
	for _, v := range vs {
		o.count--
		o.bytes -= v.size
		o.evicted.WithLabelValues(v.lane.String(), reason).Inc()
		level := slog.LevelWarn
		if v.lane == LaneAlert {
			level = slog.LevelError
		}
		o.log.Log(context.Background(), level, "outbox full: evicted an unsent message", "lane", v.lane, "reason", reason,
			"camera_id", v.camera, "topic", v.topic, "bytes", v.size)
	}
	return nil
}

// Stats returns the messages and bytes waiting.
func (o *Outbox) Stats() (messages, bytes int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.count, o.bytes
}

// Close closes the database.
func (o *Outbox) Close() error { return o.db.Close() }

// Ping checks that the outbox's database answers (the agent's watchdog
// keep-alive waits on it, so a wedged writer stops them).
func (o *Outbox) Ping(ctx context.Context) error {
	if err := o.db.PingContext(ctx); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	return nil
}
