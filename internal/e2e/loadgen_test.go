package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLoadgenAgainstCentral runs xl-loadgen's simulated agents (20 agents ×
// 4 cameras, each its own MQTT connection with its own account) against a
// real xl-central with its embedded broker, with snapshots and a reconnect
// storm that cuts 6 agents' connections mid-run. Central must store
// exactly the alerts the loadgen's journal says the broker acknowledged,
// each once, and see every agent online; a loadgen killed with SIGKILL
// leaves its agents offline at central through their last wills.
func TestLoadgenAgainstCentral(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes")
	}
	t.Parallel()
	const agents, password = 20, "xueliang-demo-2026"
	bin, work := buildBinaries(t), t.TempDir()
	// One account per simulated agent (the demo password's bcrypt hash).
	hash := "$2a$10$QDDrCTzJzI1ffCHidsPHtOsEd7HgFY4//tSBjDPRuWgutGH2ND73u"
	cfg := "broker:\n  users:\n"
	for i := range agents {
		cfg += fmt.Sprintf("    - {username: lg-%05d, password_hash: %q, role: agent}\n", i, hash)
	}
	cfgPath := filepath.Join(work, "central.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	broker := freePort(t)
	c := newCentral(t, bin, work, fmt.Sprintf("XL_BROKER_LISTEN=127.0.0.1:%d", broker))
	c.p = start(t, "xl-central", c.env, filepath.Join(bin, "xl-central"), "serve", "--config", cfgPath)
	waitFor(t, c.p, 30*time.Second, "central ready", func() bool {
		resp, err := apiGet(c.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	grantAPI(t, bin, c.env, cfgPath, c.base)

	loadgen := func(journal string, extra ...string) *exec.Cmd {
		args := append([]string{"--broker", fmt.Sprintf("tcp://127.0.0.1:%d", broker), "--agents", fmt.Sprint(agents),
			"--cameras-per-agent", "4", "--seed", "11", "--ramp", "200", "--status-interval", "2s", "--journal", journal}, extra...)
		cmd := exec.Command(filepath.Join(bin, "xl-loadgen"), args...)
		cmd.Env = append(os.Environ(), "XL_LOADGEN_PASSWORD="+password)
		return cmd
	}

	// 1. A short run with evidence and a reconnect storm, to its end.
	journal := filepath.Join(work, "run1.journal")
	out, err := loadgen(journal, "--rate", "60/s", "--duration", "5s", "--evidence", "0.2",
		"--storm-at", "1500ms", "--storm-fraction", "0.3").CombinedOutput()
	if err != nil {
		t.Fatalf("xl-loadgen: %v\n%s", err, out)
	}
	t.Logf("xl-loadgen:\n%s", out)
	var sum struct {
		Attempted    int64 `json:"connections_attempted"`
		Failed       int64 `json:"connections_failed"`
		Held         int64 `json:"connections_held"`
		StormDropped int64 `json:"storm_dropped"`
		Reconnects   int64 `json:"reconnects"`
		Sent         int64 `json:"alerts_sent"`
		Acked        int64 `json:"alerts_acked"`
		EvidenceSent int64 `json:"evidence_sent"`
		EvidenceAck  int64 `json:"evidence_acked"`
	}
	for _, line := range strings.Split(string(out), "\n") {
		if j, ok := strings.CutPrefix(line, "SUMMARY "); ok {
			if err := json.Unmarshal([]byte(j), &sum); err != nil {
				t.Fatal(err)
			}
		}
	}
	if sum.Attempted != agents || sum.Failed != 0 || sum.Held != agents {
		t.Errorf("connections: %+v, want %d attempted and held, none failed", sum, agents)
	}
	if sum.StormDropped != 6 || sum.Reconnects != 6 {
		t.Errorf("storm: %d cut, %d reconnects; want 6 and 6", sum.StormDropped, sum.Reconnects)
	}
	if sum.Sent < 100 || sum.EvidenceSent == 0 || sum.EvidenceAck != sum.EvidenceSent {
		t.Errorf("sent %d alerts, %d snapshots (%d acked): want ≥ 100 alerts and every snapshot acknowledged", sum.Sent, sum.EvidenceSent, sum.EvidenceAck)
	}
	sent, acked := readJournal(t, journal)
	if len(sent) != int(sum.Sent) || len(acked) != int(sum.Acked) || len(acked) != len(sent) {
		t.Fatalf("journal: %d sent, %d acked; summary: %d sent, %d acked (every alert should be acknowledged)", len(sent), len(acked), sum.Sent, sum.Acked)
	}
	var got []stored
	waitFor(t, c.p, 60*time.Second, fmt.Sprintf("%d alerts stored", len(acked)), func() bool {
		got, err = storedAlerts(c.base, "")
		return err == nil && len(got) >= len(acked)
	})
	seen := map[string]bool{}
	for _, s := range got {
		if seen[s.AlertID] {
			t.Errorf("alert %s stored twice", s.AlertID)
		}
		seen[s.AlertID] = true
		if !acked[s.AlertID] {
			t.Errorf("central stored %s, which the journal does not have as acknowledged", s.AlertID)
		}
		if cam := sent[s.AlertID]; cam != s.CameraID {
			t.Errorf("alert %s: stored for camera %q, sent for %q", s.AlertID, s.CameraID, cam)
		}
	}
	for id := range acked {
		if !seen[id] {
			t.Errorf("acknowledged alert %s is not stored at central", id)
		}
	}
	// Each agent publishes "offline" on its way out, as a real one does.
	waitFor(t, c.p, 30*time.Second, "every simulated agent offline after the run", func() bool { return countAgents(t, c.base, "offline") == agents })

	// 2. A long run, killed: every connection dies without a DISCONNECT,
	// and the broker publishes each agent's last will.
	run2 := loadgen(filepath.Join(work, "run2.journal"), "--rate", "10/s", "--duration", "10m")
	run2.Stdout, run2.Stderr = &strings.Builder{}, &strings.Builder{}
	if err := run2.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = run2.Process.Kill()
			_ = run2.Wait()
		}
	})
	waitFor(t, c.p, 30*time.Second, "every simulated agent online", func() bool { return countAgents(t, c.base, "online") == agents })
	_ = run2.Process.Signal(syscall.SIGKILL)
	_ = run2.Wait()
	killed = true
	waitFor(t, c.p, 30*time.Second, "every simulated agent offline (last wills)", func() bool { return countAgents(t, c.base, "offline") == agents })
}

