// Package opshttp is the operations HTTP server both binaries run: health,
// readiness and Prometheus metrics, plus whatever routes the binary adds.
package opshttp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is a readiness check; a non-nil error means not ready.
type Check func(ctx context.Context) error

// Server serves the ops endpoints and the binary's own routes on one address.
type Server struct {
	Mux *http.ServeMux

	log     *slog.Logger
	ln      net.Listener
	srv     *http.Server
	mu      sync.Mutex
	checks  map[string]Check
	running atomic.Bool
	limits  Limits
}

// Limits bound what one HTTP client may cost the server. The zero value of
// a field means its default (DefaultLimits).
type Limits struct {
	// ReadHeaderTimeout: a client that has not sent its request headers
	// by then is disconnected (slowloris).
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included; handlers
	// that take large uploads extend it for themselves.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing a response; streaming and long-waiting
	// handlers (server-sent events, agent commands) manage their own write
	// deadlines with http.ResponseController.
	WriteTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long.
	IdleTimeout time.Duration
	// MaxHeaderBytes is the largest request line and headers; larger
	// requests get 431.
	MaxHeaderBytes int
	// MaxBodyBytes is the largest request body on any route, a backstop
	// for the per-route limits of the handlers; larger bodies get 413.
	MaxBodyBytes int64
}

// DefaultLimits are the limits of a server whose configuration sets none.
func DefaultLimits() Limits {
	return Limits{
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		MaxBodyBytes:      1 << 20,
	}
}

// withDefaults fills in the zero fields of l.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.ReadHeaderTimeout <= 0 {
		l.ReadHeaderTimeout = d.ReadHeaderTimeout
	}
	if l.ReadTimeout <= 0 {
		l.ReadTimeout = d.ReadTimeout
	}
	if l.WriteTimeout <= 0 {
		l.WriteTimeout = d.WriteTimeout
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = d.IdleTimeout
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = d.MaxHeaderBytes
	}
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = d.MaxBodyBytes
	}
	return l
}

// New listens on addr at once, so a taken port is an error here rather than
// later; routes can be added to Mux until Run is called. The server has
// DefaultLimits; NewWithLimits sets others.
func New(addr string, reg *prometheus.Registry, log *slog.Logger) (*Server, error) {
	return NewWithLimits(addr, reg, log, Limits{})
}

// NewWithLimits is New with the limits given (zero fields: defaults).
func NewWithLimits(addr string, reg *prometheus.Registry, log *slog.Logger, lim Limits) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http: listen on %s: %w (set http.addr or XL_HTTP_ADDR to a free address)", addr, err)
	}
	lim = lim.withDefaults()
	s := &Server{Mux: http.NewServeMux(), log: log, ln: ln, checks: map[string]Check{}, limits: lim}
	s.Mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	s.Mux.HandleFunc("GET /readyz", s.readyz)
	s.Mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	s.srv = NewServer(http.MaxBytesHandler(s.Mux, lim.MaxBodyBytes), lim, log)
	return s, nil
}

// NewServer is an http.Server with the limits given (zero fields:
// defaults), for servers that do not need the ops routes.
func NewServer(h http.Handler, lim Limits, log *slog.Logger) *http.Server {
	lim = lim.withDefaults()
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: lim.ReadHeaderTimeout,
		ReadTimeout:       lim.ReadTimeout,
		WriteTimeout:      lim.WriteTimeout,
		IdleTimeout:       lim.IdleTimeout,
		MaxHeaderBytes:    lim.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// Limits are the server's limits, defaults filled in.
func (s *Server) Limits() Limits { return s.limits }

// EnablePprof serves Go's profiler under /debug/pprof/ (opt-in: it reveals
// internals and costs CPU while a profile runs).
func (s *Server) EnablePprof() {
	s.Mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	s.Mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	s.Mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	s.Mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	s.Mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// AddCheck registers a readiness check under name.
func (s *Server) AddCheck(name string, c Check) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks[name] = c
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	s.mu.Lock()
	checks := make(map[string]Check, len(s.checks))
	for k, v := range s.checks {
		checks[k] = v
	}
	s.mu.Unlock()
	res := map[string]string{}
	ok := true
	for name, c := range checks {
		if err := c(ctx); err != nil {
			res[name] = err.Error()
			ok = false
		} else {
			res[name] = "ok"
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"ready": ok, "checks": res})
}

// Run serves until ctx is cancelled, then shuts down gracefully.
func (s *Server) Run(ctx context.Context) error {
	s.running.Store(true)
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	s.log.Info("http listening", "addr", s.Addr())
	select {
	case err := <-errc:
		return fmt.Errorf("http: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		_ = s.srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http: %w", err)
	}
	return nil
}

// Close releases the listener if Run was never called; once Run has
// started, Run owns the graceful shutdown.
func (s *Server) Close() error {
	if s.running.Load() {
		return nil
	}
	err := s.ln.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
