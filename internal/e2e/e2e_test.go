// Package e2e drives the built binaries together over real loopback
// sockets: xl-camsim serves the footage over RTSP, xl-agent analyses it and
// publishes over MQTT, xl-central stores and serves the alerts.
package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xueliang/xl/internal/testenv"
)

// buildBinaries builds the commands once into a temporary directory
// (or uses $XL_BIN_DIR when make has built them already).
func buildBinaries(t testing.TB) string {
	t.Helper()
	if dir := os.Getenv("XL_BIN_DIR"); dir != "" {
		return dir
	}
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir+string(os.PathSeparator), "./agent/cmd/xl-agent", "./agent/cmd/xl-camsim", "./central/cmd/xl-central", "./agent/cmd/xl-loadgen")
	cmd.Dir = testenv.RepoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return dir
}

func freePort(t testing.TB) int { return testenv.FreePort(t) }

// proc is a running binary whose output is kept for the failure report.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *testenv.SyncBuffer
	done chan error
}

func start(t testing.TB, name string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: &testenv.SyncBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(args[0], args[1:]...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	go func() { p.done <- p.cmd.Wait() }() // owned: the cleanup below waits on done
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("--- %s output (last 3000 bytes) ---\n%s", name, tail(p.out.String(), 3000))
		}
	})
	return p
}

// stop sends SIGTERM and expects a clean exit within 15 s.
func (p *proc) stop(t testing.TB) {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("%s did not exit cleanly on SIGTERM: %v", p.name, err)
		}
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("%s did not stop within 15 s of SIGTERM", p.name)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

type alertView struct {
	AlertID    string `json:"alert_id"`
	EventID    string `json:"event_id"`
	Phase      string `json:"phase"`
	AgentID    string `json:"agent_id"`
	CameraID   string `json:"camera_id"`
	Site       string `json:"site"`
	GridCode   string `json:"grid_code"`
	Type       string `json:"type"`
	Severity   int    `json:"severity"`
	Zone       string `json:"zone"`
	DetectedAt time.Time
	Objects    []struct{ Class string }
	Evidence   struct {
		SnapshotSHA256 string `json:"snapshot_sha256"`
	}
	SnapshotURL string `json:"snapshot_url"`
	ClipURL     string `json:"clip_url"`
}

func listAlerts(base, typ string) ([]alertView, error) {
	resp, err := apiGet(base + "/api/v1/alerts?camera_id=cam-e2e&type=" + typ)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct{ Alerts []alertView }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	return out.Alerts, nil
}

// The agent logs in with the demo account of configs/central.yaml.
const agentConfig = `agent:
  id: hm-lixin-01
mqtt:
  url: tcp://127.0.0.1:%d
  username: hm-lixin-01
  password: xueliang-demo-2026
http:
  addr: 127.0.0.1:%d
outbox:
  path: %s
cameras:
  - id: cam-e2e
    url: rtsp://127.0.0.1:%d/cam-e2e
    site: 立新闸外长江水域
    grid_code: HM-ZY-QZ-03
    detect_fps: 5
    stream_lost_after: 3s
    stall_timeout: 2s
    # Motion only: this test is about the path from camera to console.
    detect: {enabled: false}
    record: rtsp://127.0.0.1:%d/cam-e2e
    clip: {pre: 3s, post: 2s}
    zones:
      - name: north_path
        tags: [restricted]
        polygon: [[0.00, 0.12], [0.40, 0.10], [0.40, 0.22], [0.00, 0.25]]
    scenarios:
      - type: intrusion
        zones: [north_path]
        severity: 2
        min_duration: 1s
        end_after: 3s
log:
  format: text
`

