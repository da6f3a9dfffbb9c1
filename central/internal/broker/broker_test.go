package broker

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/xueliang/xl/internal/mqttc"
	"github.com/xueliang/xl/internal/wire"
)

func startBroker(t *testing.T, cfg Config) *Broker {
	t.Helper()
	cfg.Enabled, cfg.MaxPacketBytes = true, 1<<20
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	b, err := New(cfg, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { b.Run(ctx) })
	t.Cleanup(func() { cancel(); b.Close(); wg.Wait() })
	return b
}

func users(t *testing.T) []User {
	t.Helper()
	var out []User
	for _, u := range []string{"a1", "a2"} {
		h, err := HashPassword([]byte(u + "-long-password"))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, User{Username: u, PasswordHash: h, Role: RoleAgent})
	}
	return out
}

func connect(t *testing.T, url, user, pass string, tc *mqttc.TLS) (mqtt.Client, error) {
	t.Helper()
	c := mqttc.Default()
	c.URL, c.Username, c.Password, c.ClientID = url, user, pass, "t-"+user+"-"+wire.NewULID(time.Now())
	if tc != nil {
		c.TLS = *tc
	}
	o, err := c.Options()
	if err != nil {
		t.Fatal(err)
	}
	o.SetConnectRetry(false).SetAutoReconnect(false).SetCleanSession(true)
	cl := mqtt.NewClient(o)
	if err := mqttc.Wait(cl.Connect(), 5*time.Second); err != nil {
		return nil, err
	}
	t.Cleanup(func() { cl.Disconnect(50) })
	return cl, nil
}

func TestAuthentication(t *testing.T) {
	b := startBroker(t, Config{Users: users(t)})
	if _, err := connect(t, b.URL(), "a1", "a1-long-password", nil); err != nil {
		t.Fatalf("valid credentials refused: %v", err)
	}
	for _, c := range []struct{ user, pass, reason string }{
		{"a1", "wrong-password", "bad_password"},
		{"nobody", "whatever-password", "unknown_user"},
		{"", "", "anonymous"},
		{InternalUser, "guess", "bad_password"},
	} {
		if _, err := connect(t, b.URL(), c.user, c.pass, nil); err == nil {
			t.Errorf("%q/%q accepted", c.user, c.pass)
		}
		if got := testutil.ToFloat64(b.auth.authFailures.WithLabelValues(c.reason)); got < 1 {
			t.Errorf("refusal of %q not counted as %s", c.user, c.reason)
		}
	}
	u, p := b.InternalCredentials()
	if _, err := connect(t, b.URL(), u, p, nil); err != nil {
		t.Fatalf("internal credentials refused: %v", err)
	}
}

