package outbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func open(t testing.TB, path string, l Limits) *Outbox {
	t.Helper()
	o, err := Open(path, l, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return o
}

var roomy = Limits{MaxBytes: 1 << 30, MaxAge: 24 * time.Hour}

func msg(l Lane, cam, body string) Message {
	return Message{Lane: l, CameraID: cam, Topic: "t/" + l.String(), Payload: []byte(body)}
}

func TestLanesAndOrder(t *testing.T) {
	o := open(t, filepath.Join(t.TempDir(), "o.db"), roomy)
	ctx := context.Background()
	must(t, o.Put(msg(LaneSnapshot, "c1", "s1")))
	must(t, o.Put(msg(LaneAlert, "c1", "a1"), msg(LaneAlert, "c2", "b1")))
	must(t, o.Put(msg(LaneClip, "c1", "k1")))
	must(t, o.Put(msg(LaneAlert, "c1", "a2")))

	got, err := o.Pending(ctx, 10, 1<<20)
	must(t, err)
	if bodies(got) != "a1,b1,a2" {
		t.Fatalf("first batch %s, want the alerts in write order", bodies(got))
	}
	must(t, o.Ack(got...))
	got, _ = o.Pending(ctx, 10, 1<<20)
	if bodies(got) != "s1" {
		t.Fatalf("then snapshots: %s", bodies(got))
	}
	must(t, o.Ack(got...))
	got, _ = o.Pending(ctx, 10, 1<<20)
	if bodies(got) != "k1" {
		t.Fatalf("then clips: %s", bodies(got))
	}
	must(t, o.Ack(got...))
	if n, b := o.Stats(); n != 0 || b != 0 {
		t.Fatalf("left %d messages, %d bytes", n, b)
	}
}

func TestBatchRespectsByteBudget(t *testing.T) {
	o := open(t, filepath.Join(t.TempDir(), "o.db"), roomy)
	for i := range 5 {
		must(t, o.Put(msg(LaneSnapshot, "c1", strings.Repeat(strconv.Itoa(i), 100))))
	}
	got, _ := o.Pending(context.Background(), 10, 250)
	if len(got) != 2 {
		t.Fatalf("batch of %d, want 2 under a 250-byte budget", len(got))
	}
	got, _ = o.Pending(context.Background(), 10, 10)
	if len(got) != 1 {
		t.Fatalf("a message larger than the budget still goes alone, got %d", len(got))
	}
}

func TestEvictionOrderClipsSnapshotsAlerts(t *testing.T) {
	o := open(t, filepath.Join(t.TempDir(), "o.db"), Limits{MaxBytes: 1000, MaxAge: time.Hour})
	must(t, o.Put(msg(LaneAlert, "c1", strings.Repeat("a", 300))))
	must(t, o.Put(msg(LaneSnapshot, "c1", strings.Repeat("s", 300))))
	must(t, o.Put(msg(LaneClip, "c1", strings.Repeat("k", 300))))
	// 900 bytes; 300 more must push out the clip only.
	must(t, o.Put(msg(LaneAlert, "c1", strings.Repeat("b", 300))))
	if got := testutil.ToFloat64(o.evicted.WithLabelValues("clip", "bytes")); got != 1 {
		t.Fatalf("clips evicted %v, want 1", got)
	}
	// Another alert: no clips left, so the snapshot goes.
	must(t, o.Put(msg(LaneAlert, "c1", strings.Repeat("c", 300))))
	if testutil.ToFloat64(o.evicted.WithLabelValues("snapshot", "bytes")) != 1 || testutil.ToFloat64(o.evicted.WithLabelValues("alert", "bytes")) != 0 {
		t.Fatal("snapshot must go before any alert")
	}
	// And then the oldest alert.
	must(t, o.Put(msg(LaneAlert, "c1", strings.Repeat("d", 300))))
	if testutil.ToFloat64(o.evicted.WithLabelValues("alert", "bytes")) != 1 {
		t.Fatal("the oldest alert must go last")
	}
	got, _ := o.Pending(context.Background(), 10, 1<<20)
	if n, b := o.Stats(); n != 3 || b != 900 || len(got) != 3 || got[0].Payload[0] != 'b' {
		t.Fatalf("left %d msgs %d bytes, first %q", n, b, got[0].Payload[:1])
	}
}

func TestAgeEviction(t *testing.T) {
	o := open(t, filepath.Join(t.TempDir(), "o.db"), Limits{MaxBytes: 1 << 20, MaxAge: time.Hour})
	old := msg(LaneAlert, "c1", "old")
	old.CreatedAt = time.Now().Add(-2 * time.Hour)
	must(t, o.Put(old, msg(LaneAlert, "c1", "new")))
	got, _ := o.Pending(context.Background(), 10, 1<<20)
	if bodies(got) != "new" || testutil.ToFloat64(o.evicted.WithLabelValues("alert", "age")) != 1 {
		t.Fatalf("after age eviction: %s", bodies(got))
	}
}

func TestReopenKeepsMessages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "o.db")
	o, err := Open(path, roomy, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	must(t, err)
	must(t, o.Put(msg(LaneAlert, "c1", "a1"), msg(LaneSnapshot, "c1", "s1")))
	o.Close()
	o = open(t, path, roomy)
	if n, b := o.Stats(); n != 2 || b != 4 {
		t.Fatalf("reopened with %d messages, %d bytes", n, b)
	}
}

