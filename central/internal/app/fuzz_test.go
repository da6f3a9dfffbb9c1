package app

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/xueliang/xl/internal/config"
	"github.com/xueliang/xl/internal/config/configtest"
)

// FuzzCentralConfig feeds arbitrary YAML to xl-central's configuration: a
// valid configuration or a list of problems, never a panic; a valid one
// written back loads again to the same configuration.
func FuzzCentralConfig(f *testing.F) {
	shipped, err := os.ReadFile(filepath.Join("..", "..", "..", "configs", "central.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(shipped)
	for _, s := range []string{
		"",
		"http:\n  addr: nowhere\nbroker:\n  enabled: false\nstore:\n  driver: oracle\n",
		"broker: {enabled: false}\nmqtt: {url: 'tcp://127.0.0.1:1883'}\nintake: {share_group: xl}\n",
		"store: {driver: postgres, dsn: 'postgres://xl@127.0.0.1/xl?sslmode=disable'}\n",
		"store: {driver: postgres, dsn: '%zz'}\n",
		"egress: {min_backoff: 1h, max_backoff: 1s, timeout: 0s, max_attempts: -1}\n",
		"http: {public_url: 'https://xl.example.gov.cn', addr: '[::1]:0'}\n",
		"http: {read_timeout: 1s, write_timeout: 2s, max_body_bytes: 1, max_photo_bytes: 1099511627776}\n",
		"broker: {users: [{username: a, password_hash: x, role: root}]}\n",
		"log: {level: loud}\nincidents: {window: 0s}\n",
		"routing: {agencies: [{id: a, level: town}], rules: [{result: {lead: a}}]}\n",
		"intake: {max_future_skew: 1y}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		configtest.Check(t, b, func() config.Validator { return DefaultConfig() })
	})
}