func TestWalkingSkeleton(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test runs the real binaries for about 30 s")
	}
	bin := buildBinaries(t)
	video := testenv.Video(t)
	work := t.TempDir()
	rtsp, broker, httpPort, agentPort := freePort(t), freePort(t), freePort(t), freePort(t)

	camsimArgs := []string{filepath.Join(bin, "xl-camsim"), "--listen", fmt.Sprintf("127.0.0.1:%d", rtsp),
		"--camera", "cam-e2e=" + video, "--cache-dir", filepath.Join(work, "cache"), "--log-format", "text"}
	camsim := start(t, "xl-camsim", nil, camsimArgs...)
	centralEnv := []string{
		fmt.Sprintf("XL_BROKER_LISTEN=127.0.0.1:%d", broker), fmt.Sprintf("XL_HTTP_ADDR=127.0.0.1:%d", httpPort),
		"XL_STORE_PATH=" + filepath.Join(work, "central.db"), "XL_LOG_FORMAT=text",
	}
	centralCfg := filepath.Join(testenv.RepoRoot(t), "configs", "central.yaml")
	central := start(t, "xl-central", centralEnv, filepath.Join(bin, "xl-central"), "serve", "--config", centralCfg)
	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	waitFor(t, central, 30*time.Second, "central ready", func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	grantAPI(t, bin, centralEnv, centralCfg, base)

	cfgPath := filepath.Join(work, "agent.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(agentConfig, broker, agentPort, filepath.Join(work, "outbox.db"), rtsp, rtsp)), 0o600); err != nil {
		t.Fatal(err)
	}
	agent := start(t, "xl-agent", nil, filepath.Join(bin, "xl-agent"), "run", "--config", cfgPath)

	// People walk the north path 6–19 s into the footage: a start, then an end.
	var alerts []alertView
	waitFor(t, agent, 90*time.Second, "intrusion start and end at central", func() bool {
		var err error
		alerts, err = listAlerts(base, "intrusion")
		if err != nil {
			return false
		}
		phases := map[string]bool{}
		for _, a := range alerts {
			phases[a.Phase] = true
		}
		return phases["start"] && phases["end"]
	})

	var startA *alertView
	for i := range alerts {
		a := &alerts[i]
		if a.AgentID != "hm-lixin-01" || a.CameraID != "cam-e2e" || a.Type != "intrusion" || a.Zone != "north_path" ||
			a.Severity != 2 || a.Site != "立新闸外长江水域" || a.GridCode != "HM-ZY-QZ-03" {
			t.Errorf("alert fields: %+v", a)
		}
		if a.Phase == "start" && startA == nil {
			startA = a
		}
	}
	if startA == nil || len(startA.Objects) == 0 || startA.SnapshotURL == "" {
		t.Fatalf("start alert without objects or snapshot: %+v", startA)
	}
	var end *alertView
	for i := range alerts {
		if alerts[i].Phase == "end" {
			end = &alerts[i]
		}
	}
	if end.EventID != startA.EventID {
		t.Errorf("end belongs to event %s, start to %s", end.EventID, startA.EventID)
	}

	// The snapshot is the JPEG the agent hashed into the alert.
	resp, err := apiGet(base + startA.SnapshotURL)
	if err != nil {
		t.Fatal(err)
	}
	jpeg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	sum := sha256.Sum256(jpeg)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/jpeg" || hex.EncodeToString(sum[:]) != startA.Evidence.SnapshotSHA256 {
		t.Fatalf("snapshot: status %d type %s, sha mismatch %x vs %s", resp.StatusCode, resp.Header.Get("Content-Type"), sum, startA.Evidence.SnapshotSHA256)
	}

	// The start alert's clip, cut from the record stream: 3 s before the
	// detection and 2 s after it, from a key frame (camsim's GOP is 2 s).
	var clipURL string
	waitFor(t, agent, 30*time.Second, "the start alert's clip at central", func() bool {
		as, err := listAlerts(base, "intrusion")
		if err != nil {
			return false
		}
		for _, a := range as {
			if a.AlertID == startA.AlertID {
				clipURL = a.ClipURL
			}
		}
		return clipURL != ""
	})
	resp, err = apiGet(base + clipURL)
	if err != nil {
		t.Fatal(err)
	}
	mp4, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "video/mp4" {
		t.Fatalf("clip: status %d type %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	clipPath := filepath.Join(work, "clip.mp4")
	if err := os.WriteFile(clipPath, mp4, 0o600); err != nil {
		t.Fatal(err)
	}
	probe := exec.Command("ffprobe", "-v", "error", "-count_frames", "-show_entries", "stream=codec_name,nb_read_frames:format=duration", "-of", "csv=p=0", clipPath)
	var probeErr strings.Builder
	probe.Stderr = &probeErr
	out, err := probe.Output()
	if err != nil || probeErr.Len() > 0 {
		t.Fatalf("ffprobe of the clip: %v %s", err, probeErr.String())
	}
	fields := strings.FieldsFunc(string(out), func(r rune) bool { return r == ',' || r == '\n' })
	if len(fields) != 3 {
		t.Fatalf("ffprobe output %q", out)
	}
	codec := fields[0]
	frames, _ := strconv.Atoi(fields[1])
	secs, _ := strconv.ParseFloat(fields[2], 64)
	t.Logf("clip: %s, %d frames, %.2f s, %d bytes", codec, frames, secs, len(mp4))
	if codec != "h264" || secs < 4.85 || secs > 7.15 || frames < int(secs*10)-2 {
		t.Errorf("clip %s %d frames %.2f s, want h264 of 5–7 s at 10 fps", codec, frames, secs)
	}

	// The agent is listed online, and its metrics show analysed frames.
	resp, err = apiGet(base + "/api/v1/agents")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"agent_id":"hm-lixin-01","state":"online"`) || !strings.Contains(string(body), `"camera_id":"cam-e2e","state":"streaming"`) {
		t.Errorf("agents: %s", body)
	}
	// Commands: central asks, the agent answers on its reply topic.
	code, reply := command(t, base, "hm-lixin-01", `{"cmd":"verify"}`, "")
	if code != 200 || reply["ok"] != true {
		t.Fatalf("verify: %d %v", code, reply)
	}
	if cams, _ := reply["result"].(map[string]any)["cameras"].(map[string]any); cams["cam-e2e"] == nil {
		t.Errorf("verify result lacks the camera: %v", reply)
	}
	code, reply = command(t, base, "hm-lixin-01", `{"cmd":"snapshot","camera_id":"cam-e2e"}`, "")
	if code != 200 || reply["ok"] != true {
		t.Fatalf("snapshot: %d %v", code, reply)
	}
	snapID, _ := reply["cmd_id"].(string)
	var snapResp *http.Response
	waitFor(t, agent, 10*time.Second, "requested snapshot stored", func() bool {
		snapResp, err = apiGet(base + "/api/v1/alerts/" + snapID + "/snapshot.jpg")
		if err != nil {
			return false
		}
		snapResp.Body.Close()
		return snapResp.StatusCode == 200
	})
	if code, reply = command(t, base, "hm-lixin-01", `{"cmd":"selfdestruct"}`, ""); code != 400 {
		t.Errorf("unknown command: %d %v", code, reply)
	}
	if code, reply = command(t, base, "no-such-agent", `{"cmd":"verify"}`, "?timeout=1s"); code != 504 {
		t.Errorf("command to an absent agent: %d %v, want 504", code, reply)
	}

	resp, err = http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", agentPort))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `xl_agent_events_total{camera_id="cam-e2e",phase="start",type="intrusion"} 1`) {
		t.Errorf("agent metrics lack the start event:\n%s", grep(string(body), "xl_agent_"))
	}

	// The camera goes away: stream_lost; it comes back on the same
	// address: the agent reconnects by itself and reports stream_restored.
	camsim.stop(t)
	hasType := func(typ, phase string) bool {
		as, err := listAlerts(base, typ)
		if err != nil {
			return false
		}
		for _, a := range as {
			if a.Type == typ && a.Phase == phase {
				return true
			}
		}
		return false
	}
	// (The camera may already have been reported lost and restored once at
	// start-up, while camsim transcoded the footage: count the events.)
	count := func(typ string) int {
		as, _ := listAlerts(base, typ)
		return len(as)
	}
	lostBefore, restoredBefore := count("stream_lost"), count("stream_restored")
	waitFor(t, agent, 30*time.Second, "stream_lost at central", func() bool { return count("stream_lost") > lostBefore })
	lostAt := time.Now()
	camsim = start(t, "xl-camsim#2", nil, camsimArgs...)
	waitFor(t, agent, 40*time.Second, "stream_restored at central", func() bool {
		return count("stream_restored") > restoredBefore && count("stream_lost") >= lostBefore+2 && hasType("stream_lost", "end")
	})
	t.Logf("camera restarted; stream restored %s after the restart began", time.Since(lostAt).Round(100*time.Millisecond))
}

// command posts a command to central's API and decodes the answer.
func command(t testing.TB, base, agent, body, query string) (int, map[string]any) {
	t.Helper()
	resp, err := apiPost(base+"/api/v1/agents/"+agent+"/commands"+query, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

func grep(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// waitFor polls cond until it holds, failing early if p exits.
func waitFor(t testing.TB, p *proc, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("%s exited while waiting for %s: %v", p.name, what, err)
		case <-ctx.Done():
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		case <-tick.C:
		}
	}
}