// readJournal returns the alerts an xl-loadgen journal has as sent (with
// their camera) and as acknowledged; an alert in either twice fails.
func readJournal(t *testing.T, path string) (sent map[string]string, acked map[string]bool) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sent, acked = map[string]string{}, map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		switch {
		case len(fl) == 4 && fl[0] == "S":
			if _, dup := sent[fl[1]]; dup {
				t.Fatalf("journal: %s sent twice", fl[1])
			}
			sent[fl[1]] = fl[3]
		case len(fl) == 2 && fl[0] == "A":
			if acked[fl[1]] {
				t.Fatalf("journal: %s acknowledged twice", fl[1])
			}
			if _, ok := sent[fl[1]]; !ok {
				t.Fatalf("journal: %s acknowledged before it was sent", fl[1])
			}
			acked[fl[1]] = true
		case len(fl) >= 2 && fl[0] == "U":
			t.Errorf("journal: alert %s not acknowledged: %s", fl[1], strings.Join(fl[2:], " "))
		default:
			t.Fatalf("journal: unexpected line %q", sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return sent, acked
}

// countAgents is how many lg- agents central lists in state.
func countAgents(t *testing.T, base, state string) int {
	t.Helper()
	var out struct {
		Agents []struct {
			AgentID string `json:"agent_id"`
			State   string `json:"state"`
		}
	}
	if err := getJSON(base+"/api/v1/agents", &out); err != nil {
		return -1
	}
	n := 0
	for _, a := range out.Agents {
		if strings.HasPrefix(a.AgentID, "lg-") && a.State == state {
			n++
		}
	}
	return n
}
