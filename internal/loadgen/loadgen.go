package loadgen

import (
	"container/heap"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/xueliang/xl/internal/wire"
)

// Version is what the simulated agents report in their status.
const Version = "xl-loadgen"

// senderQueue is how many scheduled alerts one sender holds; when it falls
// further behind, the oldest are dropped and counted.
const senderQueue = 4096

// Generator runs the simulated fleet.
type Generator struct {
	cfg   Config
	log   *slog.Logger
	sched *Schedule
	st    stats

	agents  []*agent
	senders []chan Event
	acks    chan pending
	journal *journal
	snap    []byte // shared snapshot bytes: every snapshot is a prefix

	sendersWG sync.WaitGroup
	waitersWG sync.WaitGroup
	ackMu     sync.RWMutex // closed and close(acks) under the write lock
	closed    bool
	runStart  time.Time
}

type agent struct {
	idx     int // absolute agent number
	id      string
	grid    string
	site    string
	geo     wire.Geo
	cams    []string
	client  mqtt.Client
	evStart []time.Time // per camera: when its open event started (owned by the agent's sender)

	connMu sync.Mutex
	conn   *severable // the live socket, cut by a reconnect storm

	connects atomic.Int32 // successful connects
}

// pending is a publish waiting for the broker's acknowledgement.
type pending struct {
	tok     mqtt.Token
	kind    kind
	alertID string
	sent    time.Time
}

type kind uint8

const (
	kindAlert kind = iota
	kindEvidence
	kindStatus
	kindConnect
)

