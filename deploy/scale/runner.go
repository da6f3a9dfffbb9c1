package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/xueliang/xl/internal/loadgen"
)

const (
	agentPassword   = "scale-agent-password"
	centralPassword = "scale-central-password"
	warmup          = 15 * time.Second // after the fleet connected, before the window
	tailGap         = 5 * time.Second  // window ends this long before the traffic
)

type runner struct {
	bin, work, dsn string
	passwd, acl    string
}

// prepare writes Mosquitto's password file (xl-central and one account per
// agent, hashed by mosquitto_passwd) and ACL.
func (r *runner) prepare(agents int) error {
	for _, tool := range []string{"mosquitto", "mosquitto_passwd"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not installed (make deps): %w", tool, err)
		}
	}
	r.passwd = filepath.Join(r.work, "xl.passwd")
	var b strings.Builder
	fmt.Fprintf(&b, "xl-central:%s\n", centralPassword)
	for i := range agents {
		fmt.Fprintf(&b, "%s:%s\n", loadgen.AgentID("lg", i), agentPassword)
	}
	if err := os.WriteFile(r.passwd, []byte(b.String()), 0o600); err != nil {
		return err
	}
	t := time.Now()
	if out, err := exec.Command("mosquitto_passwd", "-U", r.passwd).CombinedOutput(); err != nil {
		return fmt.Errorf("mosquitto_passwd -U: %v: %s", err, out)
	}
	fmt.Printf("scale: %d broker accounts hashed in %s\n", agents+1, time.Since(t).Round(time.Millisecond))
	root, err := repoRoot()
	if err != nil {
		return err
	}
	r.acl = filepath.Join(root, "deploy", "mosquitto", "xl.acl")
	return nil
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// proc is a child process with its output in a log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan error
}

func (r *runner) start(name string, env []string, stdout io.Writer, args ...string) (*proc, error) {
	p := &proc{name: name, log: filepath.Join(r.work, name+".log"), done: make(chan error, 1)}
	f, err := os.Create(p.log)
	if err != nil {
		return nil, err
	}
	p.cmd = exec.Command(args[0], args[1:]...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = f
	p.cmd.Stdout = f
	if stdout != nil {
		p.cmd.Stdout = stdout
	}
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	go func() { p.done <- p.cmd.Wait(); f.Close() }() // owned: stop or wait collects it
	return p, nil
}

// stop sends SIGTERM and waits (SIGKILL after 30 s).
func (p *proc) stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.cmd.Process = nil
}

func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	return string(b)
}

