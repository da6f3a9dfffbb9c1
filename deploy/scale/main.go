// Command scale runs xl-central at scale (`make scale`): its own Mosquitto on
// a free port with raised limits, a fresh PostgreSQL schema per step, one to
// three central replicas on a shared subscription, and xl-loadgen
// simulating the cameras. For each step it measures, over a steady window
// after the fleet has connected: connections held, alerts/s stored,
// detect → stored (database timestamps) and detect → dispatched (central's
// histogram) percentiles, and CPU and RSS per component from /proc. It
// prints a markdown table and writes it, with the raw numbers as JSON, to
// $XL_SCALE_OUT (default test-artifacts/scale).
//
// Environment (all optional):
//
//	XL_BIN_DIR          built binaries (default bin)
//	XL_SCALE_OUT        results directory
//	XL_SCALE_STEPS      cameras per step, e.g. "10000,30000,100000"
//	XL_SCALE_REPLICAS   replica counts run at the largest step, e.g. "2,3"
//	XL_SCALE_RATE       loadgen --rate of those steps (default 6/cam/h)
//	XL_SCALE_MAX_RATES  alerts/s of the capacity steps, e.g. "500,1000,2000,4000" ("" skips them)
//	XL_SCALE_MAX_CAMERAS cameras of the capacity steps (default 10000)
//	XL_SCALE_DURATION   traffic per step (default 75s; capacity steps 45s)
//	XL_SCALE_STATUS_INTERVAL  each simulated agent's heartbeat (default 30s, as xl-agent's)
//	XL_SCALE_PG_DSN     PostgreSQL (default: the test role of deploy/scripts/postgres.sh)
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

type step struct {
	name     string
	cameras  int
	replicas int
	rate     string
	duration time.Duration
	capacity bool // a capacity step: stop raising the rate once it saturates
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func run(ctx context.Context) error {
	steps, err := plan()
	if err != nil {
		return err
	}
	bin, err := filepath.Abs(env("XL_BIN_DIR", "bin"))
	if err != nil {
		return err
	}
	for _, b := range []string{"xl-central", "xl-loadgen"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return fmt.Errorf("%s not built (make build): %w", b, err)
		}
	}
	out := env("XL_SCALE_OUT", filepath.Join("test-artifacts", "scale"))
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "xl-scale-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	nofile, err := raiseNoFile()
	if err != nil {
		return fmt.Errorf("raise the open-file limit: %w", err)
	}
	maxAgents := 0
	for _, s := range steps {
		maxAgents = max(maxAgents, agentsFor(s.cameras))
	}
	r := &runner{bin: bin, work: work, dsn: env("XL_SCALE_PG_DSN", "postgres://xl_test:xl_test@127.0.0.1:5432/xl_test?sslmode=disable")}
	if err := r.prepare(maxAgents); err != nil {
		return err
	}
	fmt.Printf("scale: %d steps, binaries %s, open-file limit %d, load %s\n", len(steps), bin, nofile, loadavg())
	var results []result
	saturated := false
	for _, s := range steps {
		if ctx.Err() != nil {
			break
		}
		if s.capacity && saturated {
			continue
		}
		fmt.Printf("\n== %s: %d cameras (%d agents), %d central, rate %s, %s\n", s.name, s.cameras, agentsFor(s.cameras), s.replicas, s.rate, s.duration)
		res, err := r.step(ctx, s)
		if err != nil {
			fmt.Printf("   step failed: %v\n", err)
			res.Err = err.Error()
		}
		res.print()
		results = append(results, res)
		if s.capacity && res.saturated() {
			saturated = true
		}
		if err := writeResults(out, results); err != nil {
			return err
		}
	}
	fmt.Println()
	fmt.Print(table(results))
	fmt.Printf("\nresults: %s\n", filepath.Join(out, "scale.md"))
	return ctx.Err()
}

func agentsFor(cameras int) int { return (cameras + camerasPerAgent - 1) / camerasPerAgent }

const camerasPerAgent = 8

func plan() ([]step, error) {
	sizes, err := ints(env("XL_SCALE_STEPS", "10000,30000,100000"))
	if err != nil {
		return nil, fmt.Errorf("XL_SCALE_STEPS: %w", err)
	}
	reps, err := ints(env("XL_SCALE_REPLICAS", "2,3"))
	if err != nil {
		return nil, fmt.Errorf("XL_SCALE_REPLICAS: %w", err)
	}
	rates, err := ints(env("XL_SCALE_MAX_RATES", "500,1000,2000,4000"))
	if err != nil {
		return nil, fmt.Errorf("XL_SCALE_MAX_RATES: %w", err)
	}
	maxCams, err := ints(env("XL_SCALE_MAX_CAMERAS", "10000"))
	if err != nil || len(maxCams) != 1 {
		return nil, fmt.Errorf("XL_SCALE_MAX_CAMERAS: one positive number")
	}
	dur, err := time.ParseDuration(env("XL_SCALE_DURATION", "75s"))
	if err != nil || dur < 30*time.Second {
		return nil, fmt.Errorf("XL_SCALE_DURATION: a duration of at least 30s")
	}
	rate := env("XL_SCALE_RATE", "6/cam/h")
	var steps []step
	for _, n := range sizes {
		steps = append(steps, step{name: fmt.Sprintf("%dk", n/1000), cameras: n, replicas: 1, rate: rate, duration: dur})
	}
	if len(sizes) > 0 {
		largest := sizes[len(sizes)-1]
		for _, k := range reps {
			steps = append(steps, step{name: fmt.Sprintf("%dk×%d", largest/1000, k), cameras: largest, replicas: k, rate: rate, duration: dur})
		}
	}
	capDur := min(dur, 45*time.Second)
	for _, rps := range rates {
		steps = append(steps, step{name: fmt.Sprintf("capacity %d/s", rps), cameras: maxCams[0], replicas: 1,
			rate: fmt.Sprintf("%d/s", rps), duration: capDur, capacity: true})
	}
	return steps, nil
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func raiseNoFile() (uint64, error) {
	want := uint64(1 << 20)
	if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil {
			want = n
		}
	}
	l := syscall.Rlimit{Cur: want, Max: want}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return 0, err
		}
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return 0, err
		}
	}
	return l.Cur, nil
}
