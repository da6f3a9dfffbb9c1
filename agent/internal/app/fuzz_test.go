package app

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/xueliang/xl/internal/config"
	"github.com/xueliang/xl/internal/config/configtest"
)

// FuzzAgentConfig feeds arbitrary YAML to xl-agent's configuration: a valid
// configuration or a list of problems, never a panic; a valid one written
// back loads again to the same configuration.
func FuzzAgentConfig(f *testing.F) {
	shipped, err := os.ReadFile(filepath.Join("..", "..", "..", "configs", "agent.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(shipped)
	for _, s := range []string{
		"",
		"agent: {id: a1}\ncameras:\n  - id: c1\n    url: rtsp://127.0.0.1:8554/c1\n    zones: [{name: z, polygon: [[0, 0], [1, 0], [1, 1]]}]\n    scenarios: [{type: intrusion, zones: [z]}]\n",
		"cameras:\n  - id: c1\n    url: file:///dev/null\n    detect_fsp: 5\n",
		"cameras:\n  - {id: c1, url: 'rtsp://h/x', timezone: Mars/Olympus}\n",
		"cameras:\n  - {id: c1, url: 'rtsp://h/x', timezone: ../../etc/passwd}\n",
		"cameras:\n  - {id: c1, url: 'rtsp://h/x', zones: [{name: z, polygon: [[0, 0], [2, 0]]}]}\n",
		"cameras:\n  - {id: c1, url: 'rtsp://h/x', scenarios: [{type: crowd, severity: 9, schedule: ['25:00-01:00']}]}\n",
		"cameras:\n  - {id: c1, url: 'rtsp://h/x', clip: {enabled: true, max_bytes: 1}}\n",
		"outbox: {max_bytes: 1, max_age: -1s}\ndetector: {score_threshold: NaN, nms_threshold: .inf}\n",
		"cameras:\n  - {id: c1, url: 'rtsp://h/x'}\n  - {id: c1, url: 'rtsp://h/y'}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		configtest.Check(t, b, func() config.Validator { return DefaultConfig() })
	})
}
