package storetest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/xueliang/xl/central/internal/store"
)

// Messages to agencies: queued in a transaction (and not when it rolls
// back), due in the order queued, held back behind an earlier message to
// the same target that waits for a retry, recorded once, dead letters
// retried by hand.
func testEgress(t *testing.T, open func(*testing.T) Store) {
	s := open(t)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	msg := func(target, order string) store.Egress {
		return store.Egress{Channel: store.ChannelMQTT, Target: target, AgencyID: "river-police", OrderID: order,
			Event: "dispatched", Payload: []byte(`{"order_id":"` + order + `"}`), CreatedAt: t0}
	}
	mustTx(t, s, func(tx store.Tx) error {
		return tx.EnqueueEgress(msg("a", "o1"), msg("b", "o2"), msg("a", "o3"))
	})
	if err := s.InTx(ctx, func(tx store.Tx) error {
		if err := tx.EnqueueEgress(msg("a", "rolled-back")); err != nil {
			return err
		}
		return errors.New("roll back")
	}); err == nil {
		t.Fatal("rollback reported success")
	}
	orders := func(list []store.Egress) []string {
		var out []string
		for _, e := range list {
			out = append(out, e.OrderID)
		}
		return out
	}
	due, err := s.DueEgress(ctx, t0, 100)
	if err != nil || !slices.Equal(orders(due), []string{"o1", "o2", "o3"}) {
		t.Fatalf("due: %v %v", orders(due), err)
	}
	if string(due[0].Payload) != `{"order_id":"o1"}` || due[0].State != store.EgressPending || !due[0].CreatedAt.Equal(t0) {
		t.Fatalf("round trip: %+v", due[0])
	}
	if at, ok, err := s.NextEgress(ctx); err != nil || !ok || !at.Equal(t0) {
		t.Fatalf("next: %v %v %v", at, ok, err)
	}
	// o1 fails and waits 10 s: o3 (same target) waits behind it, o2 not.
	e1 := due[0]
	e1.Attempts, e1.LastError, e1.NextAt = 1, "broker down", t0.Add(10*time.Second)
	if err := s.UpdateEgress(ctx, e1); err != nil {
		t.Fatal(err)
	}
	if due, _ = s.DueEgress(ctx, t0.Add(time.Second), 100); !slices.Equal(orders(due), []string{"o2"}) {
		t.Fatalf("due while o1 waits: %v", orders(due))
	}
	if due, _ = s.DueEgress(ctx, t0.Add(10*time.Second), 100); !slices.Equal(orders(due), []string{"o1", "o2", "o3"}) {
		t.Fatalf("due after the wait: %v", orders(due))
	}
	// Delivered once: a second record of the same message conflicts.
	e1 = due[0]
	e1.State, e1.Attempts, e1.DeliveredAt = store.EgressDelivered, 2, t0.Add(11*time.Second)
	if err := s.UpdateEgress(ctx, e1); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateEgress(ctx, e1); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second record: %v, want ErrConflict", err)
	}
	// o2 dies; retried by hand it is due again.
	e2 := due[1]
	e2.State, e2.Attempts, e2.LastError = store.EgressDead, 12, "404"
	if err := s.UpdateEgress(ctx, e2); err != nil {
		t.Fatal(err)
	}
	dead, err := s.ListEgress(ctx, store.EgressFilter{State: store.EgressDead})
	if err != nil || len(dead) != 1 || dead[0].OrderID != "o2" || dead[0].LastError != "404" || !dead[0].NextAt.IsZero() {
		t.Fatalf("dead letters: %+v %v", dead, err)
	}
	if err := s.RetryEgress(ctx, e1.ID, t0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("retry of a delivered message: %v, want ErrConflict", err)
	}
	if err := s.RetryEgress(ctx, e2.ID, t0.Add(20*time.Second)); err != nil {
		t.Fatal(err)
	}
	if due, _ = s.DueEgress(ctx, t0.Add(20*time.Second), 100); !slices.Equal(orders(due), []string{"o2", "o3"}) {
		t.Fatalf("due after the retry: %v", orders(due))
	}
	list, err := s.ListEgress(ctx, store.EgressFilter{OrderID: "o1"})
	if err != nil || len(list) != 1 || list[0].State != store.EgressDelivered || list[0].Attempts != 2 || list[0].DeliveredAt.IsZero() {
		t.Fatalf("by order: %+v %v", list, err)
	}
	if all, _ := s.ListEgress(ctx, store.EgressFilter{}); len(all) != 3 {
		t.Fatalf("%d messages (the rolled-back one must not be there)", len(all))
	}
}