// New prepares a run of cfg; metrics are registered on reg (may be nil).
func New(cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Generator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	u, err := url.Parse(cfg.Broker)
	if err != nil || (u.Scheme != "tcp" && u.Scheme != "mqtt") || u.Host == "" {
		return nil, fmt.Errorf("--broker: %q: want tcp://host:port", cfg.Broker)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &Generator{cfg: cfg, log: log.With("component", "loadgen"), sched: NewSchedule(cfg),
		acks: make(chan pending, 1<<16)}
	newHistograms(&g.st) // used with or without a registry
	if reg != nil {
		if err := g.st.register(reg); err != nil {
			return nil, err
		}
	}
	if cfg.Journal != "" {
		if g.journal, err = openJournal(cfg.Journal); err != nil {
			return nil, err
		}
	}
	if cfg.Evidence > 0 {
		g.snap = snapshotBytes(uint64(cfg.Seed))
	}
	for i := range cfg.Agents {
		g.agents = append(g.agents, g.newAgent(cfg.FirstAgent+i, u.Host))
	}
	return g, nil
}

// snapshotBytes is 4 MiB of seeded noise starting like a JPEG file.
func snapshotBytes(seed uint64) []byte {
	b := make([]byte, wire.MaxSnapshotBytes)
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	for i := 0; i+8 <= len(b); i += 8 {
		v := r.Uint64()
		for k := range 8 {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	copy(b, []byte{0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0})
	return b
}

func (g *Generator) newAgent(idx int, host string) *agent {
	id := AgentID(g.cfg.AgentPrefix, idx)
	a := &agent{idx: idx, id: id, grid: GridCode(idx), site: "site-" + id, evStart: make([]time.Time, g.cfg.CamerasPerAgent)}
	// Around the Haimen reference site, spread by agent number.
	a.geo = wire.Geo{Lat: 31.80 + float64(idx%500)*0.0006, Lon: 121.10 + float64(idx/500%500)*0.0006}
	for c := range g.cfg.CamerasPerAgent {
		a.cams = append(a.cams, CameraID(id, c))
	}
	o := mqtt.NewClientOptions()
	o.AddBroker(g.cfg.Broker)
	o.SetClientID("xl-agent-" + id) // as agent/internal/publish names a real agent
	o.SetUsername(id)
	o.SetPassword(g.cfg.Password)
	o.SetKeepAlive(g.cfg.KeepAlive)
	o.SetConnectTimeout(10 * time.Second)
	o.SetWriteTimeout(10 * time.Second)
	o.SetCleanSession(false)
	o.SetAutoReconnect(true)
	o.SetConnectRetry(false) // a failed first connect is counted, not retried in the background
	o.SetMaxReconnectInterval(30 * time.Second)
	o.SetOrderMatters(false)
	will, _ := wire.Marshal(g.status(a, wire.StateOffline))
	o.SetBinaryWill(wire.StatusTopic(id), will, 1, true)
	o.SetCustomOpenConnectionFn(func(uri *url.URL, opts mqtt.ClientOptions) (net.Conn, error) {
		d := net.Dialer{Timeout: opts.ConnectTimeout, KeepAlive: -1}
		c, err := d.Dial("tcp", host)
		if err != nil {
			return nil, err
		}
		sc := &severable{Conn: c}
		a.connMu.Lock()
		a.conn = sc
		a.connMu.Unlock()
		return sc, nil
	})
	o.SetOnConnectHandler(func(c mqtt.Client) {
		if a.connects.Add(1) > 1 {
			g.st.reconnects.Add(1)
		}
		g.st.held.Add(1)
		c.Subscribe(wire.CmdTopic(id), 1, func(_ mqtt.Client, m mqtt.Message) { g.onCmd(a, m) })
		g.publishStatus(a, wire.StateOnline)
	})
	o.SetConnectionLostHandler(func(mqtt.Client, error) {
		g.st.held.Add(-1)
		g.st.lost.Add(1)
	})
	a.client = mqtt.NewClient(o)
	return a
}

func (g *Generator) status(a *agent, state wire.AgentState) *wire.Status {
	st := &wire.Status{AgentID: a.id, State: state, Version: Version, ConfigVersion: "lg-1", TS: time.Now()}
	if state == wire.StateOnline {
		for _, c := range a.cams {
			st.Cameras = append(st.Cameras, wire.CameraStatus{CameraID: c, State: "streaming", FPS: 5})
		}
	}
	return st
}

// publishStatus publishes a's retained status; the acknowledgement is
// awaited by the ack waiters.
func (g *Generator) publishStatus(a *agent, state wire.AgentState) {
	b, err := wire.Marshal(g.status(a, state))
	if err != nil {
		return
	}
	g.st.statusSent.Add(1)
	g.st.bytesStatus.Add(int64(len(b)))
	g.await(pending{tok: a.client.Publish(wire.StatusTopic(a.id), 1, true, b), kind: kindStatus, sent: time.Now()})
}

// onCmd answers central's commands: a simulated agent has no cameras to
// act on, so it says so (central does not wait for a timeout).
func (g *Generator) onCmd(a *agent, m mqtt.Message) {
	g.st.commands.Add(1)
	var dec wire.Decoder
	c, err := dec.DecodeCmd(m.Payload())
	if err != nil {
		return
	}
	b, err := wire.Marshal(&wire.CmdReply{CmdID: c.CmdID, AgentID: a.id, Cmd: c.Cmd, Error: "simulated agent (xl-loadgen)", TS: time.Now()})
	if err == nil {
		a.client.Publish(wire.ReplyTopic(a.id), 1, false, b)
	}
}

// await hands a publish to the ack waiters. It blocks while 65,536
// publishes are unacknowledged: back-pressure on the senders, never a lost
// count. After the run it returns false (the publish is not counted).
func (g *Generator) await(p pending) bool {
	g.ackMu.RLock()
	defer g.ackMu.RUnlock()
	if g.closed {
		return false
	}
	g.acks <- p
	return true
}

// Run connects the fleet at the ramp rate, sends the schedule for the
// configured duration and disconnects. It returns the summary; ctx
// cancelled ends the traffic early (the summary says so).
func (g *Generator) Run(ctx context.Context) (Summary, error) {
	g.runStart = time.Now()
	nWait := max(16, g.cfg.Senders)
	for range nWait {
		g.waitersWG.Add(1)
		go g.ackWaiter() // owned: ends when g.acks is closed in finish
	}
	jdone := make(chan struct{})
	if g.journal != nil {
		go func() { g.journal.run(); close(jdone) }() // owned: ends when the journal is closed in finish
	} else {
		close(jdone)
	}

	// Ramp: connect agents at cfg.Ramp per second.
	rampStart := time.Now()
	interval := time.Duration(float64(time.Second) / g.cfg.Ramp)
	var connToks []mqtt.Token
	tick := time.NewTicker(max(interval, time.Millisecond))
	perTick := max(1, int(float64(time.Millisecond)/float64(interval)+0.5))
	if interval >= time.Millisecond {
		perTick = 1
	}
	i := 0
ramp:
	for i < len(g.agents) {
		select {
		case <-ctx.Done():
			break ramp
		case <-tick.C:
		}
		for k := 0; k < perTick && i < len(g.agents); k++ {
			g.st.attempted.Add(1)
			connToks = append(connToks, g.agents[i].client.Connect())
			i++
		}
	}
	tick.Stop()
	for _, t := range connToks {
		if !t.WaitTimeout(30*time.Second) || t.Error() != nil {
			g.st.failed.Add(1)
		}
	}
	g.st.rampSeconds = time.Since(rampStart).Seconds()
	g.log.Info("fleet connected", "attempted", g.st.attempted.Load(), "held", g.st.held.Load(), "failed", g.st.failed.Load(),
		"took", time.Since(rampStart).Round(time.Millisecond))

	// Traffic.
	hbCtx, hbCancel := context.WithCancel(ctx)
	hbDone := make(chan struct{})
	go func() { g.heartbeats(hbCtx); close(hbDone) }() // owned: cancelled and awaited below
	for range g.cfg.Senders {
		q := make(chan Event, senderQueue)
		g.senders = append(g.senders, q)
		g.sendersWG.Add(1)
		go g.sender(q) // owned: ends when its queue is closed below
	}
	trafficStart := time.Now()
	g.schedule(ctx, trafficStart)
	for _, q := range g.senders {
		close(q)
	}
	hbCancel()
	<-hbDone
	g.st.trafficSeconds = time.Since(trafficStart).Seconds()
	g.st.interrupted = ctx.Err() != nil

	return g.finish(jdone), nil
}

// schedule feeds the senders from every agent's schedule until the
// duration is over, and sets off the reconnect storm.
func (g *Generator) schedule(ctx context.Context, start time.Time) {
	h := &agentHeap{}
	for _, a := range g.agents {
		s := g.sched.Agent(a.idx)
		if at, ok := s.Peek(); ok && at < g.cfg.Duration {
			heap.Push(h, &agentNext{a: a, s: s, at: at})
		}
	}
	storm := g.cfg.StormAt > 0 && g.cfg.StormAt < g.cfg.Duration
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := g.cfg.Duration
		if h.Len() > 0 {
			next = min(next, (*h)[0].at)
		}
		if storm {
			next = min(next, g.cfg.StormAt)
		}
		if wait := time.Until(start.Add(next)); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			return
		}
		now := time.Since(start)
		if storm && now >= g.cfg.StormAt {
			storm = false
			g.reconnectStorm()
		}
		if now >= g.cfg.Duration {
			return
		}
		for h.Len() > 0 && (*h)[0].at <= now {
			n := (*h)[0]
			ev := n.s.Next()
			g.st.scheduled.Add(1)
			g.st.lag.Observe((now - ev.At).Seconds())
			g.enqueue(g.senders[n.a.idx%len(g.senders)], ev)
			if at, ok := n.s.Peek(); ok && at < g.cfg.Duration {
				n.at = at
				heap.Fix(h, 0)
			} else {
				heap.Pop(h)
			}
		}
	}
}

// enqueue hands ev to a sender; a sender that is behind loses its oldest
// event (counted) rather than delaying every other agent.
func (g *Generator) enqueue(q chan Event, ev Event) {
	for {
		select {
		case q <- ev:
			return
		default:
		}
		select {
		case <-q:
			g.st.dropped.Add(1)
		default:
		}
	}
}

// reconnectStorm drops the connections of a seeded share of the agents at
// once, as a 4G cell or a district's uplink would: no DISCONNECT, so the
// broker publishes their last will, and paho reconnects each by itself.
func (g *Generator) reconnectStorm() {
	n := int(float64(len(g.agents))*g.cfg.StormFraction + 0.5)
	r := rand.New(rand.NewPCG(uint64(g.cfg.Seed), 0x570a))
	perm := r.Perm(len(g.agents))
	dropped := 0
	for _, i := range perm[:n] {
		a := g.agents[i]
		a.connMu.Lock()
		if a.conn != nil && a.conn.sever() {
			dropped++
		}
		a.connMu.Unlock()
	}
	g.st.stormDropped.Add(int64(dropped))
	g.log.Info("reconnect storm", "agents", dropped)
}

// heartbeats republishes each agent's retained status every status
// interval, spread evenly over the interval.
func (g *Generator) heartbeats(ctx context.Context) {
	const step = 100 * time.Millisecond
	slots := max(1, int(g.cfg.StatusInterval/step))
	t := time.NewTicker(step)
	defer t.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for i := n % slots; i < len(g.agents); i += slots {
			a := g.agents[i]
			if a.connects.Load() > 0 && a.client.IsConnectionOpen() {
				g.publishStatus(a, wire.StateOnline)
			}
		}
	}
}