// TestSurvivesKill9 writes messages from a child process and kills it with
// SIGKILL mid-stream: every message whose Put returned must be on disk.
func TestSurvivesKill9(t *testing.T) {
	if path := os.Getenv("XL_OUTBOX_CHILD"); path != "" {
		o, err := Open(path, roomy, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
		if err != nil {
			fmt.Println("ERR", err)
			os.Exit(1)
		}
		for i := 0; ; i++ {
			m := msg(LaneAlert, "c1", fmt.Sprintf("alert-%d", i))
			if err := o.Put(m, msg(LaneSnapshot, "c1", strings.Repeat("x", 2000))); err != nil {
				fmt.Println("ERR", err)
				os.Exit(1)
			}
			fmt.Println("PUT", i)
		}
	}
	path := filepath.Join(t.TempDir(), "o.db")
	cmd := exec.Command(os.Args[0], "-test.run", "^TestSurvivesKill9$")
	cmd.Env = append(os.Environ(), "XL_OUTBOX_CHILD="+path)
	out, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	sc := bufio.NewScanner(out)
	last := -1
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "ERR") {
			t.Fatal(line)
		}
		if n, ok := strings.CutPrefix(line, "PUT "); ok {
			last, _ = strconv.Atoi(n)
			if last >= 150 {
				break
			}
		}
	}
	must(t, cmd.Process.Signal(syscall.SIGKILL))
	cmd.Wait()
	if last < 150 {
		t.Fatalf("child wrote only %d messages", last)
	}
	o := open(t, path, roomy)
	got, err := o.Pending(context.Background(), 100000, 1<<30)
	must(t, err)
	seen := map[string]bool{}
	for _, m := range got {
		seen[string(m.Payload)] = true
	}
	for i := 0; i <= last; i++ {
		if !seen[fmt.Sprintf("alert-%d", i)] {
			t.Fatalf("alert-%d was acknowledged by Put but is gone after kill -9 (last put %d, %d on disk)", i, last, len(got))
		}
	}
	t.Logf("%d alerts acknowledged before SIGKILL, %d on disk", last+1, len(got))
}

