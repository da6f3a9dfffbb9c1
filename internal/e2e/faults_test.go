//go:build faults

// The fault suite (`make faults`, deploy/scripts/faults.sh): real binaries,
// real Mosquitto, PostgreSQL and SQLite, and one fault per case. Every case
// prints one "FAULT PASS|FAIL <case>" line and adds a row to the table
// printed at the end: alerts produced (the agent's journal or metrics),
// stored, lost, duplicated; incidents and orders created, duplicate orders
// (more than one per incident and agency), SLA cards fired (blue, yellow,
// red: exactly three per order) and the recovery time from the end of the
// fault to the backlog stored at central.
//
// It runs as root: it creates network namespaces, mounts a tmpfs and runs a
// private PostgreSQL cluster as the postgres user. It lives in package e2e
// (behind the build tag) to share the process helpers of the other
// end-to-end tests.
package e2e

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite"

	"github.com/xueliang/xl/internal/pgtest"
	"github.com/xueliang/xl/internal/testenv"
)

// faultRow is one line of the summary table.
type faultRow struct {
	Case                         string
	Produced, Stored, Lost, Dup  int
	Incidents, Orders, DupOrders int
	Cards                        int
	Recovery                     time.Duration // -1: not applicable
	Note                         string
	Pass                         bool
}

var faultTable struct {
	sync.Mutex
	rows []faultRow
}

// faultEnv is a duration from the environment, or def.
func faultEnv(t testing.TB, name string, def time.Duration) time.Duration {
	if s := os.Getenv(name); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("%s=%q: want a positive duration such as 30s", name, s)
		}
		return d
	}
	return def
}

// TestFaults runs every case. The partition (XL_FAULT_PARTITION, default
// 10m) runs beside the others, which run one after the other.
func TestFaults(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the fault suite needs root (network namespaces, tmpfs, a private PostgreSQL)")
	}
	bin := buildBinaries(t)
	t.Cleanup(printFaultTable)
	run := func(t *testing.T, name string, fn func(t *testing.T, bin string, row *faultRow)) {
		t.Run(name, func(t *testing.T) {
			row := &faultRow{Case: name, Recovery: -1}
			t.Cleanup(func() { // registered first: runs after the processes are stopped
				row.Pass = !t.Failed()
				verdict := "PASS"
				if !row.Pass {
					verdict = "FAIL"
				}
				fmt.Printf("FAULT %s %s: produced %d, stored %d, lost %d, duplicates %d, orders %d (duplicate %d), cards %d, recovery %s %s\n",
					verdict, name, row.Produced, row.Stored, row.Lost, row.Dup, row.Orders, row.DupOrders, row.Cards, fmtRecovery(row.Recovery), row.Note)
				faultTable.Lock()
				faultTable.rows = append(faultTable.rows, *row)
				faultTable.Unlock()
			})
			fn(t, bin, row)
		})
	}
	t.Run("group", func(t *testing.T) {
		t.Run("parallel", func(t *testing.T) {
			t.Parallel()
			run(t, "partition", faultPartition)
		})
		t.Run("serial", func(t *testing.T) {
			t.Parallel()
			run(t, "broker_restart", faultBrokerRestart)
			run(t, "agent_kill9", faultAgentKill)
			run(t, "central_kill9", faultCentralKill)
			run(t, "replica_kill9", faultReplicaKill)
			run(t, "postgres_restart", faultPostgresRestart)
			run(t, "outbox_disk_full", faultDiskFull)
			run(t, "clock_skew_+10m", func(t *testing.T, bin string, row *faultRow) { faultClockSkew(t, bin, row, 10*time.Minute) })
			run(t, "clock_skew_-2h", func(t *testing.T, bin string, row *faultRow) { faultClockSkew(t, bin, row, -2*time.Hour) })
			run(t, "camera_flap", faultCameraFlap)
		})
	})
}

func fmtRecovery(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	return d.Round(100 * time.Millisecond).String()
}

func printFaultTable() {
	faultTable.Lock()
	defer faultTable.Unlock()
	fmt.Println("| case | produced | stored | lost | duplicate alerts | incidents | orders created | duplicate orders | timers fired | recovery time | result |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range faultTable.rows {
		res := "PASS"
		if !r.Pass {
			res = "FAIL"
		}
		fmt.Printf("| %s | %d | %d | %d | %d | %d | %d | %d | %d | %s | %s |\n", r.Case, r.Produced, r.Stored, r.Lost, r.Dup,
			r.Incidents, r.Orders, r.DupOrders, r.Cards, fmtRecovery(r.Recovery), res)
	}
}

