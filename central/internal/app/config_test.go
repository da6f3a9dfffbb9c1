package app

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestShippedConfigLoads(t *testing.T) {
	cfg, err := LoadConfig(filepath.Join("..", "..", "..", "configs", "central.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Broker.Enabled || cfg.Store.Driver != "sqlite" {
		t.Fatalf("unexpected content: %+v", cfg)
	}
}

// The shipped file documents the defaults: loading it must give exactly
// what no file at all gives, apart from the demo agent's broker account and
// the example routing (the default is none).
func TestShippedConfigEqualsDefaults(t *testing.T) {
	shipped, err := LoadConfig(filepath.Join("..", "..", "..", "configs", "central.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	none, err := LoadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	if len(shipped.Broker.Users) != 1 || shipped.Broker.Users[0].Username != "hm-lixin-01" {
		t.Fatalf("demo account: %+v", shipped.Broker.Users)
	}
	shipped.Broker.Users = nil
	if len(shipped.Routing.Rules) != 2 || len(shipped.Routing.Agencies) != 4 {
		t.Fatalf("example routing: %+v", shipped.Routing)
	}
	shipped.Routing = none.Routing
	if !reflect.DeepEqual(shipped, none) {
		t.Fatalf("configs/central.yaml differs from the defaults:\n%+v\n%+v", shipped, none)
	}
}

func TestCentralConfigErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "central.yaml")
	body := "http:\n  addr: nowhere\nbroker:\n  enabled: false\nstore:\n  driver: oracle\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(path)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"line 2: http.addr", "mqtt.url: required when broker.enabled is false", `line 6: store.driver: "oracle" is not supported`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

func TestEnvOverridesCentralConfig(t *testing.T) {
	t.Setenv("XL_HTTP_ADDR", "127.0.0.1:9999")
	t.Setenv("XL_BROKER_ENABLED", "false")
	t.Setenv("XL_MQTT_URL", "tcp://127.0.0.1:1883")
	cfg, err := LoadConfig(filepath.Join("..", "..", "..", "configs", "central.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.Addr != "127.0.0.1:9999" || cfg.Broker.Enabled || cfg.MQTT.URL != "tcp://127.0.0.1:1883" {
		t.Fatalf("env ignored: %+v", cfg)
	}
}

// A packet limit beyond MQTT's largest packet would wrap in the broker's
// 32-bit setting: it is a configuration error.
func TestBrokerPacketLimitBounded(t *testing.T) {
	for _, n := range []string{"4294967296", "268435456", "1000"} {
		path := filepath.Join(t.TempDir(), "central.yaml")
		if err := os.WriteFile(path, []byte("broker:\n  max_packet_bytes: "+n+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), "broker.max_packet_bytes") {
			t.Errorf("max_packet_bytes %s: %v", n, err)
		}
	}
}