func bodies(ms []Message) string {
	var s []string
	for _, m := range ms {
		s = append(s, string(m.Payload))
	}
	return strings.Join(s, ",")
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// BenchmarkPut measures durable writes: one alert and its snapshot per
// fsync'd transaction, as the pipeline writes them.
func BenchmarkPut(b *testing.B) {
	o := open(b, filepath.Join(b.TempDir(), "o.db"), roomy)
	alert := msg(LaneAlert, "c1", strings.Repeat("a", 1500))
	snap := msg(LaneSnapshot, "c1", strings.Repeat("s", 80000))
	b.ReportAllocs()
	for b.Loop() {
		must(b, o.Put(alert, snap))
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "alerts/s")
}

func TestPing(t *testing.T) {
	o := open(t, filepath.Join(t.TempDir(), "o.db"), roomy)
	if err := o.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	o.Close()
	if err := o.Ping(t.Context()); err == nil {
		t.Fatal("a closed outbox answered")
	}
}

// capPages limits the outbox's database to its current size plus extra
// pages: past that, SQLite answers "database or disk is full", as on a
// full filesystem.
func capPages(t *testing.T, o *Outbox, extra int) {
	t.Helper()
	var pages int
	must(t, o.db.QueryRow(`PRAGMA page_count`).Scan(&pages))
	if _, err := o.db.Exec(fmt.Sprintf(`PRAGMA max_page_count = %d`, pages+extra)); err != nil {
		t.Fatal(err)
	}
}

// On a full disk the outbox keeps every alert it can by shedding evidence
// first (clips, then snapshots, oldest first), drops the evidence written
// with an alert before the alert itself, and refuses with ErrDiskFull,
// writing nothing, only when alerts alone do not fit.
func TestDiskFullShedsEvidenceBeforeAlerts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "o.db")
	o := open(t, path, roomy)
	if st, err := os.Stat(path + ".reserve"); err != nil || st.Size() != ReserveBytes {
		t.Fatalf("no reserve of %d bytes beside the outbox: %v", ReserveBytes, err)
	}
	clip := strings.Repeat("c", 64<<10)
	for i := 0; i < 4; i++ {
		must(t, o.Put(msg(LaneClip, "c1", clip)))
	}
	must(t, o.Put(msg(LaneSnapshot, "c1", strings.Repeat("s", 32<<10))))
	capPages(t, o, 2) // full now: the next sizeable write fails
	alert := strings.Repeat("a", 3000)
	refused := -1
	for i := 0; i < 1000 && refused < 0; i++ {
		if err := o.Put(msg(LaneAlert, "c1", fmt.Sprintf("%03d%s", i, alert))); err != nil {
			if !errors.Is(err, ErrDiskFull) {
				t.Fatalf("alert %d: %v, want ErrDiskFull", i, err)
			}
			refused = i
		}
	}
	if refused < 0 {
		t.Fatal("1000 alerts fitted: the page cap did not take")
	}
	// Refused only once every piece of evidence had made room.
	clips := testutil.ToFloat64(o.evicted.WithLabelValues("clip", reasonDiskFull))
	snaps := testutil.ToFloat64(o.evicted.WithLabelValues("snapshot", reasonDiskFull))
	if clips != 4 || snaps != 1 {
		t.Errorf("alert %d refused with %v of 4 clips and %v of 1 snapshot evicted", refused, clips, snaps)
	}
	if _, err := os.Stat(path + ".reserve"); !os.IsNotExist(err) {
		t.Errorf("the reserve was kept on a full disk: %v", err)
	}
	count, _ := o.Stats()
	var rows int64
	must(t, o.db.QueryRow(`SELECT count(*) FROM outbox`).Scan(&rows))
	if rows != count {
		t.Fatalf("Stats says %d messages, the table holds %d: a refused Put was counted", count, rows)
	}
	// Acknowledging (sending) makes room again.
	got, err := o.Pending(context.Background(), 5, 1<<30)
	must(t, err)
	must(t, o.Ack(got...))
	must(t, o.Put(msg(LaneAlert, "c1", "after"+alert)))
	if n := testutil.ToFloat64(o.evicted.WithLabelValues("alert", reasonDiskFull)); n != 0 {
		t.Errorf("%v alerts evicted for room, want none", n)
	}
	// The filesystem itself has room: Evict takes the reserve back.
	must(t, o.Evict(time.Now()))
	if st, err := os.Stat(path + ".reserve"); err != nil || st.Size() != ReserveBytes {
		t.Errorf("the reserve was not made again: %v", err)
	}
}

// An alert written together with its snapshot is kept without it when
// only the alert fits.
func TestDiskFullKeepsAlertWithoutItsSnapshot(t *testing.T) {
	o := open(t, filepath.Join(t.TempDir(), "o.db"), roomy)
	capPages(t, o, 3)
	alert := msg(LaneAlert, "c1", "the alert")
	snap := msg(LaneSnapshot, "c1", strings.Repeat("s", 256<<10))
	must(t, o.Put(alert, snap))
	got, err := o.Pending(context.Background(), 10, 1<<30)
	must(t, err)
	if bodies(got) != "the alert" {
		t.Fatalf("pending %q, want the alert alone", bodies(got))
	}
	must(t, o.Ack(got...))
	if got, _ = o.Pending(context.Background(), 10, 1<<30); len(got) != 0 {
		t.Fatalf("the snapshot that did not fit is queued: %d messages", len(got))
	}
	if n := testutil.ToFloat64(o.evicted.WithLabelValues("snapshot", reasonDiskFull)); n != 1 {
		t.Errorf("%v snapshots counted as evicted, want 1", n)
	}
}