func (g *Generator) sender(q chan Event) {
	defer g.sendersWG.Done()
	for ev := range q {
		g.send(ev)
	}
}

var objectClasses = map[string]string{wire.TypeBoatInRestrictedWater: "boat"}

// send publishes one scheduled alert (and its snapshot).
func (g *Generator) send(ev Event) {
	a := g.agents[ev.Agent-g.cfg.FirstAgent]
	now := time.Now()
	if ev.Phase == wire.PhaseStart || a.evStart[ev.Camera].IsZero() {
		a.evStart[ev.Camera] = now
	}
	al := &wire.Alert{AlertID: wire.NewULID(now), EventID: fmt.Sprintf("%s-e%d", a.cams[ev.Camera], ev.EventSeq), Phase: ev.Phase,
		AgentID: a.id, CameraID: a.cams[ev.Camera], Site: a.site, GridCode: a.grid, Geo: &a.geo, Type: ev.Type, Severity: ev.Severity,
		Zone: ev.Zone, StartedAt: a.evStart[ev.Camera], DetectedAt: now, PublishedAt: now,
		Model: &wire.Model{Name: "yolox_nano", Version: "0.1.1"}, ConfigVersion: "lg-1"}
	class := objectClasses[ev.Type]
	if class == "" {
		class = "person"
	}
	for k := range ev.Objects {
		x := float64((ev.EventSeq*7+k*13)%80) / 100
		al.Objects = append(al.Objects, wire.Object{Class: class, Score: 0.5 + float64(k%5)/10, BBox: [4]float64{x, 0.3, 0.08, 0.2},
			TrackID: int64(ev.EventSeq*100 + k), DwellS: now.Sub(al.StartedAt).Seconds()})
	}
	var snap []byte
	if ev.Evidence > 0 {
		snap = g.snap[:ev.Evidence]
		sum := sha256.Sum256(snap)
		al.Evidence.SnapshotSHA256 = hex.EncodeToString(sum[:])
	}
	b, err := wire.Marshal(al)
	if err != nil {
		g.log.Error("encode alert", "err", err)
		return
	}
	if g.journal != nil {
		g.journal.sent(al.AlertID, a.id, al.CameraID)
	}
	g.st.alertsSent.Add(1)
	g.st.bytesAlerts.Add(int64(len(b)))
	g.await(pending{tok: a.client.Publish(wire.AlertsTopic(a.id), 1, false, b), kind: kindAlert, alertID: al.AlertID, sent: now})
	if snap != nil {
		g.st.evidenceSent.Add(1)
		g.st.bytesEvidence.Add(int64(len(snap)))
		g.await(pending{tok: a.client.Publish(wire.EvidenceTopic(a.id, al.AlertID, wire.EvidenceSnapshot), 1, false, snap),
			kind: kindEvidence, alertID: al.AlertID, sent: now})
	}
}

