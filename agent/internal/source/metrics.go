package source

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// cameraMetrics are one camera's series, resolved once (not per frame)
// and created at zero when the source is, so dashboards and alerts see
// every camera from the start.
type cameraMetrics struct {
	decoded, notDecoded, queued, dropped, reconnects prometheus.Counter
	decodeErrors                                     prometheus.Counter
	up, lastFrame                                    prometheus.Gauge
	decodeSeconds                                    prometheus.Observer
}

func (m *Metrics) forCamera(id string) *cameraMetrics {
	cm := &cameraMetrics{
		decoded:       m.FramesRead.WithLabelValues(id),
		notDecoded:    m.NotDecoded.WithLabelValues(id),
		queued:        m.FramesQueued.WithLabelValues(id),
		dropped:       m.FramesDropped.WithLabelValues(id),
		reconnects:    m.Reconnects.WithLabelValues(id),
		decodeErrors:  m.DecodeErrors.WithLabelValues(id),
		up:            m.Up.WithLabelValues(id),
		lastFrame:     m.LastFrame.WithLabelValues(id),
		decodeSeconds: m.DecodeSeconds.WithLabelValues(id),
	}
	cm.up.Set(0)
	return cm
}

// ageCollector reports xl_agent_last_frame_age_seconds: for each camera,
// the seconds since its last decoded frame (since the source was created
// while none has arrived), computed at scrape time.
type ageCollector struct {
	desc *prometheus.Desc
	mu   sync.Mutex
	cams map[string]*frameClock
}

// frameClock is when a camera's source started and last decoded a frame.
type frameClock struct {
	started time.Time
	last    atomic.Int64 // unix nanoseconds; 0: no frame yet
}

func (c *frameClock) frame(at time.Time) { c.last.Store(at.UnixNano()) }

func newAgeCollector() *ageCollector {
	return &ageCollector{
		desc: prometheus.NewDesc("xl_agent_last_frame_age_seconds",
			"Seconds since the camera's last decoded frame (since the source started while none arrived).", []string{"camera_id"}, nil),
		cams: map[string]*frameClock{},
	}
}

func (a *ageCollector) add(id string) *frameClock {
	c := &frameClock{started: time.Now()}
	a.mu.Lock()
	a.cams[id] = c
	a.mu.Unlock()
	return c
}

func (a *ageCollector) remove(id string, c *frameClock) {
	a.mu.Lock()
	if a.cams[id] == c {
		delete(a.cams, id)
	}
	a.mu.Unlock()
}

func (a *ageCollector) Describe(ch chan<- *prometheus.Desc) { ch <- a.desc }

func (a *ageCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, c := range a.cams {
		since := c.started
		if n := c.last.Load(); n != 0 {
			since = time.Unix(0, n)
		}
		ch <- prometheus.MustNewConstMetric(a.desc, prometheus.GaugeValue, max(now.Sub(since).Seconds(), 0), id)
	}
}
