package clip

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/xueliang/xl/agent/internal/rtsp"
)

// synth makes synthetic access units: 10 fps, a key frame every gop,
// size bytes each, PTS from 0, wall clock from t0.
type synth struct {
	t0      time.Time
	gop     int
	size    int
	session uint64
	n       int
}

func (s *synth) next() rtsp.AccessUnit {
	i := s.n
	s.n++
	key := i%s.gop == 0
	nalu := make([]byte, s.size)
	nalu[0] = 0x41
	if key {
		nalu[0] = 0x65
	}
	pts := time.Duration(i) * 100 * time.Millisecond
	return rtsp.AccessUnit{Codec: rtsp.CodecH264, PTS: pts, Wall: s.t0.Add(pts), NALUs: [][]byte{nalu}, KeyFrame: key, Session: s.session}
}

func push(b *Buffer, s *synth, n int) rtsp.AccessUnit {
	var au rtsp.AccessUnit
	for range n {
		au = s.next()
		b.Push(au)
	}
	return au
}

func newBuffer(t *testing.T, cfg BufferConfig) *Buffer {
	t.Helper()
	b, err := NewBuffer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// checkStartsAtKey checks the buffer invariant.
func checkStartsAtKey(t *testing.T, b *Buffer) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.aus) > 0 && !b.aus[0].KeyFrame {
		t.Fatal("buffer does not start at a key frame")
	}
	sum := 0
	for _, au := range b.aus {
		sum += au.Size()
	}
	if sum != b.bytes {
		t.Fatalf("byte count %d, actual %d", b.bytes, sum)
	}
}

func TestBufferRetention(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cfg      BufferConfig
		gop      int
		size     int
		push     int
		startKey bool
		wantAUs  int // 0: only check invariants
		minDur   time.Duration
		maxDur   time.Duration
	}{
		// 10 s pushed, keep 3 s: starts at the key frame at 6.0 s (newest 9.9 s).
		{"keeps-pre-from-a-key-frame", BufferConfig{Pre: 3 * time.Second}, 20, 10, 100, true, 40, 3 * time.Second, 5 * time.Second},
		{"shorter-than-pre", BufferConfig{Pre: 30 * time.Second}, 20, 10, 50, true, 50, 0, 5 * time.Second},
		// Budget of 250 bytes and 100-byte AUs with a GOP of 2: keeps 2 GOPs.
		{"byte-budget-drops-gops", BufferConfig{Pre: time.Hour, MaxBytes: 450}, 2, 100, 30, true, 4, 0, time.Second},
		// One GOP (20 AUs of 100 bytes) over a 1000-byte budget: dropped whole,
		// the buffer refills from the next key frame.
		{"gop-over-budget", BufferConfig{Pre: time.Hour, MaxBytes: 1000}, 20, 100, 25, false, 0, 0, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBuffer(t, tc.cfg)
			s := &synth{t0: time.Now(), gop: tc.gop, size: tc.size, session: 1}
			for range tc.push {
				b.Push(s.next())
				checkStartsAtKey(t, b)
				if st := b.Stats(); st.Bytes > tc.cfg.MaxBytes && tc.cfg.MaxBytes > 0 {
					t.Fatalf("%d bytes over the budget %d", st.Bytes, tc.cfg.MaxBytes)
				}
			}
			st := b.Stats()
			t.Logf("%+v", st)
			if tc.wantAUs > 0 && st.AccessUnits != tc.wantAUs {
				t.Errorf("%d access units, want %d", st.AccessUnits, tc.wantAUs)
			}
			if st.Duration < tc.minDur || st.Duration > tc.maxDur {
				t.Errorf("duration %v, want %v..%v", st.Duration, tc.minDur, tc.maxDur)
			}
		})
	}
}

