// Package sdnotify tells systemd about the service's state through
// $NOTIFY_SOCKET (sd_notify(3)): READY=1 once running, WATCHDOG=1 keep-alives
// at half the unit's WatchdogSec, STOPPING=1 on shutdown. Outside systemd
// (no NOTIFY_SOCKET) it does nothing.
package sdnotify

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"
)

// Send writes one notification (e.g. "READY=1") to $NOTIFY_SOCKET. It
// reports false, without error, when the variable is unset.
func Send(state string) (bool, error) {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return false, nil
	}
	if addr[0] == '@' { // an abstract socket
		addr = "\x00" + addr[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return false, fmt.Errorf("sdnotify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return false, fmt.Errorf("sdnotify: %w", err)
	}
	return true, nil
}

// WatchdogInterval is the unit's WatchdogSec ($WATCHDOG_USEC), or 0 when the
// watchdog is off or meant for another process ($WATCHDOG_PID).
func WatchdogInterval() time.Duration {
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0
	}
	us, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || us <= 0 {
		return 0
	}
	return time.Duration(us) * time.Microsecond
}

// Check says whether the process is healthy enough to keep the watchdog
// fed; nil means always.
type Check func(ctx context.Context) error

// Notifier is the lifecycle component: add it after the components it
// vouches for (they have bound their ports in New).
type Notifier struct {
	check Check
	log   *slog.Logger
}

// New returns a Notifier; check (may be nil) runs before each keep-alive,
// and a failing check withholds it, so systemd restarts a process that
// stays unhealthy for WatchdogSec.
func New(check Check, log *slog.Logger) *Notifier {
	return &Notifier{check: check, log: log.With("component", "sdnotify")}
}

// Run sends READY=1, then keep-alives until ctx ends, then STOPPING=1.
func (n *Notifier) Run(ctx context.Context) error {
	if _, err := Send("READY=1"); err != nil {
		n.log.Warn("notify systemd", "err", err)
	}
	if iv := WatchdogInterval(); iv > 0 {
		tick := time.NewTicker(iv / 2)
		defer tick.Stop()
		for done := false; !done; {
			select {
			case <-ctx.Done():
				done = true
			case <-tick.C:
				n.keepAlive(ctx, iv/2)
			}
		}
	} else {
		<-ctx.Done()
	}
	if _, err := Send("STOPPING=1"); err != nil {
		n.log.Warn("notify systemd", "err", err)
	}
	return nil
}

func (n *Notifier) keepAlive(ctx context.Context, timeout time.Duration) {
	if n.check != nil {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		err := n.check(cctx)
		cancel()
		if err != nil {
			n.log.Error("watchdog keep-alive withheld: unhealthy", "err", err)
			return
		}
	}
	if _, err := Send("WATCHDOG=1"); err != nil {
		n.log.Warn("notify systemd", "err", err)
	}
}

// Close does nothing: Run sends STOPPING=1.
func (n *Notifier) Close() error { return nil }
