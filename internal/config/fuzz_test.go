package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/xueliang/xl/internal/config"
	"github.com/xueliang/xl/internal/config/configtest"
)

type point struct {
	Name  string     `mapstructure:"name"`
	At    [2]float64 `mapstructure:"at"`
	Tags  []string   `mapstructure:"tags"`
	Ratio float64    `mapstructure:"ratio"`
}

type fuzzConfig struct {
	HTTP struct {
		Addr    string        `mapstructure:"addr"`
		Timeout time.Duration `mapstructure:"timeout"`
		TLS     *struct {
			Cert string `mapstructure:"cert"`
		} `mapstructure:"tls"`
	} `mapstructure:"http"`
	Workers int     `mapstructure:"workers"`
	Enabled bool    `mapstructure:"enabled"`
	Size    int64   `mapstructure:"size"`
	Points  []point `mapstructure:"points"`
	Names   []string
}

func (c *fuzzConfig) Validate() []config.FieldError {
	var p config.Problems
	p.HostPort("http.addr", c.HTTP.Addr, false)
	if c.Workers < 1 || c.Workers > 64 {
		p.Add("workers", "must be within 1–64")
	}
	if c.HTTP.Timeout < 0 {
		p.Add("http.timeout", "must not be negative")
	}
	for i, pt := range c.Points {
		if pt.Name == "" {
			p.Add("points["+string(rune('0'+i%10))+"].name", "required")
		}
	}
	return p.List()
}

func fresh() config.Validator {
	c := &fuzzConfig{Workers: 2}
	c.HTTP.Addr = "127.0.0.1:8080"
	c.HTTP.Timeout = 5 * time.Second
	return c
}

// FuzzLoadBytes feeds arbitrary YAML to the loader: a valid configuration
// or a list of problems, never a panic, and valid ones survive a round trip.
func FuzzLoadBytes(f *testing.F) {
	for _, s := range []string{
		"",
		"workers: 4\nhttp:\n  addr: 127.0.0.1:9000\n  timeout: 1m30s\n",
		"points:\n  - {name: a, at: [1, 2], tags: [x, y]}\n  - name: b\n    tags: x,y\n",
		"http:\n  tls:\n    cert: a.pem\n",
		"workers: many\n",
		"workers: 1e3\nsize: 0x10\n",
		"http: [1, 2]\n",
		"points: {name: a}\n",
		"points:\n  - at: [1, 2, 3]\n",
		"a: &x [*x]\n",
		"base: &b {addr: ':1'}\nhttp: *b\n",
		"http:\n  addr: 127.0.0.1:8080\n  Addr: 127.0.0.1:9090\n",
		"workers: 2\nworkers: 3\n",
		"\t- x",
		"names: [\"\\u0000\", 'é']\n",
		"http: {timeout: -5s}\n",
		"http: {timeout: 9999999h}\n",
		"enabled: yes\n",
		"points:\n  - name: " + strings.Repeat("x", 300) + "\n",
		"---\nworkers: 2\n---\nworkers: 3\n",
		"!!binary aGVsbG8=",
		"? [a]\n: b\n",
		"null",
		"~",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		configtest.Check(t, b, fresh)
	})
}