// ackWaiter waits for acknowledgements in the order they were published.
func (g *Generator) ackWaiter() {
	defer g.waitersWG.Done()
	for p := range g.acks {
		ok := p.tok.WaitTimeout(g.cfg.AckTimeout) && p.tok.Error() == nil
		switch p.kind {
		case kindAlert:
			if ok {
				g.st.alertsAcked.Add(1)
				g.st.ackSeconds.Observe(time.Since(p.sent).Seconds())
				if g.journal != nil {
					g.journal.acked(p.alertID)
				}
			} else {
				g.st.alertsUnacked.Add(1)
				if g.journal != nil {
					g.journal.unacked(p.alertID, tokenErr(p.tok))
				}
			}
		case kindEvidence:
			if ok {
				g.st.evidenceAcked.Add(1)
			}
		case kindStatus:
			if ok {
				g.st.statusAcked.Add(1)
			}
		}
	}
}

func tokenErr(t mqtt.Token) string {
	if err := t.Error(); err != nil {
		return err.Error()
	}
	return "timeout"
}

// finish waits for the outstanding acknowledgements, then publishes every
// agent's offline status, as a real agent's Close does, and disconnects.
func (g *Generator) finish(jdone chan struct{}) Summary {
	g.sendersWG.Wait()
	g.st.heldAtEnd = g.st.held.Load()
	// Close the ack queue (late status publishes of reconnecting agents
	// see closed and skip it) and wait for the waiters: every alert is
	// acknowledged or timed out before the agents go offline.
	g.ackMu.Lock()
	g.closed = true
	close(g.acks)
	g.ackMu.Unlock()
	g.waitersWG.Wait()
	g.eachAgent(func(a *agent) {
		if a.client.IsConnectionOpen() {
			b, _ := wire.Marshal(g.status(a, wire.StateOffline))
			a.client.Publish(wire.StatusTopic(a.id), 1, true, b).WaitTimeout(5 * time.Second)
		}
		a.client.Disconnect(100)
	})
	if g.journal != nil {
		g.journal.close()
	}
	<-jdone
	s := g.st.summary(g.cfg)
	if g.journal != nil && g.journal.err != nil {
		s.JournalError = g.journal.err.Error()
	}
	return s
}