func TestBufferDropsLeadingNonKey(t *testing.T) {
	b := newBuffer(t, BufferConfig{})
	s := &synth{t0: time.Now(), gop: 10, size: 5, session: 1, n: 3} // joins mid-GOP
	push(b, s, 6)
	if st := b.Stats(); st.AccessUnits != 0 {
		t.Fatalf("%d access units before the first key frame", st.AccessUnits)
	}
	push(b, s, 3)
	if st := b.Stats(); st.AccessUnits != 2 || st.KeyFrames != 1 {
		t.Fatalf("stats %+v, want 2 AUs from the key frame", st)
	}
}

func TestBufferSessionChange(t *testing.T) {
	b := newBuffer(t, BufferConfig{Pre: 5 * time.Second})
	s := &synth{t0: time.Now(), gop: 10, size: 5, session: 1}
	last := push(b, s, 30)
	c, err := b.Capture(last.Wall, 2*time.Second, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// Reconnect: a new session, PTS restarts.
	s2 := &synth{t0: time.Now(), gop: 10, size: 5, session: 2}
	push(b, s2, 5)
	clip, err := c.Wait(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !clip.Truncated {
		t.Error("capture across a reconnect is not marked truncated")
	}
	for _, au := range clip.AUs {
		if au.Session != 1 {
			t.Fatal("capture mixes sessions")
		}
	}
	if st := b.Stats(); st.AccessUnits != 5 {
		t.Errorf("buffer holds %d access units after the reconnect, want the 5 new ones", st.AccessUnits)
	}
}

func TestCapture(t *testing.T) {
	const ms = time.Millisecond
	for _, tc := range []struct {
		name       string
		pushBefore int           // AUs pushed before Capture (10 fps, GOP 2 s)
		at         time.Duration // event time on the PTS timeline
		pre, post  time.Duration
		pushAfter  int
		done       bool          // complete after pushAfter
		first      time.Duration // PTS of the first AU
		last       time.Duration // PTS of the last AU
		truncated  bool
	}{
		{"pre-and-post", 80, 7900 * ms, 3 * time.Second, 2 * time.Second, 21, true, 4 * time.Second, 9900 * ms, false},
		{"not-done-before-window-ends", 80, 7900 * ms, 3 * time.Second, 2 * time.Second, 20, false, 0, 0, false},
		{"pre-starts-on-key-frame", 80, 7900 * ms, 1 * time.Second, time.Second, 11, true, 6 * time.Second, 8900 * ms, false},
		{"pre-longer-than-buffer", 30, 2900 * ms, 20 * time.Second, 0, 1, true, 0, 2900 * ms, false},
		{"window-in-the-past", 80, 5 * time.Second, time.Second, time.Second, 0, true, 4 * time.Second, 6 * time.Second, false},
		{"event-in-the-future", 30, 4 * time.Second, 0, time.Second, 22, true, 2 * time.Second, 5 * time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBuffer(t, BufferConfig{Pre: 5 * time.Second})
			s := &synth{t0: time.Now(), gop: 20, size: 10, session: 1}
			push(b, s, tc.pushBefore)
			c, err := b.Capture(s.t0.Add(tc.at), tc.pre, tc.post)
			if err != nil {
				t.Fatal(err)
			}
			push(b, s, tc.pushAfter)
			select {
			case <-c.Done():
				if !tc.done {
					t.Fatal("capture complete before its window ended")
				}
			default:
				if tc.done {
					t.Fatal("capture not complete")
				}
				return
			}
			clip, err := c.Wait(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if len(clip.AUs) == 0 {
				t.Fatal("empty clip")
			}
			first, last := clip.AUs[0], clip.AUs[len(clip.AUs)-1]
			if !first.KeyFrame || first.PTS != tc.first || last.PTS != tc.last || clip.Truncated != tc.truncated {
				t.Fatalf("clip %v..%v (key %v, truncated %v), want %v..%v (truncated %v)",
					first.PTS, last.PTS, first.KeyFrame, clip.Truncated, tc.first, tc.last, tc.truncated)
			}
			if want := int((tc.last-tc.first)/(100*ms)) + 1; len(clip.AUs) != want {
				t.Fatalf("%d access units, want %d", len(clip.AUs), want)
			}
			if d := clip.Duration(); d != tc.last-tc.first+100*ms {
				t.Errorf("duration %v", d)
			}
		})
	}
}

func TestCaptureEmptyBufferStartsAtNextKey(t *testing.T) {
	b := newBuffer(t, BufferConfig{})
	c, err := b.Capture(time.Now(), 5*time.Second, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s := &synth{t0: time.Now(), gop: 10, size: 5, session: 1, n: 5}
	push(b, s, 5+1+10+1) // mid-GOP AUs, the key frame at 1 s, 10 AUs, one beyond
	clip, err := c.Wait(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(clip.AUs) != 11 || clip.AUs[0].PTS != time.Second || !clip.AUs[0].KeyFrame {
		t.Fatalf("%d AUs from %v, want 11 from the key frame at 1s", len(clip.AUs), clip.AUs[0].PTS)
	}
}

func TestCaptureByteBudget(t *testing.T) {
	b := newBuffer(t, BufferConfig{Pre: time.Second, MaxBytes: 1000})
	s := &synth{t0: time.Now(), gop: 5, size: 100, session: 1}
	last := push(b, s, 5)
	c, err := b.Capture(last.Wall, time.Second, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	push(b, s, 20)
	clip, err := c.Wait(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !clip.Truncated || len(clip.AUs) != 10 {
		t.Fatalf("%d AUs, truncated %v; want 10 (1000 bytes), truncated", len(clip.AUs), clip.Truncated)
	}
}

func TestCaptureWaitAndClose(t *testing.T) {
	b, err := NewBuffer(BufferConfig{})
	if err != nil {
		t.Fatal(err)
	}
	s := &synth{t0: time.Now(), gop: 10, size: 5, session: 1}
	last := push(b, s, 10)
	c, err := b.Capture(last.Wall, time.Second, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait with an expired context: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	clip, err := c.Wait(t.Context())
	if err != nil || !clip.Truncated || len(clip.AUs) != 10 {
		t.Fatalf("after Close: err %v, truncated %v, %d AUs", err, clip != nil && clip.Truncated, len(clip.AUs))
	}
	if _, err := b.Capture(time.Now(), 0, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Capture after Close: %v", err)
	}
	b.Push(s.next()) // ignored, no panic
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestNewBufferValidates(t *testing.T) {
	for _, cfg := range []BufferConfig{{Pre: -1}, {MaxBytes: -1}} {
		if _, err := NewBuffer(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
	b, err := NewBuffer(BufferConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if b.cfg.Pre != DefaultPre || b.cfg.MaxBytes != DefaultMaxBytes {
		t.Errorf("defaults %+v", b.cfg)
	}
	if _, err := b.Capture(time.Now(), -time.Second, 0); err == nil {
		t.Error("negative pre accepted")
	}
}

// A source that loops a recording restarts its timestamps within one
// session: the buffer starts a new timeline instead of trimming the new
// video against the old one, and a capture across the jump is truncated.
func TestBufferTimestampStepBack(t *testing.T) {
	b := newBuffer(t, BufferConfig{Pre: 3 * time.Second})
	s := &synth{t0: time.Now(), gop: 10, size: 5, session: 1}
	last := push(b, s, 50) // 5 s
	c, err := b.Capture(last.Wall, time.Second, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s.n = 0 // PTS back to 0, same session
	s.t0 = last.Wall.Add(100 * time.Millisecond)
	push(b, s, 40)
	checkStartsAtKey(t, b)
	if st := b.Stats(); st.Duration < 3*time.Second || st.AccessUnits != 40 {
		t.Errorf("after the step back the buffer holds %+v, want the 40 new access units (3.9 s)", st)
	}
	clip, err := c.Wait(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !clip.Truncated {
		t.Error("capture across the step back not truncated")
	}
	for _, au := range clip.AUs {
		if au.PTS < 3*time.Second {
			t.Fatalf("capture took access unit at %v from the new timeline", au.PTS)
		}
	}
}
