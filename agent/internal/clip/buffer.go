// Package clip keeps a camera's recent encoded video and turns a window
// around an event into an MP4 without re-encoding.
//
// A Buffer receives every access unit of one camera (Push, from the RTSP
// callback) and keeps at least the configured pre-event duration, always
// starting at a key frame, within a byte budget. Capture asks for pre
// seconds before an instant and post seconds after it: the pre part is
// copied out of the buffer at once (from the last key frame at or before
// the window start), the post part is collected as it arrives, and Wait
// returns the Clip when the window is complete. Clip.WriteMP4 muxes it.
//
// A reconnect (a new rtsp session: timestamps restart), or timestamps that
// step back or leap ahead within a session (a camera looping a recording,
// a reset encoder), empties the buffer and ends captures in progress early,
// marked Truncated.
package clip

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/xueliang/xl/agent/internal/rtsp"
)

// Defaults.
const (
	DefaultPre      = 10 * time.Second
	DefaultMaxBytes = 64 << 20
)

// Timestamp discontinuities within a session: a PTS this far behind the
// newest one (B-frames reorder by a few frames only) or this far ahead of
// it starts a new timeline.
const (
	maxStepBack = 2 * time.Second
	maxLeap     = time.Minute
)

// ErrClosed is returned by Capture after Close.
var ErrClosed = errors.New("clip: buffer closed")

// BufferConfig configures a Buffer.
type BufferConfig struct {
	// Pre is how much video before "now" the buffer keeps, at least (it
	// starts at the last key frame at or before now-Pre). Default 10 s.
	Pre time.Duration
	// MaxBytes bounds the buffered access units; the oldest GOPs go first.
	// It also bounds each capture. Default 64 MiB.
	MaxBytes int
}

// Buffer is one camera's ring of encoded access units. Its methods are
// safe for concurrent use.
type Buffer struct {
	cfg BufferConfig

	mu       sync.Mutex
	aus      []rtsp.AccessUnit // starts at a key frame (or is empty)
	bytes    int
	maxPTS   time.Duration
	session  uint64
	codec    string
	captures []*Capture
	closed   bool
}

// NewBuffer returns an empty buffer.
func NewBuffer(cfg BufferConfig) (*Buffer, error) {
	if cfg.Pre < 0 || cfg.MaxBytes < 0 {
		return nil, fmt.Errorf("clip: negative pre (%v) or max bytes (%d)", cfg.Pre, cfg.MaxBytes)
	}
	if cfg.Pre == 0 {
		cfg.Pre = DefaultPre
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	return &Buffer{cfg: cfg}, nil
}

// Push adds an access unit. Access units must come in the order received.
func (b *Buffer) Push(au rtsp.AccessUnit) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || len(au.NALUs) == 0 {
		return
	}
	if au.Session != b.session || au.Codec != b.codec {
		b.resetLocked()
		b.session, b.codec = au.Session, au.Codec
	} else if len(b.aus) > 0 && (au.PTS < b.maxPTS-maxStepBack || au.PTS > b.maxPTS+maxLeap) {
		b.resetLocked()
	}

	// Captures in progress take it first: their window may end here.
	kept := b.captures[:0]
	for _, c := range b.captures {
		if c.addLocked(au) {
			kept = append(kept, c)
		}
	}
	clear(b.captures[len(kept):])
	b.captures = kept

	if len(b.aus) == 0 && !au.KeyFrame {
		return // the buffer always starts at a key frame
	}
	b.aus = append(b.aus, au)
	b.bytes += au.Size()
	if len(b.aus) == 1 || au.PTS > b.maxPTS {
		b.maxPTS = au.PTS
	}
	b.trimLocked()
}

// trimLocked drops whole GOPs from the front while the rest still covers
// Pre, and while the buffer is over its byte budget.
func (b *Buffer) trimLocked() {
	for {
		next := b.nextKeyLocked()
		switch {
		case next > 0 && b.aus[next].PTS <= b.maxPTS-b.cfg.Pre:
		case next > 0 && b.bytes > b.cfg.MaxBytes:
		case next < 0 && b.bytes > b.cfg.MaxBytes:
			// One GOP larger than the budget: start over at the next key frame.
			b.dropLocked(len(b.aus))
			return
		default:
			return
		}
		b.dropLocked(next)
	}
}

// nextKeyLocked returns the index of the second key frame, or -1.
func (b *Buffer) nextKeyLocked() int {
	for i := 1; i < len(b.aus); i++ {
		if b.aus[i].KeyFrame {
			return i
		}
	}
	return -1
}

// dropLocked removes the first n access units.
func (b *Buffer) dropLocked(n int) {
	for _, au := range b.aus[:n] {
		b.bytes -= au.Size()
	}
	rest := copy(b.aus, b.aus[n:])
	clear(b.aus[rest:])
	b.aus = b.aus[:rest]
}

// resetLocked empties the buffer and ends the captures that started;
// those still waiting for their first key frame wait on.
func (b *Buffer) resetLocked() {
	kept := b.captures[:0]
	for _, c := range b.captures {
		if c.waitKey && !b.closed {
			kept = append(kept, c)
			continue
		}
		c.finishLocked(true)
	}
	clear(b.captures[len(kept):])
	b.captures = kept
	b.dropLocked(len(b.aus))
	b.bytes = 0
}

// Stats describes what the buffer holds.
type Stats struct {
	AccessUnits int
	KeyFrames   int
	Bytes       int
	Duration    time.Duration // PTS span from the first to the newest access unit
	Captures    int           // captures waiting for their post-event video
}

