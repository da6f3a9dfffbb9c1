package storetest

import (
	"maps"
	"testing"
	"time"

	"github.com/xueliang/xl/central/internal/order"
	"github.com/xueliang/xl/central/internal/store"
	"github.com/xueliang/xl/internal/wire"
)

// testStats: the counts behind central's state gauges, cards only of the
// orders that still need work.
func testStats(t *testing.T, open func(*testing.T) Store) {
	s := open(t)
	ctx := t.Context()
	empty, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []store.Counts{empty.Incidents, empty.Orders, empty.Cards, empty.Agents, empty.Egress} {
		if c == nil || len(c) != 0 {
			t.Fatalf("empty store: %+v", empty)
		}
	}
	inc, inc2 := incident("c1", t0), incident("c2", t0.Add(time.Second))
	inc2.State = order.IncidentClosed
	red := orderRec(inc.ID, "agri-brigade", order.RoleLead, t0)
	red.Order.Card = order.CardRed
	plain := orderRec(inc.ID, "river-police", order.RoleSupport, t0.Add(time.Millisecond))
	plain.Order.State = order.StateDispatched
	closed := orderRec(inc2.ID, "agri-brigade", order.RoleLead, t0.Add(2*time.Millisecond))
	closed.Order.State, closed.Order.Card = order.StateClosed, order.CardYellow
	mustTx(t, s, func(tx store.Tx) error {
		for _, i := range []store.Incident{inc, inc2} {
			if err := tx.InsertIncident(i); err != nil {
				return err
			}
		}
		for _, o := range []store.OrderRecord{red, plain, closed} {
			if err := tx.InsertOrder(o); err != nil {
				return err
			}
		}
		return nil
	})
	for i, st := range []wire.AgentState{wire.StateOnline, wire.StateOnline, wire.StateOffline} {
		if err := s.PutAgentStatus(ctx, &wire.Status{AgentID: string(rune('a' + i)), State: st, TS: t0}, t0); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what      string
		got, want store.Counts
	}{
		{"incidents", got.Incidents, store.Counts{string(order.IncidentOpen): 1, string(order.IncidentClosed): 1}},
		{"orders", got.Orders, store.Counts{"pending": 1, "dispatched": 1, "closed": 1}},
		{"cards of active orders", got.Cards, store.Counts{"red": 1, "none": 1}},
		{"agents", got.Agents, store.Counts{"online": 2, "offline": 1}},
		{"egress", got.Egress, store.Counts{}},
	} {
		if !maps.Equal(c.got, c.want) {
			t.Errorf("%s: %v, want %v", c.what, c.got, c.want)
		}
	}
}
