// Package events is central's in-process hub of live updates for the
// console: new alerts, incident changes, order transitions and cards are
// published here by intake and the dispatcher, and each connected client
// (an SSE stream) reads them from its own bounded queue. A slow client
// loses its oldest events, counted, and never holds up a publisher.
//
// Each replica has its own hub: a client sees the changes its replica made
// or stored, so with several replicas behind one address a console should
// stick to one replica and reload state when it reconnects.
package events

import (
	"context"
	"encoding/json"
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Event types.
const (
	TypeAlert    = "alert"    // a new alert was stored
	TypeIncident = "incident" // an incident was created or changed
	TypeOrder    = "order"    // an order was created or changed (transitions, cards)
)

// Event is one live update.
type Event struct {
	ID       uint64          // assigned by Publish, increasing
	Type     string          // TypeAlert, TypeIncident or TypeOrder
	AgencyID string          // the agency an order event concerns; empty otherwise
	Data     json.RawMessage // the JSON the client receives
}

// Default sizes.
const (
	DefaultQueue   = 256  // events a client may lag behind before losing its oldest
	DefaultHistory = 1024 // recent events kept for Last-Event-ID resume
)

// Hub fans events out to subscribers.
type Hub struct {
	mu      sync.Mutex
	next    uint64
	history []Event // ring of recent events, oldest first once full
	histPos int
	histCap int
	queue   int
	clients map[*Client]struct{}
	closed  bool

	published prometheus.Counter
	dropped   prometheus.Counter
	connected prometheus.Gauge
}

// New returns a hub registering its metrics on reg.
func New(reg prometheus.Registerer) *Hub {
	f := promauto.With(reg)
	return &Hub{
		histCap: DefaultHistory, queue: DefaultQueue, clients: make(map[*Client]struct{}),
		published: f.NewCounter(prometheus.CounterOpts{Name: "xl_central_events_published_total", Help: "Live updates published to console clients."}),
		dropped: f.NewCounter(prometheus.CounterOpts{Name: "xl_central_events_dropped_total",
			Help: "Live updates a slow client lost (its queue was full; the oldest went)."}),
		connected: f.NewGauge(prometheus.GaugeOpts{Name: "xl_central_events_clients", Help: "Connected live-update clients."}),
	}
}

// Publish assigns the event its ID and queues it for every subscriber
// whose filter accepts it. It never blocks on a client.
func (h *Hub) Publish(ev Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.next++
	ev.ID = h.next
	if len(h.history) < h.histCap {
		h.history = append(h.history, ev)
	} else {
		h.history[h.histPos] = ev
		h.histPos = (h.histPos + 1) % h.histCap
	}
	h.published.Inc()
	for c := range h.clients {
		if c.accept(ev) {
			c.push(ev)
		}
	}
}

// Subscribe registers a client that receives the events accept allows.
// With after > 0 (a Last-Event-ID), the recent events after it are queued
// first; resumed is false when some of them were no longer kept. The
// client must be closed.
func (h *Hub) Subscribe(accept func(Event) bool, after uint64) (c *Client, resumed bool) {
	c = &Client{h: h, accept: accept, buf: make([]Event, 0, h.queue), max: h.queue, ready: make(chan struct{}, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	resumed = true
	if after > 0 && after < h.next {
		n := len(h.history)
		if h.history[h.histPos%n].ID > after+1 {
			resumed = false // the events just after it are gone
		}
		for i := range n {
			ev := h.history[(h.histPos+i)%n]
			if ev.ID > after && accept(ev) {
				c.push(ev)
			}
		}
	}
	c.ended = h.closed
	h.clients[c] = struct{}{}
	h.connected.Inc()
	return c, resumed
}

// ErrClosed is returned by Next once the hub is closed.
var ErrClosed = errors.New("events: hub closed")

// Run waits for ctx (the hub has no goroutine of its own; it is a
// component so that Close ends the streams before the HTTP server stops).
func (h *Hub) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// Close ends every client's stream: their Next returns ErrClosed.
func (h *Hub) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for c := range h.clients {
		c.mu.Lock()
		c.ended = true
		c.mu.Unlock()
		select {
		case c.ready <- struct{}{}:
		default:
		}
	}
	return nil
}

// Clients is the number of connected clients.
func (h *Hub) Clients() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.clients)
}

// LastID is the ID of the last event published.
func (h *Hub) LastID() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.next
}

// Client is one subscriber with its bounded queue.
type Client struct {
	h      *Hub
	accept func(Event) bool

	mu      sync.Mutex
	buf     []Event
	max     int
	dropped uint64
	ready   chan struct{}
	closed  bool
	ended   bool // the hub closed
}

func (c *Client) push(ev Event) {
	c.mu.Lock()
	if len(c.buf) == c.max {
		copy(c.buf, c.buf[1:])
		c.buf = c.buf[:len(c.buf)-1]
		c.dropped++
		c.h.dropped.Inc()
	}
	c.buf = append(c.buf, ev)
	c.mu.Unlock()
	select {
	case c.ready <- struct{}{}:
	default:
	}
}

// Next waits for events and returns those queued, oldest first, and how
// many this client has lost so far; it returns ctx's error when ctx ends.
func (c *Client) Next(ctx context.Context) ([]Event, uint64, error) {
	for {
		c.mu.Lock()
		if len(c.buf) > 0 {
			out := make([]Event, len(c.buf))
			copy(out, c.buf)
			c.buf = c.buf[:0]
			d := c.dropped
			c.mu.Unlock()
			return out, d, nil
		}
		ended := c.ended
		c.mu.Unlock()
		if ended {
			return nil, 0, ErrClosed
		}
		select {
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-c.ready:
		}
	}
}

// Close unsubscribes the client.
func (c *Client) Close() {
	c.h.mu.Lock()
	defer c.h.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	delete(c.h.clients, c)
	c.h.connected.Dec()
}