// An agent with valid credentials can publish only under its own topics and
// read only its own commands; everything else is refused and counted.
func TestAgentACL(t *testing.T) {
	b := startBroker(t, Config{Users: users(t)})
	u, p := b.InternalCredentials()
	central, err := connect(t, b.URL(), u, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 10)
	if err := mqttc.Wait(central.Subscribe("xl/v1/agents/#", 1, func(_ mqtt.Client, m mqtt.Message) { got <- m.Topic() }), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	a1, err := connect(t, b.URL(), "a1", "a1-long-password", nil)
	if err != nil {
		t.Fatal(err)
	}
	// Under another agent's topic: refused. An MQTT 3.1.1 client cannot be
	// told "not authorised" in a PUBACK, so the broker disconnects it.
	mqttc.Wait(a1.Publish(wire.AlertsTopic("a2"), 1, false, []byte("{}")), 2*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for a1.IsConnectionOpen() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if a1.IsConnectionOpen() {
		t.Error("client still connected after a refused publish")
	}
	a1, err = connect(t, b.URL(), "a1", "a1-long-password", nil)
	if err != nil {
		t.Fatal(err)
	}
	// Its own topic: delivered.
	if err := mqttc.Wait(a1.Publish(wire.AlertsTopic("a1"), 1, false, []byte("{}")), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case topic := <-got:
		if topic != wire.AlertsTopic("a1") {
			t.Fatalf("central received %s", topic)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("own alert not delivered")
	}
	select {
	case topic := <-got:
		t.Fatalf("a refused message arrived: %s", topic)
	case <-time.After(300 * time.Millisecond):
	}
	if n := testutil.ToFloat64(b.auth.aclDenied.WithLabelValues("a1", "publish")); n != 1 {
		t.Errorf("refused publish counted %v times, want 1", n)
	}
	// Reading another agent's commands: refused.
	tok := a1.Subscribe(wire.CmdTopic("a2"), 1, nil)
	tok.WaitTimeout(5 * time.Second)
	if st := tok.(*mqtt.SubscribeToken); st.Result()[wire.CmdTopic("a2")] != 0x80 {
		t.Errorf("subscription to another agent's commands granted: %v", st.Result())
	}
	if n := testutil.ToFloat64(b.auth.aclDenied.WithLabelValues("a1", "subscribe")); n != 1 {
		t.Errorf("refused subscribe counted %v times", n)
	}
	tok = a1.Subscribe(wire.CmdTopic("a1"), 1, nil)
	tok.WaitTimeout(5 * time.Second)
	if st := tok.(*mqtt.SubscribeToken); st.Result()[wire.CmdTopic("a1")] != 1 {
		t.Errorf("own command topic refused: %v", st.Result())
	}
}

func TestAgentMay(t *testing.T) {
	id := "01JD3Z8Q6P4X2N7M5K9R1T0VWA"
	for _, c := range []struct {
		topic string
		write bool
		want  bool
	}{
		{wire.AlertsTopic("a1"), true, true},
		{wire.StatusTopic("a1"), true, true},
		{wire.EvidenceTopic("a1", id, wire.EvidenceClip), true, true},
		{wire.ReplyTopic("a1"), true, true},
		{wire.CmdTopic("a1"), true, false},    // agents do not command themselves
		{wire.AlertsTopic("a2"), true, false}, // another agent
		{"xl/v1/agents/a1/#", true, false},    // wildcards are not topics
		{wire.OrdersTopic("police"), true, false},
		{wire.CmdTopic("a1"), false, true},
		{wire.CmdTopic("a2"), false, false},
		{"xl/v1/agents/+/cmd", false, false},
		{"#", false, false},
	} {
		if got := AgentMay("a1", c.topic, c.write); got != c.want {
			t.Errorf("AgentMay(a1, %q, write=%v) = %v", c.topic, c.write, got)
		}
	}
}

func TestValidate(t *testing.T) {
	c := Config{Users: []User{
		{Username: "a1", PasswordHash: "plain", Role: RoleAgent},
		{Username: "a1", PasswordHash: "$2a$10$QDDrCTzJzI1ffCHidsPHtOsEd7HgFY4//tSBjDPRuWgutGH2ND73u", Role: "boss"},
		{Username: InternalUser, PasswordHash: "x", Role: RoleCentral},
	}, TLS: TLSConfig{Listen: ":8883"}}
	if got := len(c.Validate()); got != 6 {
		t.Fatalf("%d problems, want 6: %v", got, c.Validate())
	}
}

// TLS with a CA made in the test: an agent that trusts the CA connects, and
// one that does not is refused.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	caFile, certFile, keyFile := writeTestPKI(t, dir)
	b := startBroker(t, Config{Users: users(t), TLS: TLSConfig{Listen: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile}})
	url := "ssl://" + b.TLSAddr()
	if _, err := connect(t, url, "a1", "a1-long-password", &mqttc.TLS{CAFile: caFile, ServerName: "localhost"}); err != nil {
		t.Fatalf("TLS with the test CA: %v", err)
	}
	if _, err := connect(t, url, "a1", "a1-long-password", &mqttc.TLS{ServerName: "localhost"}); err == nil {
		t.Fatal("connected without trusting the CA")
	}
}

func writeTestPKI(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "xl test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTpl, caTpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	for f, blk := range map[string]*pem.Block{caFile: {Type: "CERTIFICATE", Bytes: caDER}, certFile: {Type: "CERTIFICATE", Bytes: der}, keyFile: {Type: "EC PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(f, pem.EncodeToMemory(blk), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return caFile, certFile, keyFile
}