// faultCentralConfig is configs/central.yaml with a 2 s accept deadline
// (cards blue at 2 s, yellow at 3 s, red at 4 s) and a first rule that
// dispatches the suite's alert types to two agencies at once.
func faultCentralConfig(t testing.TB, work string) string {
	t.Helper()
	shipped, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "configs", "central.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(shipped), "{name: standard, accept: 5m,", "{name: standard, accept: 2s,", 1)
	const rules = "  rules:                         # tried in order; the first match wins\n"
	cfg = strings.Replace(cfg, rules, rules+`    - name: fault-suite
      match: {types: [selftest, intrusion, stream_lost, stream_restored, camera_tamper]}
      result: {lead: agri-brigade, support: [river-police], dispatch: auto}
`, 1)
	if !strings.Contains(cfg, "accept: 2s") || !strings.Contains(cfg, "fault-suite") {
		t.Fatal("configs/central.yaml: the SLA profile or the rules changed; update faultCentralConfig")
	}
	path := filepath.Join(work, "central-faults.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// tally compares what the agent put with what central stored.
func tally(row *faultRow, put map[string]string, got []stored, unseen int) (errs []string) {
	seen := map[string]bool{}
	last := map[string]string{}
	extra := 0
	for _, s := range got {
		if seen[s.AlertID] {
			row.Dup++
			continue
		}
		seen[s.AlertID] = true
		if _, ok := put[s.AlertID]; !ok {
			if extra++; extra > unseen {
				errs = append(errs, "central has alert "+s.AlertID+" that the agent never put")
			}
		}
		if prev := last[s.CameraID]; prev != "" && s.EventID < prev {
			errs = append(errs, fmt.Sprintf("camera %s: %s arrived after %s", s.CameraID, s.EventID, prev))
		}
		last[s.CameraID] = s.EventID
	}
	for id := range put {
		if !seen[id] {
			row.Lost++
		}
	}
	row.Produced, row.Stored = len(put), len(seen)
	if row.Dup > 0 {
		errs = append(errs, fmt.Sprintf("%d alerts stored twice", row.Dup))
	}
	if row.Lost > 0 {
		errs = append(errs, fmt.Sprintf("%d alerts reached the outbox but never central", row.Lost))
	}
	return errs
}

// checkAlerts waits (bounded) until central at base has every alert put,
// then fills the alert columns of row and fails the test on any loss,
// duplicate or disorder.
func checkAlerts(t *testing.T, row *faultRow, base string, put map[string]string, unseen int) {
	t.Helper()
	var got []stored
	ok := poll(90*time.Second, func() bool {
		var err error
		got, err = storedAlerts(base, "type=selftest")
		return err == nil && len(got) >= len(put)
	})
	if !ok {
		t.Errorf("central has %d of %d alerts after 90 s", len(got), len(put))
	}
	for _, e := range tally(row, put, got, unseen) {
		t.Error(e)
	}
}

// poll checks cond every 250 ms until it holds (true) or within passes.
func poll(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// recovered measures from since until central at base holds want selftest
// alerts (the backlog at the end of the fault).
func recovered(t *testing.T, base string, since time.Time, want int, within time.Duration) time.Duration {
	t.Helper()
	n := 0
	if !poll(within, func() bool {
		got, err := storedAlerts(base, "type=selftest")
		n = len(got)
		return err == nil && n >= want
	}) {
		t.Fatalf("central holds %d of the %d alerts put before the fault ended, %s after it ended", n, want, within)
	}
	return time.Since(since)
}

type orderInfo struct {
	ID         string `json:"id"`
	IncidentID string `json:"incident_id"`
	AgencyID   string `json:"agency_id"`
	Card       string `json:"card"`
}

// checkDispatch counts incidents, orders, duplicate orders and cards at
// central, waiting (bounded) until every order has reached its red card
// and then a little longer, so that a second firing would be seen. Every
// incident must have one order per agency of the rule (two), and no order
// a card level twice. wantIncidents < 0 skips the incident count.
func checkDispatch(t *testing.T, row *faultRow, base string, st storeRef, wantIncidents int) {
	t.Helper()
	var incs struct {
		Incidents []struct {
			ID string `json:"id"`
		}
	}
	var ords struct{ Orders []orderInfo }
	settled := poll(60*time.Second, func() bool {
		if getJSON(base+"/api/v1/incidents?limit=1000", &incs) != nil || getJSON(base+"/api/v1/orders?limit=1000", &ords) != nil {
			return false
		}
		if len(ords.Orders) < 2*len(incs.Incidents) || len(incs.Incidents) == 0 {
			return false
		}
		for _, o := range ords.Orders {
			if o.Card != "red" {
				return false
			}
		}
		return true
	})
	if !settled {
		t.Errorf("dispatch did not settle in 60 s: %d incidents, %d orders (want two each, all red)", len(incs.Incidents), len(ords.Orders))
	}
	time.Sleep(1500 * time.Millisecond) // a second firing of any timer would show now
	if err := getJSON(base+"/api/v1/incidents?limit=1000", &incs); err != nil {
		t.Fatal(err)
	}
	if err := getJSON(base+"/api/v1/orders?limit=1000", &ords); err != nil {
		t.Fatal(err)
	}
	row.Incidents, row.Orders = len(incs.Incidents), len(ords.Orders)
	per := map[[2]string]int{}
	for _, o := range ords.Orders {
		per[[2]string{o.IncidentID, o.AgencyID}]++
	}
	for k, n := range per {
		if n > 1 {
			row.DupOrders += n - 1
			t.Errorf("incident %s has %d orders for %s", k[0], n, k[1])
		}
	}
	if wantIncidents >= 0 && row.Incidents != wantIncidents {
		t.Errorf("%d incidents, want %d (one per camera)", row.Incidents, wantIncidents)
	}
	if row.Orders != 2*row.Incidents {
		t.Errorf("%d orders for %d incidents, want two each", row.Orders, row.Incidents)
	}
	levels, err := cardsInStore(st)
	if err != nil {
		t.Fatalf("cards in the store: %v", err)
	}
	rank := map[string]int{"blue": 1, "yellow": 2, "red": 3}
	for _, o := range ords.Orders {
		got := levels[o.ID]
		row.Cards += len(got)
		// Each level at most once, in rising order, ending red. Fewer than
		// three when central (or its store) was down across a deadline:
		// it then raises the card due now, once, not the ones it missed.
		ok := len(got) > 0 && got[len(got)-1] == "red"
		for i := 1; i < len(got) && ok; i++ {
			ok = rank[got[i]] > rank[got[i-1]]
		}
		if !ok {
			t.Errorf("order %s (%s): cards %v, want each of blue, yellow, red at most once, in order, ending red", o.ID, o.AgencyID, got)
		}
	}
}

// storeRef names a central's store for reading it directly.
type storeRef struct{ driver, dsn string }

func sqliteStore(work string) storeRef {
	return storeRef{"sqlite", "file:" + filepath.Join(work, "central.db") + "?mode=ro&_pragma=busy_timeout(10000)"}
}

// cardsInStore reads the card messages queued for agencies about their own
// orders (egress, event "card"), in the order they were raised: order ID →
// card levels.
func cardsInStore(st storeRef) (map[string][]string, error) {
	driver := st.driver
	if driver == "postgres" {
		driver = "pgx"
	}
	db, err := sql.Open(driver, st.dsn)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.Query(`SELECT order_id, payload FROM egress WHERE event = 'card' ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var id string
		var payload []byte
		if err := rows.Scan(&id, &payload); err != nil {
			return nil, err
		}
		var m struct {
			Card string `json:"card"`
		}
		if err := json.Unmarshal(payload, &m); err != nil {
			return nil, fmt.Errorf("card message of order %s: %w", id, err)
		}
		out[id] = append(out[id], m.Card)
	}
	return out, rows.Err()
}

// embeddedFaultCentral starts a central with its embedded broker and the
// fault configuration; extra environment as given.
func embeddedFaultCentral(t *testing.T, bin, work, listen string, env ...string) *centralProc {
	t.Helper()
	c := newCentral(t, bin, work, append([]string{"XL_BROKER_LISTEN=" + listen}, env...)...)
	c.cfg = faultCentralConfig(t, work)
	c.start()
	return c
}

func killAgent(a *agentRun) {
	_ = a.p.cmd.Process.Signal(syscall.SIGKILL)
	<-a.done
	<-a.p.done
	a.p.done <- nil
}

// --- broker restart --------------------------------------------------------

// faultBrokerRestart: Mosquitto (shipped configuration, persistence on) is
// stopped mid-stream for 5 s and started again; agent and central both
// reconnect by themselves.
func faultBrokerRestart(t *testing.T, bin string, row *faultRow) {
	work := t.TempDir()
	m := startMosquitto(t, work)
	c := newCentral(t, bin, work, "XL_BROKER_ENABLED=false", "XL_MQTT_URL="+m.url,
		"XL_MQTT_USERNAME=xl-central", "XL_MQTT_PASSWORD=central-test-password")
	c.cfg = faultCentralConfig(t, work)
	c.start()
	a := startSelftest(t, bin, writeAgentConfig(t, work, m.url), "agent", "--count", "400", "--cameras", "3", "--interval", "40ms")
	waitFor(t, c.p, 30*time.Second, "first alerts", func() bool { return a.puts() >= 80 })
	m.stop(t)
	time.Sleep(5 * time.Second)
	m.start(t)
	healed, backlog := time.Now(), a.puts()
	row.Recovery = recovered(t, c.base, healed, backlog, 2*time.Minute)
	waitAgentDrained(t, a, 2*time.Minute)
	checkAlerts(t, row, c.base, a.put, 0)
	checkDispatch(t, row, c.base, sqliteStore(work), 3)
	row.Note = "mosquitto down 5 s (SIGTERM, restart)"
}

// --- partition ---------------------------------------------------------------

// netns is a network namespace joined to the host by a veth pair on a /30.
type netns struct {
	name, hostIf, nsIf, hostIP, nsIP string
}

func ipCmd(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v %s", strings.Join(args, " "), err, out)
	}
}

func newNetns(t testing.TB) *netns {
	t.Helper()
	var b [3]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:2])
	// 10.213.X.Y/30, X and Y random: other tests on this machine pick theirs.
	net := fmt.Sprintf("10.213.%d.%d", b[0], int(b[2]&0x3f)*4)
	n := &netns{name: "xlf-" + id, hostIf: "xlfh" + id, nsIf: "xlfn" + id}
	parts := strings.Split(net, ".")
	last, _ := strconv.Atoi(parts[3])
	n.hostIP = fmt.Sprintf("10.213.%s.%d", parts[2], last+1)
	n.nsIP = fmt.Sprintf("10.213.%s.%d", parts[2], last+2)
	ipCmd(t, "netns", "add", n.name)
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", n.hostIf).Run() // gone already when the namespace took its peer with it
		if out, err := exec.Command("ip", "netns", "del", n.name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v %s", n.name, err, out)
		}
	})
	ipCmd(t, "link", "add", n.hostIf, "type", "veth", "peer", "name", n.nsIf)
	ipCmd(t, "link", "set", n.nsIf, "netns", n.name)
	ipCmd(t, "addr", "add", n.hostIP+"/30", "dev", n.hostIf)
	ipCmd(t, "link", "set", n.hostIf, "up")
	ipCmd(t, "netns", "exec", n.name, "ip", "addr", "add", n.nsIP+"/30", "dev", n.nsIf)
	ipCmd(t, "netns", "exec", n.name, "ip", "link", "set", n.nsIf, "up")
	ipCmd(t, "netns", "exec", n.name, "ip", "link", "set", "lo", "up")
	return n
}

// cut takes the host end of the veth down. The agent's end keeps its
// address and route: what it sends is silently dropped (the peer is down),
// nothing answers, no error comes back, as on a dead uplink. (This kernel
// has neither netem nor tc classifiers, and iptables/nft are not needed.)
func (n *netns) cut(t testing.TB)  { ipCmd(t, "link", "set", n.hostIf, "down") }
func (n *netns) heal(t testing.TB) { ipCmd(t, "link", "set", n.hostIf, "up") }

// faultPartition runs the agent in its own network namespace, cuts its
// link for XL_FAULT_PARTITION (default 10m) while it keeps raising alerts,
// heals it and checks that everything arrives once.
func faultPartition(t *testing.T, bin string, row *faultRow) {
	dur := faultEnv(t, "XL_FAULT_PARTITION", 10*time.Minute)
	n := newNetns(t)
	work := t.TempDir()
	listen := fmt.Sprintf("%s:%d", n.hostIP, freePort(t))
	c := embeddedFaultCentral(t, bin, work, listen)
	const interval = 500 * time.Millisecond
	count := int((dur + 40*time.Second) / interval)
	a := startSelftestVia(t, []string{"ip", "netns", "exec", n.name}, bin, writeAgentConfig(t, work, "tcp://"+listen), "agent",
		"--count", strconv.Itoa(count), "--cameras", "2", "--interval", interval.String())
	waitFor(t, c.p, 30*time.Second, "first alerts stored", func() bool {
		got, err := c.selftestAlerts()
		return err == nil && len(got) >= 20
	})
	n.cut(t)
	before := a.puts()
	select {
	case <-time.After(dur):
	case <-a.done:
		t.Fatalf("the agent exited during the partition:\n%s", tail(a.p.out.String(), 2000))
	}
	during := a.puts() - before
	stuck, _ := c.selftestAlerts()
	n.heal(t)
	healed, backlog := time.Now(), a.puts()
	if len(stuck) >= backlog {
		t.Errorf("central has %d alerts of %d at the end of the partition: the link was not cut", len(stuck), backlog)
	}
	row.Recovery = recovered(t, c.base, healed, backlog, 3*time.Minute)
	waitAgentDrained(t, a, 3*time.Minute)
	checkAlerts(t, row, c.base, a.put, 0)
	checkDispatch(t, row, c.base, sqliteStore(work), 2)
	row.Note = fmt.Sprintf("link down %s (host end of the veth), %d alerts raised during it", dur, during)
}

// --- SIGKILL -----------------------------------------------------------------

// faultAgentKill: the agent is killed mid-publish (central up, alerts
// flowing); a new start drains its outbox.
func faultAgentKill(t *testing.T, bin string, row *faultRow) {
	work := t.TempDir()
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	c := embeddedFaultCentral(t, bin, work, listen)
	cfg := writeAgentConfig(t, work, "tcp://"+listen)
	a := startSelftest(t, bin, cfg, "agent#1", "--count", "100000", "--cameras", "3", "--interval", "5ms")
	waitFor(t, c.p, 30*time.Second, "alerts flowing", func() bool {
		got, err := c.selftestAlerts()
		return err == nil && len(got) >= 150
	})
	killAgent(a)
	restarted, backlog := time.Now(), a.puts()
	b := startSelftest(t, bin, cfg, "agent#2", "--count", "0")
	row.Recovery = recovered(t, c.base, restarted, backlog, time.Minute)
	waitAgentDrained(t, b, time.Minute)
	// An alert committed but not yet printed when the kill came is
	// delivered without the test having seen it: one may be unseen.
	checkAlerts(t, row, c.base, a.put, 1)
	checkDispatch(t, row, c.base, sqliteStore(work), 3)
	row.Note = "SIGKILL while publishing every 5 ms"
}

// faultCentralKill: central (SQLite, embedded broker) is killed twice
// mid-stream and started again.
func faultCentralKill(t *testing.T, bin string, row *faultRow) {
	work := t.TempDir()
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	c := embeddedFaultCentral(t, bin, work, listen)
	a := startSelftest(t, bin, writeAgentConfig(t, work, "tcp://"+listen), "agent", "--count", "600", "--cameras", "3", "--interval", "5ms")
	var restarted time.Time
	var backlog int
	for i := 0; i < 2; i++ {
		waitFor(t, c.p, 30*time.Second, "alerts stored", func() bool {
			got, err := c.selftestAlerts()
			return err == nil && len(got) >= 150*(i+1)
		})
		c.kill(syscall.SIGKILL)
		c.start()
		restarted, backlog = time.Now(), a.puts()
	}
	row.Recovery = recovered(t, c.base, restarted, backlog, 2*time.Minute)
	waitAgentDrained(t, a, 2*time.Minute)
	checkAlerts(t, row, c.base, a.put, 0)
	checkDispatch(t, row, c.base, sqliteStore(work), 3)
	row.Note = "SQLite store, SIGKILL twice"
}

// replicaPair starts two central replicas on the PostgreSQL at dsn behind
// the Mosquitto m, sharing the intake.
func replicaPair(t *testing.T, bin, work, dsn string, m *mosquitto) []*replica {
	t.Helper()
	return startReplicas(t, bin, faultCentralConfig(t, work), dsn, m, "a", "b")
}

// faultReplicaKill: one of two replicas on PostgreSQL is killed mid-stream
// and started again 3 s later; the other keeps storing and firing timers.
func faultReplicaKill(t *testing.T, bin string, row *faultRow) {
	work := t.TempDir()
	m := startMosquitto(t, work)
	dsn := pgtest.Schema(t)
	reps := replicaPair(t, bin, work, dsn, m)
	a, b := reps[0], reps[1]
	ag := startSelftest(t, bin, writeAgentConfig(t, work, m.url), "agent", "--count", "600", "--cameras", "3", "--interval", "10ms")
	waitFor(t, b.p, 30*time.Second, "alerts stored", func() bool {
		got, err := storedAlerts(b.base, "type=selftest")
		return err == nil && len(got) >= 150
	})
	a.kill(t)
	time.Sleep(3 * time.Second)
	a.start(t, bin)
	restarted, backlog := time.Now(), ag.puts()
	row.Recovery = recovered(t, b.base, restarted, backlog, 2*time.Minute)
	waitAgentDrained(t, ag, 2*time.Minute)
	checkAlerts(t, row, a.base, ag.put, 0)
	checkDispatch(t, row, b.base, storeRef{"postgres", dsn}, 3)
	row.Note = "2 replicas on PostgreSQL, Mosquitto shared subscription"
}

// --- PostgreSQL restart -----------------------------------------------------

// privatePG is a PostgreSQL cluster of the test's own, run as the postgres
// user on a free loopback port (the machine's shared server is left alone).
type privatePG struct {
	dir, port, ctl string
}

func pgBin(t testing.TB) string {
	t.Helper()
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	if len(m) == 0 {
		testenv.Missing(t, "pg_ctl not found under /usr/lib/postgresql (Debian package postgresql)")
	}
	sort.Strings(m)
	return filepath.Dir(m[len(m)-1])
}

func asPostgres(args ...string) *exec.Cmd {
	return exec.Command("runuser", append([]string{"-u", "postgres", "--"}, args...)...)
}

func startPrivatePG(t testing.TB) *privatePG {
	t.Helper()
	binDir := pgBin(t)
	// Not t.TempDir: the postgres user must be able to reach it.
	dir, err := os.MkdirTemp("", "xl-faults-pg-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pg := &privatePG{dir: filepath.Join(dir, "data"), port: strconv.Itoa(freePort(t)), ctl: filepath.Join(binDir, "pg_ctl")}
	if out, err := exec.Command("chown", "postgres:", dir).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v %s", err, out)
	}
	t.Cleanup(func() {
		_ = asPostgres(pg.ctl, "-D", pg.dir, "stop", "-m", "immediate").Run()
		_ = os.RemoveAll(dir)
	})
	if out, err := asPostgres(filepath.Join(binDir, "initdb"), "-D", pg.dir, "-A", "trust", "-U", "postgres", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v %s", err, out)
	}
	pg.start(t)
	return pg
}

func (pg *privatePG) start(t testing.TB) {
	t.Helper()
	opts := fmt.Sprintf("-p %s -k %s -c listen_addresses=127.0.0.1 -c fsync=on", pg.port, filepath.Dir(pg.dir))
	if out, err := asPostgres(pg.ctl, "-D", pg.dir, "-o", opts, "-l", filepath.Join(filepath.Dir(pg.dir), "log"), "-w", "start").CombinedOutput(); err != nil {
		t.Fatalf("pg_ctl start: %v %s", err, out)
	}
}

// crash stops the server the way a crash does (no shutdown checkpoint).
func (pg *privatePG) crash(t testing.TB) {
	t.Helper()
	if out, err := asPostgres(pg.ctl, "-D", pg.dir, "-w", "stop", "-m", "immediate").CombinedOutput(); err != nil {
		t.Fatalf("pg_ctl stop: %v %s", err, out)
	}
}

func (pg *privatePG) dsn() string {
	return "postgres://postgres@127.0.0.1:" + pg.port + "/postgres?sslmode=disable"
}

// faultPostgresRestart: the store of two replicas (a private PostgreSQL
// cluster) goes down hard mid-stream for 5 s and comes back.
func faultPostgresRestart(t *testing.T, bin string, row *faultRow) {
	work := t.TempDir()
	pg := startPrivatePG(t)
	m := startMosquitto(t, work)
	reps := replicaPair(t, bin, work, pg.dsn(), m)
	a := reps[0]
	ag := startSelftest(t, bin, writeAgentConfig(t, work, m.url), "agent", "--count", "600", "--cameras", "3", "--interval", "10ms")
	waitFor(t, a.p, 30*time.Second, "alerts stored", func() bool {
		got, err := storedAlerts(a.base, "type=selftest")
		return err == nil && len(got) >= 150
	})
	pg.crash(t)
	time.Sleep(5 * time.Second)
	pg.start(t)
	restarted, backlog := time.Now(), ag.puts()
	row.Recovery = recovered(t, a.base, restarted, backlog, 2*time.Minute)
	waitAgentDrained(t, ag, 2*time.Minute)
	checkAlerts(t, row, a.base, ag.put, 0)
	checkDispatch(t, row, a.base, storeRef{"postgres", pg.dsn()}, 3)
	row.Note = "private cluster, pg_ctl stop -m immediate, 5 s down, 2 replicas"
}

// --- disk full -----------------------------------------------------------------

// fill writes to dir/filler until the filesystem is full.
func fill(t testing.TB, dir string) int64 {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	var n int64
	for {
		w, err := f.Write(buf)
		n += int64(w)
		if err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filler: %v", err)
			}
			return n
		}
	}
}

// faultDiskFull puts the agent's outbox on a 16 MiB tmpfs and gives every
// alert a 32 KiB snapshot. Central goes down so that the outbox grows, then
// the filesystem is filled to the last byte: the agent must keep writing
// alerts, shedding queued snapshots to make room (outbox.Put), and report
// nothing it did not write. Then space is freed, central comes back, and
// every alert the agent reported is stored once.
func faultDiskFull(t *testing.T, bin string, row *faultRow) {
	work := t.TempDir()
	mnt := filepath.Join(work, "outbox")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m", "xl-faults", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount: %v %s", err, out)
		}
	})
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	c := embeddedFaultCentral(t, bin, work, listen)
	cfgPath := filepath.Join(work, "agent.yaml")
	body := fmt.Sprintf(selftestConfig, "tcp://"+listen, filepath.Join(mnt, "outbox.db"))
	if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startSelftest(t, bin, cfgPath, "agent#1", "--count", "100000", "--cameras", "3", "--interval", "5ms",
		"--snapshot-bytes", "32768")
	waitFor(t, c.p, 30*time.Second, "alerts flowing", func() bool {
		got, err := c.selftestAlerts()
		return err == nil && len(got) >= 50
	})
	c.kill(syscall.SIGTERM)
	waitFor(t, a.p, 30*time.Second, "a backlog", func() bool { return a.puts() >= 150 })
	filled := fill(t, mnt)
	atFill := a.puts()
	// The disk is full: the agent goes on, alerts only, shedding snapshots.
	waitFor(t, a.p, 60*time.Second, "200 alerts written on the full disk", func() bool { return a.puts() >= atFill+200 })
	shed := strings.Count(a.p.out.String(), "reason=disk_full")
	if shed == 0 {
		t.Errorf("the agent wrote alerts on a full disk without shedding a snapshot (was the disk full?)")
	}
	killAgent(a)
	if err := os.Remove(filepath.Join(mnt, "filler")); err != nil {
		t.Fatal(err)
	}
	c.start()
	freed, backlog := time.Now(), a.puts()
	b := startSelftest(t, bin, cfgPath, "agent#2", "--count", "0")
	row.Recovery = recovered(t, c.base, freed, backlog, 2*time.Minute)
	waitAgentDrained(t, b, 2*time.Minute)
	checkAlerts(t, row, c.base, a.put, 1)
	checkDispatch(t, row, c.base, sqliteStore(work), 3)
	row.Note = fmt.Sprintf("16 MiB tmpfs filled (+%d KiB) at %d alerts; %d more written on the full disk, %d snapshots shed",
		filled>>10, atFill, a.puts()-atFill, shed)
}

// --- clock skew ----------------------------------------------------------------

// faultClockSkew: the agent's clock is off by skew (selftest --clock-offset
// stamps every timestamp with it). Central accepts alerts up to
// intake.max_future_skew ahead of its clock (15m here, the default 5m
// would reject a box 10 minutes ahead, by design); everything must be
// stored once, in order per camera, and grouped, dispatched and timed on
// central's clock.
func faultClockSkew(t *testing.T, bin string, row *faultRow, skew time.Duration) {
	work := t.TempDir()
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	c := embeddedFaultCentral(t, bin, work, listen, "XL_INTAKE_MAX_FUTURE_SKEW=15m")
	a := startSelftest(t, bin, writeAgentConfig(t, work, "tcp://"+listen), "agent",
		"--count", "300", "--cameras", "3", "--interval", "10ms", "--clock-offset", skew.String())
	waitAgentDrained(t, a, 2*time.Minute)
	checkAlerts(t, row, c.base, a.put, 0)
	checkDispatch(t, row, c.base, sqliteStore(work), 3)
	if n := metricValueAt(t, c.base, `xl_central_messages_rejected_total{kind="alerts",reason="future_timestamp"}`); n != 0 {
		t.Errorf("%v alerts rejected as from the future", n)
	}
	row.Note = fmt.Sprintf("agent clock %+v, intake.max_future_skew 15m", skew)
}

// metricValueAt is the value of the series named exactly series on base's
// /metrics (0 when absent).
func metricValueAt(t *testing.T, base, series string) float64 {
	t.Helper()
	f, err := metricAt(base, series)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// metricAt is metricValueAt for polling: errors are returned.
func metricAt(base, series string) (float64, error) {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	v := metricLine(string(body), series)
	if v == "" {
		return 0, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", series, v, err)
	}
	return f, nil
}

// --- camera flapping -----------------------------------------------------------

// faultCameraFlap: a real `xl-agent run` watches an xl-camsim camera that
// is stopped and started every 5 s for XL_FAULT_FLAP (default 60s). The
// agent must survive, and every alert it wrote to its outbox
// (xl_agent_outbox_written_total{lane="alert"}) must be stored once.
func faultCameraFlap(t *testing.T, bin string, row *faultRow) {
	flapFor := faultEnv(t, "XL_FAULT_FLAP", 60*time.Second)
	video := testenv.Video(t)
	work := t.TempDir()
	rtsp, broker, agentPort, control := freePort(t), freePort(t), freePort(t), freePort(t)
	start(t, "xl-camsim", nil, filepath.Join(bin, "xl-camsim"), "--listen", fmt.Sprintf("127.0.0.1:%d", rtsp),
		"--camera", "cam-e2e="+video, "--cache-dir", filepath.Join(work, "cache"), "--log-format", "text",
		"--control", fmt.Sprintf("127.0.0.1:%d", control))
	c := embeddedFaultCentral(t, bin, work, fmt.Sprintf("127.0.0.1:%d", broker))
	cfgPath := filepath.Join(work, "agent.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(agentConfig, broker, agentPort, filepath.Join(work, "outbox.db"), rtsp, rtsp)), 0o600); err != nil {
		t.Fatal(err)
	}
	agent := start(t, "xl-agent", nil, filepath.Join(bin, "xl-agent"), "run", "--config", cfgPath)
	agentMetrics := fmt.Sprintf("http://127.0.0.1:%d", agentPort)
	streamUp := func() bool {
		v, err := metricAt(agentMetrics, `xl_agent_stream_up{camera_id="cam-e2e"}`)
		return err == nil && v == 1
	}
	waitFor(t, agent, 90*time.Second, "the camera streaming", streamUp)
	fault := func(method string) {
		u := fmt.Sprintf("http://127.0.0.1:%d/cameras/cam-e2e/fault", control)
		if method == "POST" {
			u += "?kind=stop"
		}
		req, _ := http.NewRequest(method, u, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("camsim control: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("camsim control %s: %s", method, resp.Status)
		}
	}
	flaps := 0
	for end := time.Now().Add(flapFor); time.Now().Before(end); flaps++ {
		fault("POST")
		time.Sleep(5 * time.Second)
		fault("DELETE")
		time.Sleep(5 * time.Second)
		select {
		case err := <-agent.done:
			agent.done <- err
			t.Fatalf("the agent exited while the camera flapped: %v", err)
		default:
		}
	}
	healed := time.Now()
	// Back for good: the stream comes back and the outbox empties.
	waitFor(t, agent, 60*time.Second, "the stream up and the outbox empty", func() bool {
		n, err := metricAt(agentMetrics, "xl_agent_outbox_messages")
		return streamUp() && err == nil && n == 0
	})
	// The stream coming back raises alerts of its own (stream_lost's end,
	// stream_restored): settled is when the agent's outbox is empty and
	// central holds as many alerts as the agent wrote, twice in a row.
	var produced int
	var got []alertView
	same := 0
	ok := poll(60*time.Second, func() bool {
		w, err1 := metricAt(agentMetrics, `xl_agent_outbox_written_total{lane="alert"}`)
		n, err2 := metricAt(agentMetrics, "xl_agent_outbox_messages")
		var err3 error
		got, err3 = allAlertsOf(c.base, "cam-e2e")
		produced = int(w)
		if err1 != nil || err2 != nil || err3 != nil || n != 0 || len(got) != produced {
			same = 0
			return false
		}
		same++
		return same >= 2
	})
	evicted := metricValueAt(t, agentMetrics, `xl_agent_outbox_evicted_total{lane="alert",reason="bytes"}`) +
		metricValueAt(t, agentMetrics, `xl_agent_outbox_evicted_total{lane="alert",reason="age"}`)
	row.Recovery = time.Since(healed)
	seen := map[string]bool{}
	types := map[string]int{}
	for _, a := range got {
		if seen[a.AlertID] {
			row.Dup++
		}
		seen[a.AlertID] = true
		types[a.Type]++
	}
	row.Produced, row.Stored = produced, len(seen)
	if !ok || len(seen) != produced {
		row.Lost = max(produced-len(seen), 0)
		t.Errorf("agent wrote %d alerts to its outbox, central stored %d", produced, len(seen))
	}
	if row.Dup > 0 {
		t.Errorf("%d alerts stored twice", row.Dup)
	}
	if evicted != 0 {
		t.Errorf("the agent evicted %v alerts", evicted)
	}
	if types["stream_lost"] == 0 {
		t.Errorf("no stream_lost alert in %d flaps: %v", flaps, types)
	}
	checkDispatch(t, row, c.base, sqliteStore(work), -1)
	row.Note = fmt.Sprintf("%d flaps (stop 5 s, start 5 s); alerts by type %v", flaps, types)
}

// allAlertsOf lists every alert of a camera at central.
func allAlertsOf(base, camera string) ([]alertView, error) {
	var all []alertView
	before := ""
	for {
		var page struct {
			Alerts []alertView
			Next   string
		}
		if err := getJSON(base+"/api/v1/alerts?camera_id="+camera+"&limit=1000"+before, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Alerts...)
		if page.Next == "" {
			return all, nil
		}
		before = "&before=" + page.Next
	}
}
