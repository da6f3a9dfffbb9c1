package rtsp

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// pacedConn reads a TCP connection in batches once paced is set: instead of
// waking for every burst of RTP packets (25 or more a second per camera,
// each wake-up a few context switches, which cost more than the packets on
// a small or virtualised box), the reader sleeps for the interval and then
// takes everything the kernel has buffered in one read. The kernel is told
// (SO_RCVLOWAT) not to signal the socket readable for less than a large
// amount, so the Go network poller is not woken by the packets either.
//
// Before paced is set (the RTSP handshake) and on connections that are not
// plain TCP it reads as usual. Writes, deadlines and Close are the
// connection's own; a closed connection ends the next Read within one
// interval. Flow control is unaffected: a read that fills the buffer is
// followed by another without sleeping, so a stream faster than one buffer
// per interval is never held back.
type pacedConn struct {
	net.Conn
	raw      syscall.RawConn // nil: not a TCP connection, never paced
	interval time.Duration
	paced    *atomic.Bool
	sleep    func(time.Duration) // time.Sleep; tests count calls

	buf    []byte
	r, w   int  // buf[r:w] is read but not yet returned
	lowat  bool // SO_RCVLOWAT set
	filled bool // the last read filled buf: more is likely waiting
}

// pacedBufferSize is the most one paced read takes: a second of a 4 Mbit/s
// main stream (a fuller socket is read again at once).
const pacedBufferSize = 512 << 10

// pacedLowWater is the SO_RCVLOWAT set on paced sockets (the kernel caps it
// at half its maximum receive buffer).
const pacedLowWater = 1 << 20

func newPacedConn(nc net.Conn, interval time.Duration, paced *atomic.Bool) *pacedConn {
	c := &pacedConn{Conn: nc, interval: interval, paced: paced, sleep: time.Sleep}
	if tc, ok := nc.(*net.TCPConn); ok {
		if raw, err := tc.SyscallConn(); err == nil {
			c.raw = raw
		}
	}
	return c
}

// pacedDialer returns a gortsplib DialContext whose TCP connections are
// paced once paced is set; nil (gortsplib's own dialer) for interval 0.
func pacedDialer(interval time.Duration, paced *atomic.Bool) func(ctx context.Context, network, address string) (net.Conn, error) {
	if interval <= 0 {
		return nil
	}
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		nc, err := (&net.Dialer{}).DialContext(ctx, network, address)
		if err != nil {
			return nil, err
		}
		return newPacedConn(nc, interval, paced), nil
	}
}

func (c *pacedConn) Read(p []byte) (int, error) {
	if c.r < c.w {
		n := copy(p, c.buf[c.r:c.w])
		c.r += n
		return n, nil
	}
	if c.raw == nil || !c.paced.Load() {
		return c.Conn.Read(p)
	}
	if c.buf == nil {
		c.buf = make([]byte, pacedBufferSize)
	}
	if !c.lowat {
		c.lowat = true
		setLowWater(c.raw, pacedLowWater)
	}
	for {
		if !c.filled {
			c.sleep(c.interval)
		}
		n, err := c.readNow()
		switch {
		case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EINTR):
			c.filled = false
			continue
		case err != nil:
			return 0, err
		case n == 0:
			return 0, io.EOF
		}
		c.filled = n == len(c.buf)
		m := copy(p, c.buf[:n])
		c.r, c.w = m, n
		return m, nil
	}
}

// readNow takes what the socket holds without waiting for more.
func (c *pacedConn) readNow() (n int, err error) {
	var rerr error
	cerr := c.raw.Read(func(fd uintptr) bool {
		n, rerr = syscall.Read(int(fd), c.buf)
		return true // never wait in the poller: the interval is the wait
	})
	if cerr != nil {
		return 0, cerr // closed
	}
	if n < 0 {
		n = 0
	}
	return n, rerr
}
