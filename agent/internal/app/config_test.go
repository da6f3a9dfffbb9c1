package app

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xueliang/xl/internal/cli"
	"github.com/xueliang/xl/internal/wire"
)

func TestShippedConfigLoads(t *testing.T) {
	cfg, err := LoadConfig(filepath.Join("..", "..", "..", "configs", "agent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Agent.ID != "hm-lixin-01" || len(cfg.Cameras) != 1 || len(cfg.Cameras[0].Zones) != 4 || len(cfg.Cameras[0].Scenarios) != 5 {
		t.Fatalf("unexpected content: %+v", cfg)
	}
	if cfg.Version == "" {
		t.Error("config version not computed")
	}
}

func TestEnvOverridesAgentConfig(t *testing.T) {
	t.Setenv("XL_MQTT_URL", "tcp://10.0.0.1:1884")
	t.Setenv("XL_AGENT_ID", "box-7")
	cfg, err := LoadConfig(filepath.Join("..", "..", "..", "configs", "agent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MQTT.URL != "tcp://10.0.0.1:1884" || cfg.Agent.ID != "box-7" {
		t.Fatalf("env ignored: %s %s", cfg.MQTT.URL, cfg.Agent.ID)
	}
}

const threeMistakes = `agent:
  id: box-1
mqtt:
  url: tcp://127.0.0.1:1883
cameras:
  - id: cam-1
    url: rtsp://127.0.0.1:8554/cam-1
    detect_fsp: 5
    zones:
      - name: bank
        polygon: [[0.1, 0.1], [0.9, 0.1]]
    scenarios:
      - type: intrusion
        zones: [bank]
        severity: 9
`

// The acceptance check of the issue: a file with three mistakes prints all
// three and exits non-zero.
func TestCheckConfigReportsEveryMistake(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte(threeMistakes), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	root := Command()
	root.SetOut(&stdout)
	code := cli.Execute(root, []string{"check-config", "--config", path}, &stderr)
	if code == 0 {
		t.Fatalf("exit 0 for an invalid file; stdout %s", stdout.String())
	}
	out := stderr.String()
	for _, want := range []string{
		"3 configuration error(s)",
		"line 8: cameras[0].detect_fsp: unknown key (did you mean \"detect_fps\"?)",
		"line 11: cameras[0].zones[0].polygon: polygon needs at least 3 points",
		"line 15: cameras[0].scenarios[0].severity: must be within 1 (most urgent) – 4",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}

func TestCheckConfigAcceptsShippedFile(t *testing.T) {
	var stdout, stderr bytes.Buffer
	root := Command()
	root.SetOut(&stdout)
	if code := cli.Execute(root, []string{"check-config", filepath.Join("..", "..", "..", "configs", "agent.yaml")}, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "OK") {
		t.Fatalf("stdout %q", stdout.String())
	}
}

func TestValidationCatchesCrossReferences(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.yaml")
	body := strings.Replace(threeMistakes, "detect_fsp: 5", "detect_fps: 5", 1)
	body = strings.Replace(body, "[[0.1, 0.1], [0.9, 0.1]]", "[[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]]", 1)
	body = strings.Replace(body, "severity: 9", "severity: 2", 1)
	body = strings.Replace(body, "zones: [bank]", "zones: [bank, pier]", 1)
	body = strings.Replace(body, "type: intrusion", "type: teleport", 1)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(path)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{`no zone named "pier"`, `"teleport" is not a scenario; available: illegal_fishing, intrusion`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
}

func TestClipConfig(t *testing.T) {
	valid := strings.Replace(threeMistakes, "detect_fsp: 5", "detect_fps: 5", 1)
	valid = strings.Replace(valid, "[[0.1, 0.1], [0.9, 0.1]]", "[[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]]", 1)
	valid = strings.Replace(valid, "severity: 9", "severity: 2", 1)
	load := func(t *testing.T, body string) (*Config, error) {
		t.Helper()
		path := filepath.Join(t.TempDir(), "agent.yaml")
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return LoadConfig(path)
	}
	camera := "    url: rtsp://127.0.0.1:8554/cam-1\n"

	t.Run("defaults", func(t *testing.T) {
		cfg, err := load(t, valid)
		if err != nil {
			t.Fatal(err)
		}
		c := cfg.Cameras[0].Clip
		if !*c.Enabled || c.Pre != 6*time.Second || c.Post != 6*time.Second || c.MaxBytes != wire.MaxClipBytes || cfg.Cameras[0].Record != "" {
			t.Fatalf("clip defaults %+v", c)
		}
		// A file source has no clips unless it names a record stream.
		cfg, err = load(t, strings.Replace(valid, camera, "    url: file:///dev/null\n", 1))
		if err != nil {
			t.Fatal(err)
		}
		if *cfg.Cameras[0].Clip.Enabled {
			t.Error("clips enabled for a file source")
		}
		cfg, err = load(t, strings.Replace(valid, camera, "    url: file:///dev/null\n    record: rtsp://10.0.0.9/main\n", 1))
		if err != nil {
			t.Fatal(err)
		}
		if !*cfg.Cameras[0].Clip.Enabled {
			t.Error("clips disabled for a file source with a record stream")
		}
	})
	for _, tc := range []struct{ name, insert, want string }{
		{"record-scheme", "    record: http://10.0.0.9/main\n", "cameras[0].record"},
		{"file-clips", "    clip: {enabled: true}\n", "clips need an RTSP stream"},
		{"too-long", "    clip: {pre: 2m}\n", "cameras[0].clip.pre: must be within 0–1m"},
		{"too-short", "    clip: {pre: 1ms, post: 1ms}\n", "pre + post must be at least 1s"},
		{"over-contract", "    clip: {max_bytes: 300000000}\n", "cameras[0].clip.max_bytes"}, // over 16 parts of 12 MiB
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := strings.Replace(valid, camera, camera+tc.insert, 1)
			if tc.name == "file-clips" {
				body = strings.Replace(valid, camera, "    url: file:///dev/null\n"+tc.insert, 1)
			}
			_, err := load(t, body)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestReadIntervalConfig(t *testing.T) {
	valid := strings.Replace(threeMistakes, "detect_fsp: 5", "detect_fps: 5", 1)
	valid = strings.Replace(valid, "[[0.1, 0.1], [0.9, 0.1]]", "[[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]]", 1)
	valid = strings.Replace(valid, "severity: 9", "severity: 2", 1)
	camera := "    url: rtsp://127.0.0.1:8554/cam-1\n"
	load := func(t *testing.T, insert string) (*Config, error) {
		t.Helper()
		path := filepath.Join(t.TempDir(), "agent.yaml")
		if err := os.WriteFile(path, []byte(strings.Replace(valid, camera, camera+insert, 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		return LoadConfig(path)
	}
	for _, tc := range []struct {
		insert         string
		detect, record time.Duration
	}{
		{"", 200 * time.Millisecond, 200 * time.Millisecond}, // the default
		{"    read_interval: 0s\n", 0, 0},                    // off, not the default
		{"    read_interval: 1s\n", 200 * time.Millisecond, time.Second},
		{"    read_interval: 1s\n    keyframe_only: true\n", 200 * time.Millisecond, time.Second},
		{"    read_interval: 150ms\n", 150 * time.Millisecond, 150 * time.Millisecond},
	} {
		cfg, err := load(t, tc.insert)
		if err != nil {
			t.Fatalf("%q: %v", tc.insert, err)
		}
		cc := cfg.Cameras[0]
		if d, r := detectReadInterval(cc), readInterval(cc); d != tc.detect || r != tc.record {
			t.Errorf("%q: detect stream every %v, record stream every %v; want %v and %v", tc.insert, d, r, tc.detect, tc.record)
		}
	}
	for _, bad := range []string{"    read_interval: -1ms\n", "    read_interval: 2s\n"} {
		if _, err := load(t, bad); err == nil || !strings.Contains(err.Error(), "cameras[0].read_interval") {
			t.Errorf("%q: error %v, want one about cameras[0].read_interval", bad, err)
		}
	}
}