// Stats returns what the buffer holds.
func (b *Buffer) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := Stats{AccessUnits: len(b.aus), Bytes: b.bytes, Captures: len(b.captures)}
	for _, au := range b.aus {
		if au.KeyFrame {
			s.KeyFrames++
		}
	}
	if len(b.aus) > 0 {
		s.Duration = b.maxPTS - b.aus[0].PTS
	}
	return s
}

// Capture starts collecting the clip from pre before at to post after it
// (at is a wall-clock instant, as in AccessUnit.Wall; pre is limited by
// what the buffer holds). The clip starts at the last key frame at or
// before at-pre, so it may begin up to one GOP earlier.
func (b *Buffer) Capture(at time.Time, pre, post time.Duration) (*Capture, error) {
	if pre < 0 || post < 0 {
		return nil, fmt.Errorf("clip: negative pre (%v) or post (%v)", pre, post)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	c := &Capture{b: b, done: make(chan struct{}), maxBytes: b.cfg.MaxBytes, session: b.session, codec: b.codec}
	if len(b.aus) == 0 {
		// Nothing buffered (yet): the clip starts at the next key frame and
		// ends post after it (the event instant cannot be placed on the
		// stream's timeline).
		c.waitKey, c.relativeEnd = true, post
		b.captures = append(b.captures, c)
		return c, nil
	}
	// Place at on the stream timeline using the newest access unit.
	newest := b.aus[len(b.aus)-1]
	event := newest.PTS + at.Sub(newest.Wall)
	start, end := event-pre, event+post
	c.end = end

	first := 0
	for i, au := range b.aus {
		if au.KeyFrame && au.PTS <= start {
			first = i
		}
	}
	for _, au := range b.aus[first:] {
		if au.PTS > end {
			continue // with B-frames later AUs may still be inside
		}
		c.aus = append(c.aus, au)
		c.bytes += au.Size()
	}
	if b.maxPTS > end {
		c.finishLocked(false)
		return c, nil
	}
	b.captures = append(b.captures, c)
	return c, nil
}

// Close ends the captures in progress (they return what they have, marked
// Truncated) and drops the buffered video. Push does nothing afterwards.
func (b *Buffer) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	b.resetLocked()
	return nil
}

// Capture is a clip being collected.
type Capture struct {
	b        *Buffer
	done     chan struct{}
	maxBytes int
	session  uint64
	codec    string

	// Guarded by the Buffer's mutex until done is closed, then immutable.
	aus         []rtsp.AccessUnit
	bytes       int
	end         time.Duration // last PTS inside the window
	waitKey     bool          // nothing buffered at Capture: start at the next key frame
	relativeEnd time.Duration // with waitKey: the window ends this long after that key frame
	truncated   bool
	finished    bool
}

// addLocked offers a pushed access unit; it returns false once the capture
// is complete.
func (c *Capture) addLocked(au rtsp.AccessUnit) bool {
	if c.finished {
		return false
	}
	if c.waitKey {
		if !au.KeyFrame {
			return true
		}
		c.waitKey = false
		c.session, c.codec = au.Session, au.Codec
		c.end = au.PTS + c.relativeEnd
	}
	if au.Session != c.session || au.Codec != c.codec {
		c.finishLocked(true)
		return false
	}
	if au.PTS > c.end {
		c.finishLocked(false)
		return false
	}
	if c.bytes+au.Size() > c.maxBytes {
		c.finishLocked(true)
		return false
	}
	c.aus = append(c.aus, au)
	c.bytes += au.Size()
	return true
}

func (c *Capture) finishLocked(truncated bool) {
	if c.finished {
		return
	}
	c.finished = true
	c.truncated = truncated
	close(c.done)
}

// Stop ends the capture now with what it has collected (marked Truncated
// unless it was complete already). A camera that stopped sending, or an
// agent that needs the memory, does not have to wait for the window's end.
func (c *Capture) Stop() {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	if c.finished {
		return
	}
	c.finishLocked(true)
	kept := c.b.captures[:0]
	for _, o := range c.b.captures {
		if o != c {
			kept = append(kept, o)
		}
	}
	clear(c.b.captures[len(kept):])
	c.b.captures = kept
}

// Done is closed when the clip is complete.
func (c *Capture) Done() <-chan struct{} { return c.done }

// Wait returns the clip once its window is complete. When ctx ends first
// it returns ctx's error; the capture goes on and Wait may be called again.
func (c *Capture) Wait(ctx context.Context) (*Clip, error) {
	select {
	case <-c.done:
		return &Clip{AUs: c.aus, Truncated: c.truncated}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Clip is a sequence of access units starting at a key frame.
type Clip struct {
	AUs []rtsp.AccessUnit
	// Truncated reports a clip cut short: the stream restarted or the
	// buffer closed before the window ended, or the byte budget ran out.
	Truncated bool
}

// Duration returns the PTS span of the clip plus one frame.
func (c *Clip) Duration() time.Duration {
	if len(c.AUs) == 0 {
		return 0
	}
	lo, hi := c.AUs[0].PTS, c.AUs[0].PTS
	for _, au := range c.AUs {
		lo, hi = min(lo, au.PTS), max(hi, au.PTS)
	}
	frame := time.Duration(0)
	if len(c.AUs) > 1 {
		frame = (hi - lo) / time.Duration(len(c.AUs)-1)
	}
	return hi - lo + frame
}