func waitUntil(ctx context.Context, timeout time.Duration, what string, p *proc, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if p != nil {
			select {
			case err := <-p.done:
				p.done <- err
				return fmt.Errorf("%s exited while waiting for %s: %v\n%s", p.name, what, err, p.tail())
			default:
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return nil
}

func (r *runner) mosquitto(ctx context.Context, name string) (*proc, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	dir := filepath.Join(r.work, name+"-db") + "/"
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", err
	}
	// deploy/mosquitto/mosquitto.conf with this run's files, no connection
	// limit and a loopback listener.
	conf := fmt.Sprintf(`per_listener_settings false
allow_anonymous false
password_file %s
acl_file %s
listener %d 127.0.0.1
max_connections -1
persistence true
persistence_location %s
autosave_interval 10
max_packet_size 16777216
max_queued_messages 200000
max_inflight_messages 100
user root
`, r.passwd, r.acl, port, dir)
	path := filepath.Join(r.work, name+".conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return nil, "", err
	}
	p, err := r.start(name, nil, nil, "mosquitto", "-c", path)
	if err != nil {
		return nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	err = waitUntil(ctx, 15*time.Second, "mosquitto listening", p, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return p, "tcp://" + addr, err
}

// schema creates a fresh schema and returns the DSN selecting it, tagged
// with an application_name so that its backends can be found, and a
// function dropping it.
func (r *runner) schema(ctx context.Context) (dsn, app string, drop func(), err error) {
	conn, err := pgx.Connect(ctx, r.dsn)
	if err != nil {
		return "", "", nil, fmt.Errorf("PostgreSQL not reachable (deploy/scripts/postgres.sh): %w", err)
	}
	defer conn.Close(context.Background())
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "xl_scale_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+name); err != nil {
		return "", "", nil, err
	}
	u, err := url.Parse(r.dsn)
	if err != nil {
		return "", "", nil, err
	}
	q := u.Query()
	q.Set("search_path", name)
	q.Set("application_name", name)
	u.RawQuery = q.Encode()
	drop = func() {
		c, err := pgx.Connect(context.Background(), r.dsn)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		_, _ = c.Exec(context.Background(), "DROP SCHEMA "+name+" CASCADE")
	}
	return u.String(), name, drop, nil
}

type central struct {
	p       *proc
	metrics string
}

func (r *runner) step(ctx context.Context, s step) (res result, err error) {
	res = result{Step: s.name, Cameras: s.cameras, Agents: agentsFor(s.cameras), Replicas: s.replicas, Rate: s.rate, LoadBefore: loadavg()}
	cfg := filepath.Join(r.work, "central.yaml")
	if err := os.WriteFile(cfg, []byte(centralConfig()), 0o600); err != nil {
		return res, err
	}
	mq, brokerURL, err := r.mosquitto(ctx, "mosquitto-"+slug(s.name))
	defer mq.stop()
	if err != nil {
		return res, err
	}
	dsn, app, drop, err := r.schema(ctx)
	if err != nil {
		return res, err
	}
	defer drop()
	var centrals []*central
	defer func() {
		for _, c := range centrals {
			c.p.stop()
		}
	}()
	for i := range s.replicas {
		port, err := freePort()
		if err != nil {
			return res, err
		}
		c := &central{metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", port)}
		c.p, err = r.start(fmt.Sprintf("central-%s-%d", slug(s.name), i), []string{
			fmt.Sprintf("XL_HTTP_ADDR=127.0.0.1:%d", port), "XL_BROKER_ENABLED=false", "XL_MQTT_URL=" + brokerURL,
			"XL_MQTT_USERNAME=xl-central", "XL_MQTT_PASSWORD=" + centralPassword, fmt.Sprintf("XL_MQTT_CLIENT_ID=xl-central-%d", i),
			"XL_INTAKE_SHARE_GROUP=xl-central", "XL_STORE_DRIVER=postgres", "XL_STORE_DSN=" + dsn, "XL_LOG_FORMAT=text",
		}, nil, filepath.Join(r.bin, "xl-central"), "serve", "--config", cfg)
		if err != nil {
			return res, err
		}
		centrals = append(centrals, c)
		ready := strings.TrimSuffix(c.metrics, "/metrics") + "/readyz"
		if err := waitUntil(ctx, 60*time.Second, c.p.name+" ready", c.p, func() bool { return httpOK(ready) }); err != nil {
			return res, err
		}
	}

	lgPort, err := freePort()
	if err != nil {
		return res, err
	}
	lgMetrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", lgPort)
	summary := &strings.Builder{}
	lg, err := r.start("loadgen-"+slug(s.name), []string{"XL_LOADGEN_PASSWORD=" + agentPassword}, &syncWriter{b: summary},
		filepath.Join(r.bin, "xl-loadgen"), "--broker", brokerURL, "--agents", strconv.Itoa(res.Agents),
		"--cameras-per-agent", strconv.Itoa(camerasPerAgent), "--rate", s.rate, "--duration", s.duration.String(),
		"--seed", "2026", "--ramp", "1000", "--evidence", "0.05", "--status-interval", env("XL_SCALE_STATUS_INTERVAL", "30s"), "--metrics", fmt.Sprintf("127.0.0.1:%d", lgPort), "--log-level", "warn")
	if err != nil {
		return res, err
	}
	defer lg.stop()
	connectStart := time.Now()
	if err := waitUntil(ctx, 5*time.Minute, "the fleet connected", lg, func() bool {
		m, err := scrape(lgMetrics)
		return err == nil && m.value("xl_loadgen_alerts_scheduled_total") > 0
	}); err != nil {
		return res, err
	}
	trafficStart := time.Now()
	res.ConnectSeconds = trafficStart.Sub(connectStart).Seconds()
	sleep(ctx, warmup)

	// The window.
	pids := func() map[string][]int {
		m := map[string][]int{"mosquitto": {mq.cmd.Process.Pid}, "loadgen": {lg.cmd.Process.Pid}}
		for i, c := range centrals {
			m[fmt.Sprintf("central-%d", i)] = []int{c.p.cmd.Process.Pid}
		}
		m["postgres"] = backends(ctx, r.dsn, app)
		return m
	}
	p1 := pids()
	cpu1 := cpuTicks(p1)
	t1 := time.Now()
	lg1, _ := scrape(lgMetrics)
	c1 := scrapeAll(centrals)
	rss := map[string]float64{}
	end := trafficStart.Add(s.duration - tailGap)
	for time.Now().Before(end) && ctx.Err() == nil {
		for k, v := range rssMiB(p1) {
			rss[k] = max(rss[k], v)
		}
		sleep(ctx, min(5*time.Second, time.Until(end)))
	}
	cpu2 := cpuTicks(p1)
	t2 := time.Now()
	lg2, _ := scrape(lgMetrics)
	c2 := scrapeAll(centrals)
	dt := t2.Sub(t1).Seconds()
	res.WindowSeconds = dt
	res.CPU = map[string]float64{}
	for k := range p1 {
		res.CPU[k] = float64(cpu2[k]-cpu1[k]) / 100 / dt
	}
	res.RSSMiB = rss
	res.PostgresBackends = len(p1["postgres"])
	res.Held = lg2.value("xl_loadgen_connections_held")
	for _, m := range c2 {
		res.AgentsOnline = max(res.AgentsOnline, m.value("xl_central_agents_online"))
	}
	res.Offered = (lg2.value("xl_loadgen_alerts_sent_total") - lg1.value("xl_loadgen_alerts_sent_total")) / dt
	res.Dropped = lg2.value("xl_loadgen_alerts_dropped_total")
	if err := r.dbStats(ctx, dsn, t1, t2, &res); err != nil {
		return res, err
	}
	res.DispatchP50, res.DispatchP99 = histQuantiles(c1, c2, "xl_central_alert_detect_to_dispatched_seconds")
	res.StoredHistP50, res.StoredHistP99 = histQuantiles(c1, c2, "xl_central_alert_detect_to_stored_seconds")
	res.LoadAfter = loadavg()

	if err := waitUntil(ctx, s.duration+2*time.Minute, "xl-loadgen to finish", nil, func() bool {
		select {
		case err := <-lg.done:
			lg.done <- err
			return true
		default:
			return false
		}
	}); err != nil {
		return res, err
	}
	lg.cmd.Process = nil
	for _, line := range strings.Split(summary.String(), "\n") {
		if j, ok := strings.CutPrefix(line, "SUMMARY "); ok {
			_ = json.Unmarshal([]byte(j), &res.Loadgen)
		}
	}
	return res, nil
}

func slug(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(s))
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

type syncWriter struct {
	b *strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) { return w.b.Write(p) } // only the child's copy goroutine writes

func httpOK(u string) bool {
	resp, err := http.Get(u)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

// dbStats reads the window's stored alerts and their detect → stored
// latency from the alerts table (nanosecond timestamps), and the dispatch
// backlog at its end.
func (r *runner) dbStats(ctx context.Context, dsn string, t1, t2 time.Time, res *result) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var n int64
	var p50, p99 *float64
	err = conn.QueryRow(ctx, `SELECT count(*),
		percentile_cont(0.5) WITHIN GROUP (ORDER BY received_at - detected_at) / 1e6,
		percentile_cont(0.99) WITHIN GROUP (ORDER BY received_at - detected_at) / 1e6
		FROM alerts WHERE received_at >= $1 AND received_at < $2`, t1.UnixNano(), t2.UnixNano()).Scan(&n, &p50, &p99)
	if err != nil {
		return fmt.Errorf("alerts in the window: %w", err)
	}
	res.Stored = float64(n) / t2.Sub(t1).Seconds()
	if p50 != nil {
		res.StoredP50, res.StoredP99 = *p50, *p99
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM dispatch_queue`).Scan(&res.DispatchBacklog); err != nil {
		return fmt.Errorf("dispatch queue: %w", err)
	}
	var total, incidents, orders int64
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM alerts), (SELECT count(*) FROM incidents), (SELECT count(*) FROM orders)`).
		Scan(&total, &incidents, &orders); err != nil {
		return err
	}
	res.AlertsTotal, res.Incidents, res.Orders = total, incidents, orders
	return nil
}

// backends are the PIDs of the PostgreSQL backends serving this step's
// centrals (their application_name is the schema's name).
func backends(ctx context.Context, dsn, app string) []int {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE application_name = $1`, app)
	if err != nil {
		return nil
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var pid int
		if rows.Scan(&pid) == nil {
			out = append(out, pid)
		}
	}
	return out
}

// cpuTicks sums utime+stime (clock ticks) of each component's processes.
func cpuTicks(pids map[string][]int) map[string]int64 {
	out := map[string]int64{}
	for k, ps := range pids {
		for _, pid := range ps {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if err != nil {
				continue
			}
			s := string(b)
			f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
			if len(f) > 12 {
				u, _ := strconv.ParseInt(f[11], 10, 64)
				st, _ := strconv.ParseInt(f[12], 10, 64)
				out[k] += u + st
			}
		}
	}
	return out
}

// rssMiB sums the proportional set size (Pss) of each component's
// processes: memory shared by several (PostgreSQL's shared buffers) counts
// once in the sum, not once per backend.
func rssMiB(pids map[string][]int) map[string]float64 {
	out := map[string]float64{}
	for k, ps := range pids {
		for _, pid := range ps {
			f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
			if err != nil {
				continue
			}
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if v, ok := strings.CutPrefix(sc.Text(), "Pss:"); ok {
					kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
					out[k] += kb / 1024
				}
			}
			f.Close()
		}
	}
	return out
}

// metrics is a Prometheus text exposition: series (name with labels) → value.
type metrics map[string]float64

func scrape(u string) (metrics, error) {
	resp, err := http.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	m := metrics{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			m[line[:i]] = v
		}
	}
	return m, sc.Err()
}

func (m metrics) value(series string) float64 { return m[series] }

func scrapeAll(cs []*central) []metrics {
	var out []metrics
	for _, c := range cs {
		m, err := scrape(c.metrics)
		if err != nil {
			m = metrics{}
		}
		out = append(out, m)
	}
	return out
}

// histQuantiles are p50 and p99 in milliseconds of a histogram's
// observations between two scrapes, summed over the replicas, by linear
// interpolation inside the bucket (as histogram_quantile does).
func histQuantiles(before, after []metrics, name string) (p50, p99 float64) {
	type bucket struct{ le, n float64 }
	sum := map[float64]float64{}
	for i := range after {
		for k, v := range after[i] {
			le, ok := strings.CutPrefix(k, name+`_bucket{le="`)
			if !ok {
				continue
			}
			le = strings.TrimSuffix(le, `"}`)
			x, err := strconv.ParseFloat(le, 64)
			if le == "+Inf" {
				x, err = math.Inf(1), nil
			}
			if err != nil {
				continue
			}
			sum[x] += v - before[i][k]
		}
	}
	var bs []bucket
	for le, n := range sum {
		bs = append(bs, bucket{le, n})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	if len(bs) == 0 || bs[len(bs)-1].n == 0 {
		return -1, -1 // no observations
	}
	q := func(p float64) float64 {
		total := bs[len(bs)-1].n
		rank := p * total
		prevLe, prevN := 0.0, 0.0
		for _, b := range bs {
			if b.n >= rank {
				if math.IsInf(b.le, 1) {
					return prevLe * 1000
				}
				if b.n == prevN {
					return b.le * 1000
				}
				return (prevLe + (b.le-prevLe)*(rank-prevN)/(b.n-prevN)) * 1000
			}
			prevLe, prevN = b.le, b.n
		}
		return prevLe * 1000
	}
	return q(0.5), q(0.99)
}
