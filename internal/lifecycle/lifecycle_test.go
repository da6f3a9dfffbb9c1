package lifecycle

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

type part struct {
	name   string
	log    *[]string
	mu     *sync.Mutex
	runErr error
}

func (p part) Run(ctx context.Context) error {
	if p.runErr != nil {
		return p.runErr
	}
	<-ctx.Done()
	return nil
}

func (p part) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	*p.log = append(*p.log, p.name)
	return nil
}

func TestStopsInReverseOrder(t *testing.T) {
	var log []string
	var mu sync.Mutex
	var g Group
	g.Add(part{"store", &log, &mu, nil}, part{"broker", &log, &mu, nil}, part{"http", &log, &mu, nil})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := g.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(log, ","); got != "http,broker,store" {
		t.Fatalf("closed in order %s", got)
	}
}

func TestOneFailureStopsAll(t *testing.T) {
	var log []string
	var mu sync.Mutex
	var g Group
	boom := errors.New("boom")
	g.Add(part{"a", &log, &mu, nil}, part{"b", &log, &mu, boom})
	err := g.Run(context.Background())
	if !errors.Is(err, boom) {
		t.Fatalf("err %v, want boom", err)
	}
	if len(log) != 2 {
		t.Fatalf("closed %v, want both", log)
	}
}

// runUntilClosed records whether Close came while Run was still running.
type watched struct {
	running    *sync.Mutex
	closedLive *bool
}

func (w watched) Run(ctx context.Context) error {
	w.running.Lock()
	defer w.running.Unlock()
	<-ctx.Done()
	time.Sleep(20 * time.Millisecond) // still working after the cancel
	return nil
}

func (w watched) Close() error {
	if !w.running.TryLock() {
		*w.closedLive = true
		return nil
	}
	w.running.Unlock()
	return nil
}

func TestCloseWaitsForRun(t *testing.T) {
	var mu sync.Mutex
	closedLive := false
	var g Group
	g.Add(watched{&mu, &closedLive})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	g.Run(ctx)
	if closedLive {
		t.Fatal("Close was called while Run was still running")
	}
}
