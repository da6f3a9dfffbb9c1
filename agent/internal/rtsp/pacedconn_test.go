package rtsp

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// pacedPair wraps the client end in a paced connection whose sleeps are
// counted.
func pacedPair(t *testing.T, interval time.Duration, paced bool) (*pacedConn, net.Conn, *atomic.Int64) {
	t.Helper()
	client, server := tcpPair(t)
	var on atomic.Bool
	on.Store(paced)
	pc := newPacedConn(client, interval, &on)
	if pc.raw == nil {
		t.Fatal("no raw connection for a TCP socket")
	}
	var sleeps atomic.Int64
	pc.sleep = func(d time.Duration) { sleeps.Add(1); time.Sleep(d) }
	return pc, server, &sleeps
}

func TestPacedConnDeliversEveryByte(t *testing.T) {
	pc, server, sleeps := pacedPair(t, 20*time.Millisecond, true)
	want := make([]byte, 3<<20)
	rand.Read(want)
	go func() {
		// Bursts of uneven sizes with pauses, like RTP frames.
		for rest := want; len(rest) > 0; {
			n := min(len(rest), 1+len(rest)%70000)
			server.Write(rest[:n])
			rest = rest[n:]
			if len(rest)%3 == 0 {
				time.Sleep(2 * time.Millisecond)
			}
		}
		server.Close()
	}()
	got, err := io.ReadAll(io.Reader(pc))
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes that differ from the %d written", len(got), len(want))
	}
	if sleeps.Load() == 0 {
		t.Error("a paced connection never slept")
	}
}

func TestPacedConnKeepsUpWithAFastStream(t *testing.T) {
	// Writing 16 MiB as fast as loopback takes it: a reader that slept
	// after every read would need at least 32 sleeps (one per 512 KiB
	// buffer); a full buffer must be followed by another read at once.
	pc, server, sleeps := pacedPair(t, 50*time.Millisecond, true)
	data := make([]byte, 16<<20)
	go func() { server.Write(data); server.Close() }()
	n, err := io.Copy(io.Discard, io.Reader(pc))
	if err != nil || n != int64(len(data)) {
		t.Fatalf("copied %d bytes, err %v; want %d", n, err, len(data))
	}
	if s := sleeps.Load(); s >= int64(len(data)/pacedBufferSize) {
		t.Errorf("%d sleeps for %d buffers' worth: reads do not catch up", s, len(data)/pacedBufferSize)
	}
}

func TestPacedConnUnpacedReadsDirectly(t *testing.T) {
	pc, server, sleeps := pacedPair(t, time.Hour, false)
	go server.Write([]byte("RTSP/1.0 200 OK\r\n\r\n"))
	buf := make([]byte, 64)
	n, err := pc.Read(buf)
	if err != nil || string(buf[:n]) != "RTSP/1.0 200 OK\r\n\r\n" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
	if sleeps.Load() != 0 {
		t.Error("an unpaced connection slept")
	}
}

func TestPacedConnCloseEndsRead(t *testing.T) {
	pc, _, _ := pacedPair(t, 20*time.Millisecond, true)
	errc := make(chan error, 1)
	go func() {
		_, err := pc.Read(make([]byte, 16))
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond) // the reader is sleeping or polling
	pc.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Read after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read did not return after Close")
	}
}

func TestPacedConnSmallReadsFromItsBuffer(t *testing.T) {
	// gortsplib reads through a 4 KiB bufio.Reader: one socket read serves
	// many of its reads.
	pc, server, sleeps := pacedPair(t, 30*time.Millisecond, true)
	want := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	server.Write(want)
	time.Sleep(50 * time.Millisecond)
	var got []byte
	buf := make([]byte, 4096)
	for len(got) < len(want) {
		n, err := pc.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("bytes differ")
	}
	if s := sleeps.Load(); s > 2 {
		t.Errorf("%d sleeps to read 64 KiB that were already buffered", s)
	}
}

func TestWallClock(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 20, 0, 0, 0, time.UTC)
	var w wallClock
	const lag = 1200 * time.Millisecond
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	// The first access unit anchors the clock at its receipt.
	if got := w.at(ms(1000), t0, lag); !got.Equal(t0) {
		t.Fatalf("first: %v", got)
	}
	// A batch of five arriving together keeps its 40 ms spacing.
	recv := t0.Add(ms(200))
	for i := 1; i <= 5; i++ {
		if got, want := w.at(ms(1000+40*i), recv, lag), t0.Add(ms(40*i)); !got.Equal(want) {
			t.Errorf("batched AU %d: %v, want %v", i, got.Sub(t0), want.Sub(t0))
		}
	}
	// One that arrives sooner than the anchor predicts re-anchors: the
	// clock never gives a time after the receipt.
	if got, recv := w.at(ms(1300), t0.Add(ms(250)), lag), t0.Add(ms(250)); !got.Equal(recv) {
		t.Errorf("early AU: %v, want its receipt %v", got.Sub(t0), recv.Sub(t0))
	}
	if got, want := w.at(ms(1340), t0.Add(ms(400)), lag), t0.Add(ms(290)); !got.Equal(want) {
		t.Errorf("after re-anchoring: %v, want %v", got.Sub(t0), want.Sub(t0))
	}
	// A PTS jump back (a looping source) would put it far in the past:
	// re-anchored at its receipt.
	if got, recv := w.at(ms(10), t0.Add(ms(440)), lag), t0.Add(ms(440)); !got.Equal(recv) {
		t.Errorf("PTS jump back: %v, want %v", got.Sub(t0), recv.Sub(t0))
	}
	// So is one that lags by more than maxLag (a camera clock running slow).
	if got, recv := w.at(ms(50), t0.Add(ms(2000)), lag), t0.Add(ms(2000)); !got.Equal(recv) {
		t.Errorf("lagging: %v, want %v", got.Sub(t0), recv.Sub(t0))
	}
}

func TestReadIntervalValidated(t *testing.T) {
	for _, d := range []time.Duration{-time.Millisecond, MaxReadInterval + time.Millisecond} {
		if _, err := New(Config{CameraID: "cam", URL: "rtsp://127.0.0.1:1/x", ReadInterval: d}, nil, nil); err == nil {
			t.Errorf("ReadInterval %v accepted", d)
		}
	}
	if _, err := New(Config{CameraID: "cam", URL: "rtsp://127.0.0.1:1/x", ReadInterval: MaxReadInterval}, nil, nil); err != nil {
		t.Errorf("ReadInterval %v: %v", MaxReadInterval, err)
	}
}
