package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/xueliang/xl/central/internal/broker"
	"github.com/xueliang/xl/central/internal/store"
	"github.com/xueliang/xl/internal/pgtest"
	"github.com/xueliang/xl/internal/testenv"
	"github.com/xueliang/xl/internal/wire"
)

// demoHash is the bcrypt hash of demoPassword (configs/central.yaml).
const (
	demoHash     = "$2a$10$QDDrCTzJzI1ffCHidsPHtOsEd7HgFY4//tSBjDPRuWgutGH2ND73u"
	demoPassword = "xueliang-demo-2026"
)

// inbox collects what an MQTT client receives.
type inbox struct {
	mu   sync.Mutex
	msgs []wire.OrderMessage
}

func (b *inbox) add(_ mqtt.Client, m mqtt.Message) {
	var om wire.OrderMessage
	if err := json.Unmarshal(m.Payload(), &om); err == nil {
		b.mu.Lock()
		b.msgs = append(b.msgs, om)
		b.mu.Unlock()
	}
}

func (b *inbox) get() []wire.OrderMessage {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]wire.OrderMessage(nil), b.msgs...)
}

func connect(t *testing.T, addr, user string) mqtt.Client {
	t.Helper()
	o := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(user + "-test").SetUsername(user).SetPassword(demoPassword).
		SetCleanSession(true).SetConnectTimeout(5 * time.Second)
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("%s: connect: %v", user, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The reference case's orders reach the agencies over MQTT and a
// webhook; the lead accepts over MQTT; an agency cannot act on another's
// order, and the broker keeps each agency to its own topics. On both
// stores.
func TestOrdersReachAgenciesAndAcksComeBack(t *testing.T) {
	for _, driver := range []string{"sqlite", "postgres"} {
		t.Run(driver, func(t *testing.T) { testOrdersReachAgencies(t, driver) })
	}
}

func testOrdersReachAgencies(t *testing.T, driver string) {
	dir := t.TempDir()
	cfgPath, _ := shippedWithStore(t, dir)
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if driver == "postgres" {
		cfg.Store.Driver, cfg.Store.DSN = "postgres", pgtest.Schema(t)
	}
	var hookMu sync.Mutex
	var hooked []wire.OrderMessage
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var m wire.OrderMessage
		if json.Unmarshal(body, &m) != nil || r.Header.Get("X-XL-Signature") == "" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		hookMu.Lock()
		hooked = append(hooked, m)
		hookMu.Unlock()
	}))
	defer hook.Close()
	for i := range cfg.Routing.Agencies {
		if cfg.Routing.Agencies[i].ID == "river-police" {
			cfg.Routing.Agencies[i].Webhook = hook.URL
		}
	}
	cfg.Egress.WebhookSecret = "test-secret"
	cfg.HTTP.Addr = testenv.FreeAddr(t)
	cfg.HTTP.PublicURL = "https://xl.example.gov.cn"
	cfg.Broker.Listen = testenv.FreeAddr(t)
	cfg.Broker.Users = []broker.User{
		{Username: "hm-lixin-01", PasswordHash: demoHash, Role: broker.RoleAgent},
		{Username: "agri-brigade", PasswordHash: demoHash, Role: broker.RoleAgency},
		{Username: "river-police", PasswordHash: demoHash, Role: broker.RoleAgency},
	}
	ctx, cancel := context.WithCancel(context.Background())
	c, err := New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	token := apiToken(t, c, store.RoleOfficer)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	agri, police := &inbox{}, &inbox{}
	ac := connect(t, cfg.Broker.Listen, "agri-brigade")
	if tok := ac.Subscribe(wire.OrdersTopic("agri-brigade"), 1, agri.add); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	pc := connect(t, cfg.Broker.Listen, "river-police")
	if tok := pc.Subscribe(wire.OrdersTopic("river-police"), 1, police.add); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	// Another agency's orders are not readable (the subscription is
	// refused or delivers nothing).
	snoop := &inbox{}
	pc.Subscribe(wire.OrdersTopic("agri-brigade"), 1, snoop.add).WaitTimeout(5 * time.Second)

	agent := connect(t, cfg.Broker.Listen, "hm-lixin-01")
	now := time.Now().UTC()
	a := &wire.Alert{Schema: wire.SchemaAlert, AlertID: wire.NewULID(now), EventID: "ev-1", Phase: wire.PhaseStart,
		AgentID: "hm-lixin-01", CameraID: "lixin-sluice-east", Type: "illegal_fishing", Severity: 2, Zone: "lawn",
		StartedAt: now, DetectedAt: now, PublishedAt: now}
	payload, err := wire.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	if tok := agent.Publish(wire.AlertsTopic("hm-lixin-01"), 1, false, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish alert: %v", tok.Error())
	}

	waitUntil(t, "orders at both agencies and the webhook", func() bool {
		hookMu.Lock()
		defer hookMu.Unlock()
		return len(agri.get()) == 1 && len(police.get()) == 1 && len(hooked) == 1
	})
	lead := agri.get()[0]
	if lead.Event != wire.OrderDispatched || lead.Role != "lead" || lead.Type != "illegal_fishing" || lead.Place.Code != "HM-ZY-QZ-03" ||
		lead.Place.NameZH == "" || lead.Links.Order != "https://xl.example.gov.cn/api/v1/orders/"+lead.OrderID || lead.Deadline.IsZero() {
		t.Fatalf("lead order message: %+v", lead)
	}
	if police.get()[0].Role != "support" || hooked[0].OrderID != police.get()[0].OrderID {
		t.Fatalf("support: %+v, webhook %+v", police.get()[0], hooked[0])
	}

	ack := func(cl mqtt.Client, agency string, m wire.OrderMessage, cmdID, action string) {
		t.Helper()
		b, _ := json.Marshal(wire.OrderAck{Schema: wire.SchemaOrderAck, OrderID: m.OrderID, CmdID: cmdID, Action: action,
			ExpectedVersion: m.Version, Actor: "unit-3"})
		if tok := cl.Publish(wire.AckTopic(agency), 1, false, b); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("ack: %v", tok.Error())
		}
	}
	orderState := func(id string) (string, int) {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/api/v1/orders/%s", cfg.HTTP.Addr, id), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			Order struct {
				State string `json:"state"`
			} `json:"order"`
			Deliveries []struct {
				State string `json:"state"`
			} `json:"deliveries"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		return out.Order.State, len(out.Deliveries)
	}
	// River police tries to accept the brigade's order through its own
	// acks topic: refused, the order does not move.
	ack(pc, "river-police", lead, "c-forged", "accept")
	// An agency cannot close or cancel, even its own order.
	ack(pc, "river-police", police.get()[0], "c-close", "cancel")
	// The brigade accepts its own order.
	ack(ac, "agri-brigade", lead, "c-1", "accept")
	waitUntil(t, "the lead order accepted", func() bool { s, _ := orderState(lead.OrderID); return s == "accepted" })
	if _, n := orderState(lead.OrderID); n != 1 {
		t.Fatalf("lead deliveries: %d", n)
	}
	if got := counterValue(t, c, "xl_central_order_acks_total", "forbidden"); got != 2 {
		t.Fatalf("forbidden acks: %v", got)
	}
	if s, _ := orderState(police.get()[0].OrderID); s != "dispatched" {
		t.Fatalf("support order %s after a forbidden cancel", s)
	}
	if len(snoop.get()) != 0 {
		t.Fatalf("river police read the brigade's orders: %+v", snoop.get())
	}
}

func counterValue(t *testing.T, c *Central, name, result string) float64 {
	t.Helper()
	mfs, err := c.Reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
