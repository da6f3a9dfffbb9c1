package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/xueliang/xl/central/internal/events"
	"github.com/xueliang/xl/central/internal/store"
)

// Hub is where live updates come from.
type Hub interface {
	Subscribe(accept func(events.Event) bool, after uint64) (*events.Client, bool)
}

// WithEvents adds GET /api/v1/events (server-sent events).
func (a *API) WithEvents(h Hub) *API {
	a.hub = h
	return a
}

// KeepAlive is how often an idle event stream gets a comment, so that
// proxies keep it open and a dead client is noticed.
const KeepAlive = 20 * time.Second

// events streams live updates as server-sent events: "alert", "incident"
// and "order" events whose data is the JSON of the record, each with an
// id for Last-Event-ID. An agency user gets only its own orders' events.
// A "reset" event tells the client that it missed events (its queue
// overflowed or the resume point is gone) and should reload.
func (a *API) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "internal", "streaming unsupported")
		return
	}
	accept := func(events.Event) bool { return true }
	if p, ok := principalOf(r); ok && p.User.Role == store.RoleAgency {
		agency := p.User.AgencyID
		accept = func(e events.Event) bool { return e.Type == events.TypeOrder && e.AgencyID == agency }
	}
	var after uint64
	if s := r.Header.Get("Last-Event-ID"); s != "" {
		after, _ = strconv.ParseUint(s, 10, 64)
	}
	c, resumed := a.hub.Subscribe(accept, after)
	defer c.Close()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	// The stream outlives the server's write timeout: each write gets its
	// own deadline instead, so a client that stops reading is dropped.
	wt := a.lim().WriteTimeout
	extendWrite(w, wt)
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 3000\n\n")
	if !resumed {
		fmt.Fprint(w, "event: reset\ndata: {}\n\n")
	}
	fl.Flush()
	ctx := r.Context()
	var lost uint64
	for {
		wait, cancel := context.WithTimeout(ctx, KeepAlive)
		batch, dropped, err := c.Next(wait)
		cancel()
		if ctx.Err() != nil || errors.Is(err, events.ErrClosed) {
			return
		}
		extendWrite(w, wt)
		if err != nil { // idle
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			if http.NewResponseController(w).Flush() != nil {
				return
			}
			continue
		}
		if dropped > lost {
			lost = dropped
			fmt.Fprint(w, "event: reset\ndata: {}\n\n")
		}
		for _, e := range batch {
			fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.ID, e.Type, e.Data)
		}
		if http.NewResponseController(w).Flush() != nil {
			return // the client is gone or too slow
		}
	}
}
