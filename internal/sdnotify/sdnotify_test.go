package sdnotify

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// listen makes a unixgram socket as systemd does and points NOTIFY_SOCKET
// at it.
func listen(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return conn
}

func recv(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 256)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	return string(buf[:n])
}

func TestSendWithoutSocketIsANoOp(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if sent, err := Send("READY=1"); sent || err != nil {
		t.Fatalf("sent %v, err %v", sent, err)
	}
}

func TestReadyWatchdogStopping(t *testing.T) {
	conn := listen(t)
	t.Setenv("WATCHDOG_USEC", "100000") // 100 ms: keep-alives every 50 ms
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	var healthy atomic.Bool
	var checks atomic.Int32
	n := New(func(context.Context) error {
		checks.Add(1)
		if !healthy.Load() {
			return errors.New("store down")
		}
		return nil
	}, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()

	if got := recv(t, conn); got != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", got)
	}
	// Unhealthy: the checks run but no keep-alive is sent.
	for checks.Load() < 3 {
		time.Sleep(10 * time.Millisecond)
	}
	healthy.Store(true)
	if got := recv(t, conn); got != "WATCHDOG=1" {
		t.Fatalf("after the check passed: %q, want WATCHDOG=1 (and nothing while it failed)", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for {
		got := recv(t, conn)
		if got == "STOPPING=1" {
			break
		}
		if got != "WATCHDOG=1" {
			t.Fatalf("unexpected %q", got)
		}
	}
}

func TestWatchdogForAnotherProcess(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "5000000")
	t.Setenv("WATCHDOG_PID", "1")
	if os.Getpid() != 1 && WatchdogInterval() != 0 {
		t.Fatal("the watchdog of another PID must be ignored")
	}
	t.Setenv("WATCHDOG_PID", "")
	if WatchdogInterval() != 5*time.Second {
		t.Fatalf("interval %v", WatchdogInterval())
	}
}
