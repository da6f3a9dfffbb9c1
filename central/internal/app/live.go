package app

import (
	"context"
	"encoding/json"
	"time"

	"github.com/xueliang/xl/central/internal/events"
	"github.com/xueliang/xl/central/internal/routing"
	"github.com/xueliang/xl/central/internal/store"
	"github.com/xueliang/xl/central/internal/web"
	"github.com/xueliang/xl/internal/wire"
)

// liveStore is the dispatcher's store: after each committed transaction it
// publishes the incidents and orders the transaction wrote to the hub of
// live updates (nothing of a rolled-back one).
type liveStore struct {
	Store
	hub *events.Hub
}

func (s liveStore) InTx(ctx context.Context, fn func(store.Tx) error) error {
	var rec *recordingTx
	err := s.Store.InTx(ctx, func(tx store.Tx) error {
		rec = &recordingTx{Tx: tx} // afresh on every attempt
		return fn(rec)
	})
	if err == nil && rec != nil {
		rec.publish(s.hub)
	}
	return err
}

// recordingTx remembers the last version of each incident and order written.
type recordingTx struct {
	store.Tx
	incidents []store.Incident
	orders    []store.OrderRecord
}

func (t *recordingTx) InsertIncident(inc store.Incident) error {
	err := t.Tx.InsertIncident(inc)
	if err == nil {
		t.incidents = append(t.incidents, inc)
	}
	return err
}

func (t *recordingTx) UpdateIncident(inc store.Incident, prev int64) error {
	err := t.Tx.UpdateIncident(inc, prev)
	if err == nil {
		t.incidents = append(t.incidents, inc)
	}
	return err
}

func (t *recordingTx) InsertOrder(r store.OrderRecord) error {
	err := t.Tx.InsertOrder(r)
	if err == nil {
		t.orders = append(t.orders, r)
	}
	return err
}

func (t *recordingTx) UpdateOrder(r store.OrderRecord, prev int64, claim time.Time) error {
	err := t.Tx.UpdateOrder(r, prev, claim)
	if err == nil {
		t.orders = append(t.orders, r)
	}
	return err
}

func (t *recordingTx) publish(h *events.Hub) {
	seen := map[string]bool{}
	for i := len(t.incidents) - 1; i >= 0; i-- { // the last version of each
		inc := t.incidents[i]
		if seen[inc.ID] {
			continue
		}
		seen[inc.ID] = true
		if b, err := json.Marshal(inc); err == nil {
			h.Publish(events.Event{Type: events.TypeIncident, Data: b})
		}
	}
	for i := len(t.orders) - 1; i >= 0; i-- {
		r := t.orders[i]
		if seen[r.Order.ID] {
			continue
		}
		seen[r.Order.ID] = true
		if b, err := json.Marshal(web.ViewOrder(r)); err == nil {
			h.Publish(events.Event{Type: events.TypeOrder, AgencyID: r.Order.AgencyID, Data: b})
		}
	}
}

// publishAlerts announces newly stored alerts.
func publishAlerts(h *events.Hub, alerts []*wire.Alert) {
	for _, a := range alerts {
		if b, err := json.Marshal(a); err == nil {
			h.Publish(events.Event{Type: events.TypeAlert, Data: b})
		}
	}
}

// places is what the console shows of the routing configuration.
func places(cfg *routing.Config) web.Places {
	var p web.Places
	for _, c := range cfg.Cameras {
		ci := web.CameraInfo{ID: c.ID, Grid: c.Grid, NameZH: c.NameZH, NameEN: c.NameEN}
		if c.Geo != nil {
			ci.Geo = &wire.Geo{Lat: c.Geo.Lat, Lon: c.Geo.Lon}
		}
		for _, z := range c.Zones {
			ci.Zones = append(ci.Zones, z.Name)
		}
		p.Cameras = append(p.Cameras, ci)
	}
	for _, a := range cfg.Agencies {
		p.Agencies = append(p.Agencies, web.AgencyInfo{ID: a.ID, NameZH: a.NameZH, NameEN: a.NameEN, Level: a.Level})
	}
	return p
}
