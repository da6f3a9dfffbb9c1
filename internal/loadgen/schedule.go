package loadgen

import (
	"container/heap"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/xueliang/xl/internal/wire"
)

// Event is one alert of the schedule: when (after the start of the
// traffic) which camera raises what. The schedule is a pure function of
// the seed and the traffic settings; the alert and event IDs and the
// timestamps are made when the alert is sent.
type Event struct {
	At       time.Duration
	Agent    int
	Camera   int
	Type     string
	Severity int
	Zone     string
	Phase    wire.Phase
	EventSeq int // per camera: the n-th event lifecycle of this camera
	Objects  int // objects in the alert
	Evidence int // snapshot bytes; 0: no snapshot
}

// Profile is the time-of-day shape of the alert rate: a multiplier for
// each hour of the (simulated) day whose mean over 24 hours is 1, so the
// configured rate is the daily average.
type Profile struct {
	Name string
	Hour [24]float64
}

// Profiles by name.
var profiles = map[string]Profile{
	"flat": normalised("flat", [24]float64{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}),
	// Quiet after midnight, busy by day, a storm at dusk (17:00–19:59: people
	// by the water after work, boats coming in, poor light raising false
	// intrusions), and the night-fishing tail until about 23:00.
	"diurnal": normalised("diurnal", [24]float64{
		0.35, 0.2, 0.15, 0.12, 0.12, 0.2, // 00–05 quiet hours
		0.5, 0.8, 1.0, 1.0, 1.0, 1.0, // 06–11
		1.0, 0.9, 1.0, 1.1, 1.4, 2.6, // 12–17 (dusk begins)
		3.2, 2.8, 1.6, 1.1, 0.8, 0.55, // 18–23
	}),
}

func normalised(name string, h [24]float64) Profile {
	sum := 0.0
	for _, v := range h {
		sum += v
	}
	for i := range h {
		h[i] *= 24 / sum
	}
	return Profile{Name: name, Hour: h}
}

// ProfileNames lists the known profiles.
func ProfileNames() []string { return []string{"flat", "diurnal"} }

func (p Profile) max() float64 {
	m := 0.0
	for _, v := range p.Hour {
		m = math.Max(m, v)
	}
	return m
}

// typeMix is what a county's riverbank and community cameras raise, with
// each type's usual severity (1 most urgent) and its share of alerts.
var typeMix = []struct {
	typ      string
	severity int
	weight   float64
	night    float64 // extra weight between 20:00 and 05:59
}{
	{wire.TypeIntrusion, 2, 0.34, 0.0},
	{wire.TypeLoitering, 3, 0.20, 0.0},
	{wire.TypeIllegalFishing, 2, 0.12, 0.20},
	{wire.TypeCrowd, 3, 0.12, 0.0},
	{wire.TypeBoatInRestrictedWater, 2, 0.08, 0.05},
	{wire.TypeCameraTamper, 1, 0.04, 0.0},
	{wire.TypeStreamLost, 4, 0.06, 0.0},
	{wire.TypeStreamRestored, 4, 0.04, 0.0},
}

// zoneNames are the zones a simulated camera watches (one to three each).
var zoneNames = []string{"riverbank", "no-fishing", "sluice", "lawn", "crossing", "dock", "gate", "path"}

// Schedule makes the alert arrivals of every camera of every agent.
type Schedule struct {
	seed          uint64
	first, agents int
	perAg         int
	perCamPerSec  float64 // daily mean rate of one camera, alerts per real second
	profile       Profile
	compress      float64 // simulated seconds per real second
	startHour     float64 // simulated time of day at the start, hours
	evidence      float64 // share of alerts with a snapshot
	evMedian      float64 // snapshot bytes, median of the lognormal
	evSigma       float64
	maxMultiplier float64
}

// NewSchedule makes the schedule of cfg (which must be valid).
func NewSchedule(cfg Config) *Schedule {
	p := profiles[cfg.Profile]
	s := &Schedule{seed: uint64(cfg.Seed), first: cfg.FirstAgent, agents: cfg.Agents, perAg: cfg.CamerasPerAgent,
		perCamPerSec: cfg.Rate.PerCameraPerSecond(cfg.Agents * cfg.CamerasPerAgent), profile: p,
		compress: cfg.Compress, startHour: cfg.StartHour, evidence: cfg.Evidence,
		evMedian: float64(cfg.EvidenceMedian), evSigma: cfg.EvidenceSigma, maxMultiplier: p.max()}
	return s
}

// hourAt is the simulated hour of day at real offset t.
func (s *Schedule) hourAt(t time.Duration) float64 {
	h := s.startHour + t.Seconds()*s.compress/3600
	return math.Mod(h, 24)
}

// camGen makes one camera's arrivals: a Poisson process whose rate follows
// the profile, drawn by thinning from its own random stream.
type camGen struct {
	s         *Schedule
	agent     int
	camera    int
	rng       *rand.Rand
	zones     []string
	t         time.Duration // last candidate time
	open      bool          // an event lifecycle is open
	openType  int
	openZone  string
	seq       int
	updates   int
	next      Event
	exhausted bool
}

func (s *Schedule) camera(agent, camera int) *camGen {
	// One stream per camera, so that a camera's arrivals do not depend on
	// how many other cameras there are.
	rng := rand.New(rand.NewPCG(s.seed, uint64(agent)<<20|uint64(camera)))
	g := &camGen{s: s, agent: agent, camera: camera, rng: rng}
	n := 1 + rng.IntN(3)
	perm := rng.Perm(len(zoneNames))
	for _, i := range perm[:n] {
		g.zones = append(g.zones, zoneNames[i])
	}
	g.advance()
	return g
}

