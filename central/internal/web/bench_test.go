package web

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xueliang/xl/central/internal/events"
)

// BenchmarkSSEFanOut200 connects 200 console streams (real HTTP, token
// auth) and publishes one event per iteration; each event's delivery time
// (publish → parsed by the client) is measured on every stream. Reports the
// p50 and p99 over all deliveries.
func BenchmarkSSEFanOut200(b *testing.B) {
	const clients = 200
	w := newWorld(b)
	defer w.srv.Close()
	tr := &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: clients}
	hc := &http.Client{Transport: tr}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var lat []float64
	got := make(chan struct{}, clients*64)
	var wg sync.WaitGroup
	for range clients {
		req, _ := http.NewRequestWithContext(ctx, "GET", w.srv.URL+"/api/v1/events", nil)
		req.Header.Set("Authorization", "Bearer "+w.tok["duty"])
		resp, err := hc.Do(req)
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("stream: %v", err)
		}
		wg.Go(func() {
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				line := sc.Text()
				if !strings.HasPrefix(line, "data: {\"t\":") {
					continue
				}
				var d struct{ T int64 }
				if json.Unmarshal([]byte(line[6:]), &d) != nil {
					continue
				}
				ms := float64(time.Now().UnixNano()-d.T) / 1e6
				mu.Lock()
				lat = append(lat, ms)
				mu.Unlock()
				got <- struct{}{}
			}
		})
	}
	for w.hub.Clients() < clients {
		time.Sleep(5 * time.Millisecond)
	}
	for b.Loop() {
		w.hub.Publish(events.Event{Type: events.TypeAlert, Data: json.RawMessage(`{"t":` + strconv.FormatInt(time.Now().UnixNano(), 10) + `}`)})
		for range clients {
			<-got
		}
	}
	cancel()
	tr.CloseIdleConnections()
	w.srv.CloseClientConnections()
	wg.Wait()
	sort.Float64s(lat)
	if len(lat) == 0 {
		b.Fatal("no deliveries")
	}
	b.ReportMetric(lat[len(lat)/2], "p50-ms")
	b.ReportMetric(lat[len(lat)*99/100], "p99-ms")
	b.ReportMetric(float64(clients), "clients")
}
