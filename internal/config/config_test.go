package config

import (
	"strings"
	"testing"
	"time"
)

type item struct {
	Name  string     `mapstructure:"name"`
	Point [2]float64 `mapstructure:"point"`
	Tags  []string   `mapstructure:"tags"`
}

type testConfig struct {
	HTTP struct {
		Addr    string        `mapstructure:"addr"`
		Timeout time.Duration `mapstructure:"timeout"`
	} `mapstructure:"http"`
	Workers int    `mapstructure:"workers"`
	Items   []item `mapstructure:"items"`
}

func (c *testConfig) Validate() []FieldError {
	var p Problems
	p.HostPort("http.addr", c.HTTP.Addr, false)
	if c.Workers < 1 {
		p.Add("workers", "must be positive")
	}
	for i, it := range c.Items {
		if it.Name == "" {
			p.Add("items["+string(rune('0'+i))+"].name", "required")
		}
	}
	return p.List()
}

func defaults() *testConfig {
	c := &testConfig{Workers: 2}
	c.HTTP.Addr = "127.0.0.1:8080"
	c.HTTP.Timeout = 5 * time.Second
	return c
}

func noEnv(string) (string, bool) { return "", false }

func load(t *testing.T, yaml string, env map[string]string) (*testConfig, *Errors) {
	t.Helper()
	c := defaults()
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	err := LoadBytes("test.yaml", []byte(yaml), c, lookup)
	if err == nil {
		return c, nil
	}
	errs, ok := err.(*Errors)
	if !ok {
		t.Fatalf("error %T is not *Errors: %v", err, err)
	}
	return c, errs
}

func TestDefaultsFileEnvOrder(t *testing.T) {
	c, errs := load(t, "http:\n  addr: 127.0.0.1:9000\nworkers: 3\n", map[string]string{"XL_WORKERS": "7", "XL_HTTP_TIMEOUT": "2s"})
	if errs != nil {
		t.Fatal(errs)
	}
	if c.HTTP.Addr != "127.0.0.1:9000" {
		t.Errorf("file did not override the default: %s", c.HTTP.Addr)
	}
	if c.Workers != 7 || c.HTTP.Timeout != 2*time.Second {
		t.Errorf("environment did not override: workers %d timeout %s", c.Workers, c.HTTP.Timeout)
	}
	c, errs = load(t, "", nil)
	if errs != nil || c.Workers != 2 || c.HTTP.Addr != "127.0.0.1:8080" {
		t.Errorf("empty file must keep the defaults: %+v %v", c, errs)
	}
}

func TestAllErrorsAtOnceWithLines(t *testing.T) {
	yaml := `http:
  adr: 127.0.0.1:9000
  timeout: soon
workers: 0
items:
  - name: a
    point: [0.1, 0.2]
    colour: red
  - point: [0.1]
`
	_, errs := load(t, yaml, nil)
	if errs == nil {
		t.Fatal("accepted")
	}
	want := []string{
		"line 2: http.adr: unknown key (did you mean \"addr\"?)",
		"line 3: http.timeout:",
		"line 4: workers: must be positive",
		"line 8: items[0].colour: unknown key",
		"line 9: items[1].point: want 2 values, got 1",
	}
	got := errs.Error()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("missing %q in:\n%s", w, got)
		}
	}
	if len(errs.List) < len(want) {
		t.Errorf("%d errors, want at least %d:\n%s", len(errs.List), len(want), got)
	}
}

func TestWrongShapes(t *testing.T) {
	_, errs := load(t, "http: 5\nitems: {a: 1}\n", nil)
	if errs == nil {
		t.Fatal("accepted")
	}
	got := errs.Error()
	for _, w := range []string{"line 1: http: want a mapping", "line 2: items: want a list"} {
		if !strings.Contains(got, w) {
			t.Errorf("missing %q in:\n%s", w, got)
		}
	}
}

func TestYAMLSyntaxError(t *testing.T) {
	_, errs := load(t, "http:\n  addr: [unclosed\n", nil)
	if errs == nil || !strings.Contains(errs.Error(), "YAML syntax") {
		t.Fatalf("want a syntax error, got %v", errs)
	}
}

func TestBadEnvValueIsReported(t *testing.T) {
	_, errs := load(t, "", map[string]string{"XL_WORKERS": "many"})
	if errs == nil || !strings.Contains(errs.Error(), "workers") {
		t.Fatalf("want an error naming workers, got %v", errs)
	}
}

func TestEnvName(t *testing.T) {
	if got := EnvName("store.sqlite_path"); got != "XL_STORE_SQLITE_PATH" {
		t.Fatal(got)
	}
}