// advance draws the next arrival into g.next.
func (g *camGen) advance() {
	s := g.s
	lmax := s.perCamPerSec * s.maxMultiplier
	if lmax <= 0 {
		g.exhausted = true
		return
	}
	for {
		g.t += time.Duration(g.rng.ExpFloat64() / lmax * float64(time.Second))
		h := s.hourAt(g.t)
		if g.rng.Float64()*s.maxMultiplier <= s.profile.Hour[int(h)%24] {
			break
		}
	}
	night := func(h float64) bool { return h >= 20 || h < 6 }(s.hourAt(g.t))
	ev := Event{At: g.t, Agent: g.agent, Camera: g.camera}
	if !g.open {
		total := 0.0
		for _, m := range typeMix {
			total += m.weight
			if night {
				total += m.night
			}
		}
		x := g.rng.Float64() * total
		g.openType = len(typeMix) - 1
		for i, m := range typeMix {
			w := m.weight
			if night {
				w += m.night
			}
			if x < w {
				g.openType = i
				break
			}
			x -= w
		}
		g.openZone = g.zones[g.rng.IntN(len(g.zones))]
		g.open, g.updates = true, 0
		g.seq++
		ev.Phase = wire.PhaseStart
	} else {
		// An open event is updated a few times and then ends.
		if g.updates >= 3 || g.rng.Float64() < 0.4 {
			ev.Phase = wire.PhaseEnd
			g.open = false
		} else {
			ev.Phase = wire.PhaseUpdate
			g.updates++
		}
	}
	m := typeMix[g.openType]
	ev.Type, ev.Severity, ev.Zone, ev.EventSeq = m.typ, m.severity, g.openZone, g.seq
	if m.typ == wire.TypeCrowd {
		ev.Objects = 5 + g.rng.IntN(12)
	} else if m.typ != wire.TypeStreamLost && m.typ != wire.TypeStreamRestored && m.typ != wire.TypeCameraTamper {
		ev.Objects = 1 + g.rng.IntN(3)
	}
	if s.evidence > 0 && ev.Phase != wire.PhaseEnd && g.rng.Float64() < s.evidence {
		size := s.evMedian * math.Exp(s.evSigma*g.rng.NormFloat64())
		ev.Evidence = int(min(max(size, 2048), float64(wire.MaxSnapshotBytes)))
	}
	g.next = ev
}

// AgentSchedule merges an agent's cameras into one time-ordered stream.
type AgentSchedule struct {
	cams camHeap
}

// Agent returns agent i's stream of events.
func (s *Schedule) Agent(i int) *AgentSchedule {
	a := &AgentSchedule{}
	for c := range s.perAg {
		g := s.camera(i, c)
		if !g.exhausted {
			a.cams = append(a.cams, g)
		}
	}
	heap.Init(&a.cams)
	return a
}

// Peek returns the next event's time; ok is false when there is none.
func (a *AgentSchedule) Peek() (time.Duration, bool) {
	if len(a.cams) == 0 {
		return 0, false
	}
	return a.cams[0].next.At, true
}

// Next returns the next event and draws the one after it.
func (a *AgentSchedule) Next() Event {
	g := a.cams[0]
	ev := g.next
	g.advance()
	heap.Fix(&a.cams, 0)
	return ev
}

type camHeap []*camGen

func (h camHeap) Len() int { return len(h) }
func (h camHeap) Less(i, j int) bool {
	if h[i].next.At != h[j].next.At {
		return h[i].next.At < h[j].next.At
	}
	return h[i].camera < h[j].camera
}
func (h camHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *camHeap) Push(x any)   { *h = append(*h, x.(*camGen)) }
func (h *camHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Until returns every event of every agent before d, in time order (ties by
// agent and camera): the whole schedule, for tests and --dry-run.
func (s *Schedule) Until(d time.Duration) []Event {
	var all []Event
	for i := s.first; i < s.first+s.agents; i++ {
		a := s.Agent(i)
		for {
			at, ok := a.Peek()
			if !ok || at >= d {
				break
			}
			all = append(all, a.Next())
		}
	}
	sortEvents(all)
	return all
}

func sortEvents(ev []Event) {
	less := func(a, b Event) int {
		switch {
		case a.At != b.At:
			return cmpInt(int64(a.At), int64(b.At))
		case a.Agent != b.Agent:
			return cmpInt(int64(a.Agent), int64(b.Agent))
		default:
			return cmpInt(int64(a.Camera), int64(b.Camera))
		}
	}
	slices.SortFunc(ev, less)
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// String is one line of the schedule as --dry-run prints it.
func (e Event) String() string {
	return fmt.Sprintf("%12.6f agent=%d camera=%d %s %d %s %s ev%d obj=%d snap=%d", e.At.Seconds(), e.Agent, e.Camera,
		e.Type, e.Severity, e.Zone, e.Phase, e.EventSeq, e.Objects, e.Evidence)
}

// AgentID is the ID of simulated agent i: PREFIX-NNNNN.
func AgentID(prefix string, i int) string { return fmt.Sprintf("%s-%05d", prefix, i) }

// CameraID is the ID of camera c of an agent.
func CameraID(agentID string, c int) string { return fmt.Sprintf("%s-c%02d", agentID, c) }

// Towns and grids the simulated agents are spread over: agent i is in
// grid GridCode(i) of town TownCode(i). The scale configuration of central
// names the same places (see deploy/scale).
const (
	Towns        = 10
	GridsPerTown = 10
)

// TownCode is the town of agent i.
func TownCode(i int) string { return fmt.Sprintf("LG-T%02d", i%Towns) }

// GridCode is the grid of agent i.
func GridCode(i int) string { return fmt.Sprintf("%s-G%02d", TownCode(i), (i/Towns)%GridsPerTown) }