// eachAgent runs fn for every agent on 64 goroutines.
func (g *Generator) eachAgent(fn func(a *agent)) {
	var pool sync.WaitGroup
	work := make(chan *agent)
	for range 64 {
		pool.Add(1)
		go func() { // owned: ends when work is closed; awaited below
			defer pool.Done()
			for a := range work {
				fn(a)
			}
		}()
	}
	for _, a := range g.agents {
		work <- a
	}
	close(work)
	pool.Wait()
}

// Close releases what New opened when Run was not called or failed.
func (g *Generator) Close() error {
	if g.journal != nil {
		return g.journal.closeFile()
	}
	return nil
}

// severable is an agent's socket that a reconnect storm can cut as a
// network failure would: reads fail with errSevered (paho ignores the error
// of a socket closed under it, so Close alone would not look like a drop),
// and the socket is reset rather than closed in order, so the broker sends
// the agent's last will.
type severable struct {
	net.Conn
	cut atomic.Bool
}

var errSevered = errors.New("connection cut by the reconnect storm")

func (s *severable) Read(b []byte) (int, error) {
	n, err := s.Conn.Read(b)
	if s.cut.Load() {
		return 0, errSevered
	}
	return n, err
}

func (s *severable) Write(b []byte) (int, error) {
	if s.cut.Load() {
		return 0, errSevered
	}
	return s.Conn.Write(b)
}

// sever cuts the connection once; it reports whether it did.
func (s *severable) sever() bool {
	if s.cut.Swap(true) {
		return false
	}
	if tc, ok := s.Conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // RST on close
	}
	_ = s.Conn.SetReadDeadline(time.Now()) // wake paho's reader
	return true
}

type agentNext struct {
	a  *agent
	s  *AgentSchedule
	at time.Duration
}

type agentHeap []*agentNext

func (h agentHeap) Len() int { return len(h) }
func (h agentHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].a.idx < h[j].a.idx
}
func (h agentHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *agentHeap) Push(x any)   { *h = append(*h, x.(*agentNext)) }
func (h *agentHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
