package events

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func all(Event) bool { return true }

func TestFanOutFilterAndOrder(t *testing.T) {
	h := New(prometheus.NewRegistry())
	everyone, _ := h.Subscribe(all, 0)
	defer everyone.Close()
	river, _ := h.Subscribe(func(e Event) bool { return e.Type == TypeOrder && e.AgencyID == "river-police" }, 0)
	defer river.Close()
	h.Publish(Event{Type: TypeAlert, Data: json.RawMessage(`{}`)})
	h.Publish(Event{Type: TypeOrder, AgencyID: "agri-brigade", Data: json.RawMessage(`{}`)})
	h.Publish(Event{Type: TypeOrder, AgencyID: "river-police", Data: json.RawMessage(`{}`)})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, _, err := everyone.Next(ctx)
	if err != nil || len(got) != 3 || got[0].ID != 1 || got[2].ID != 3 {
		t.Fatalf("everyone got %+v, %v", got, err)
	}
	got, _, err = river.Next(ctx)
	if err != nil || len(got) != 1 || got[0].AgencyID != "river-police" {
		t.Fatalf("river-police got %+v, %v", got, err)
	}
}

func TestSlowClientLosesOldestAndPublisherNeverBlocks(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := New(reg)
	c, _ := h.Subscribe(all, 0)
	defer c.Close()
	for range DefaultQueue + 10 {
		h.Publish(Event{Type: TypeAlert})
	}
	got, dropped, err := c.Next(context.Background())
	if err != nil || len(got) != DefaultQueue || dropped != 10 || got[0].ID != 11 {
		t.Fatalf("got %d events from ID %d, dropped %d, %v", len(got), got[0].ID, dropped, err)
	}
	if n := testutil.ToFloat64(h.dropped); n != 10 {
		t.Fatalf("dropped metric = %v", n)
	}
}

func TestResumeAfterLastEventID(t *testing.T) {
	h := New(prometheus.NewRegistry())
	for range 5 {
		h.Publish(Event{Type: TypeAlert})
	}
	c, resumed := h.Subscribe(all, 3)
	defer c.Close()
	got, _, _ := c.Next(context.Background())
	if !resumed || len(got) != 2 || got[0].ID != 4 {
		t.Fatalf("resume after 3: %+v resumed=%v", got, resumed)
	}
	for range DefaultHistory + 5 {
		h.Publish(Event{Type: TypeAlert})
	}
	c2, resumed := h.Subscribe(all, 2)
	defer c2.Close()
	if resumed {
		t.Fatal("resume from an event no longer kept reported complete")
	}
	c.Close()
	c.Close() // twice is fine
	if n := testutil.ToFloat64(h.connected); n != 1 {
		t.Fatalf("clients gauge = %v, want 1", n)
	}
}

func TestNextEndsWithContext(t *testing.T) {
	h := New(prometheus.NewRegistry())
	c, _ := h.Subscribe(all, 0)
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := c.Next(ctx); err == nil {
		t.Fatal("Next returned no error after cancel")
	}
}

func TestCloseEndsStreams(t *testing.T) {
	h := New(prometheus.NewRegistry())
	c, _ := h.Subscribe(all, 0)
	defer c.Close()
	done := make(chan error, 1)
	go func() { _, _, err := c.Next(context.Background()); done <- err }()
	h.Close()
	if err := <-done; err != ErrClosed {
		t.Fatalf("Next after Close = %v", err)
	}
}
