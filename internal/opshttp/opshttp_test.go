package opshttp

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// start runs a server with lim on a free port until the test ends.
func start(t *testing.T, lim Limits) *Server {
	t.Helper()
	s, err := NewWithLimits("127.0.0.1:0", prometheus.NewRegistry(), slog.New(slog.DiscardHandler), lim)
	if err != nil {
		t.Fatal(err)
	}
	s.Mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		_, _ = w.Write(b)
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return s
}

// A client that trickles its headers is disconnected once
// ReadHeaderTimeout has passed, while other clients are served meanwhile.
func TestSlowlorisIsDisconnected(t *testing.T) {
	s := start(t, Limits{ReadHeaderTimeout: 300 * time.Millisecond, ReadTimeout: 10 * time.Second})
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	// Trickle one header line every 50 ms until the server hangs up.
	stop := make(chan struct{})
	trickled := make(chan struct{})
	go func() {
		defer close(trickled)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := io.WriteString(conn, "X-Slow: 1\r\n"); err != nil {
					return
				}
			}
		}
	}()
	defer func() { close(stop); <-trickled }()

	// A normal client is served while the slow one trickles.
	resp, err := http.Get("http://" + s.Addr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("normal client: %d", resp.StatusCode)
	}

	// The server closes the slow connection without answering. The read
	// deadline only keeps a broken server from hanging the test.
	_ = conn.SetReadDeadline(time.Now().Add(time.Minute))
	b, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept the slowloris connection open (read %q)", b)
	}
	if strings.HasPrefix(string(b), "HTTP/1.1 200") {
		t.Fatalf("the slow request was served: %q", b)
	}
}

func TestHugeHeaderGets431(t *testing.T) {
	s := start(t, Limits{MaxHeaderBytes: 8 << 10})
	req, _ := http.NewRequest("GET", "http://"+s.Addr()+"/healthz", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 64<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("huge header: %d, want 431", resp.StatusCode)
	}
	// A request within the limit still works.
	req.Header.Set("X-Big", "small")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("small header: %d", resp.StatusCode)
	}
}

func TestBodyBackstop(t *testing.T) {
	s := start(t, Limits{MaxBodyBytes: 1 << 10})
	for _, tc := range []struct {
		size int
		want int
	}{{1 << 10, 200}, {1<<10 + 1, 413}} {
		resp, err := http.Post("http://"+s.Addr()+"/echo", "text/plain", strings.NewReader(strings.Repeat("x", tc.size)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%d bytes: %d, want %d", tc.size, resp.StatusCode, tc.want)
		}
	}
}

func TestDefaultLimits(t *testing.T) {
	s := start(t, Limits{})
	if s.Limits() != DefaultLimits() || s.srv.WriteTimeout != DefaultLimits().WriteTimeout || s.srv.MaxHeaderBytes != 64<<10 {
		t.Fatalf("limits %+v, server %+v", s.Limits(), s.srv)
	}
}
