package routing

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/xueliang/xl/internal/config"
	"github.com/xueliang/xl/internal/wire"
)

// TimeZone is where rule windows and weekdays are read.
const TimeZone = "Asia/Shanghai"

// ErrInvalidConfig is returned by New for a configuration that does not
// validate; the error also holds the *config.Errors listing every problem.
var ErrInvalidConfig = errors.New("routing: invalid configuration")

// Router routes alerts. It is immutable and safe for concurrent use.
type Router struct {
	loc            *time.Location
	agencies       map[string]Agency
	places         map[string]Place
	cameras        map[string]camera
	profiles       map[string]SLAProfileConfig
	defaultProfile string
	rules          []rule
}

type camera struct {
	grid  string
	zones map[string][]string // zone name → tags
}

type rule struct {
	name     string // name, or rules[i]
	index    int
	match    MatchConfig
	windows  []Window
	weekdays []time.Weekday
	result   ResultConfig
}

// Decision is where an alert goes.
type Decision struct {
	Matched    bool
	Rule       string // the rule's name, or rules[i]; empty when no rule matched
	RuleIndex  int    // -1 when no rule matched
	Lead       string // agency id; empty when no rule matched (the duty officer decides)
	Support    []string
	Reroute    []string // where a rejected order may go next, in order
	SLAProfile string
	Auto       bool          // dispatch at once
	AutoAfter  time.Duration // manual dispatch: send anyway after this long (0: wait for the officer)
	Grid       string        // the grid the alert was placed in
	Why        []string      // every step, for `route test` and the incident's history
}

// Agencies is the lead followed by the support agencies: one order each.
func (d Decision) Agencies() []string {
	if d.Lead == "" {
		return nil
	}
	return append([]string{d.Lead}, d.Support...)
}

// New builds a Router from cfg, which is validated first (defaults are
// applied to a copy). Rule windows are read in Asia/Shanghai.
func New(cfg *Config) (*Router, error) {
	c := *cfg
	c.Agencies = slices.Clone(cfg.Agencies)
	c.Rules = slices.Clone(cfg.Rules)
	c.ApplyDefaults()
	if list := c.Validate(); len(list) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, &config.Errors{File: "routing", List: list})
	}
	r := &Router{
		loc:            shanghai(),
		agencies:       map[string]Agency{},
		places:         buildPlaces(c.Grids),
		cameras:        map[string]camera{},
		profiles:       map[string]SLAProfileConfig{},
		defaultProfile: c.DefaultSLAProfile,
	}
	for _, a := range c.Agencies {
		lvl, _ := ParseLevel(a.Level)
		ag := Agency{ID: a.ID, NameZH: a.NameZH, NameEN: a.NameEN, Level: lvl, Jurisdiction: a.Jurisdiction, Topic: a.Topic, Webhook: a.Webhook}
		for _, ct := range a.Contacts {
			ag.Contacts = append(ag.Contacts, Contact(ct))
		}
		r.agencies[a.ID] = ag
	}
	for _, cam := range c.Cameras {
		zones := map[string][]string{}
		for _, z := range cam.Zones {
			zones[z.Name] = slices.Clone(z.Tags)
		}
		r.cameras[cam.ID] = camera{grid: cam.Grid, zones: zones}
	}
	for _, p := range c.SLAProfiles {
		r.profiles[p.Name] = p
	}
	for i, rc := range c.Rules {
		ru := rule{name: rc.Name, index: i, match: rc.Match, result: rc.Result}
		if ru.name == "" {
			ru.name = fmt.Sprintf("rules[%d]", i)
		}
		if ru.result.SLAProfile == "" {
			ru.result.SLAProfile = c.DefaultSLAProfile
		}
		for _, w := range rc.Match.Windows {
			win, _ := ParseWindow(w) // validated
			ru.windows = append(ru.windows, win)
		}
		for _, d := range rc.Match.Weekdays {
			wd, _ := parseWeekday(d)
			ru.weekdays = append(ru.weekdays, wd)
		}
		r.rules = append(r.rules, ru)
	}
	return r, nil
}

// shanghai is Asia/Shanghai, or the same fixed UTC+8 (China has had no
// daylight saving time since 1991) when the time zone database is missing.
func shanghai() *time.Location {
	if loc, err := time.LoadLocation(TimeZone); err == nil {
		return loc
	}
	return time.FixedZone("CST", 8*60*60)
}

// Profile is the SLA profile with this name.
func (r *Router) Profile(name string) (SLAProfileConfig, bool) {
	p, ok := r.profiles[name]
	return p, ok
}

// Route decides where alert a, seen at time at, goes: the first rule that
// matches, or the duty officer when none does.
func (r *Router) Route(a *wire.Alert, at time.Time) Decision {
	d := Decision{RuleIndex: -1}
	if a == nil {
		d.Why = append(d.Why, "no alert")
		return r.toOfficer(d)
	}
	local := at.In(r.loc)
	d.Why = append(d.Why, fmt.Sprintf("alert %s: type %s, severity %d, camera %s, zone %q",
		orDash(a.AlertID), a.Type, a.Severity, orDash(a.CameraID), a.Zone))

	grid, why := r.placeOf(a)
	d.Grid = grid
	d.Why = append(d.Why, why)
	chain := r.Chain(grid)

	tags, why := r.tagsOf(a)
	d.Why = append(d.Why, why)
	d.Why = append(d.Why, fmt.Sprintf("time: %s (%s)", local.Format("2006-01-02 15:04 Mon"), TimeZone))

	for _, ru := range r.rules {
		ok, reasons := ru.test(a, chain, tags, local)
		if !ok {
			d.Why = append(d.Why, fmt.Sprintf("rule %s: no match: %s", ru.name, strings.Join(reasons, "; ")))
			continue
		}
		d.Why = append(d.Why, fmt.Sprintf("rule %s: match: %s", ru.name, strings.Join(reasons, "; ")))
		if rest := len(r.rules) - ru.index - 1; rest > 0 {
			d.Why = append(d.Why, fmt.Sprintf("%d later rule(s) not tried: the first match wins", rest))
		}
		res := ru.result
		d.Matched, d.Rule, d.RuleIndex = true, ru.name, ru.index
		d.Lead, d.Support, d.Reroute = res.Lead, slices.Clone(res.Support), slices.Clone(res.Reroute)
		d.SLAProfile = res.SLAProfile
		d.Auto = res.Dispatch != DispatchManual
		if !d.Auto {
			d.AutoAfter = res.AutoDispatchAfter
		}
		d.Why = append(d.Why, describe(d))
		return d
	}
	return r.toOfficer(d)
}

func (r *Router) toOfficer(d Decision) Decision {
	d.SLAProfile = r.defaultProfile
	msg := "no rule matched: the duty officer decides"
	if len(r.rules) == 0 {
		msg = "no rules configured: the duty officer decides"
	}
	if d.SLAProfile != "" {
		msg += fmt.Sprintf(" (SLA profile %s)", d.SLAProfile)
	}
	d.Why = append(d.Why, msg)
	return d
}

func describe(d Decision) string {
	var b strings.Builder
	fmt.Fprintf(&b, "decision: lead %s", d.Lead)
	if len(d.Support) > 0 {
		fmt.Fprintf(&b, ", support %s", strings.Join(d.Support, ", "))
	}
	fmt.Fprintf(&b, "; SLA profile %s; dispatch ", orDash(d.SLAProfile))
	switch {
	case d.Auto:
		b.WriteString("auto")
	case d.AutoAfter > 0:
		fmt.Fprintf(&b, "manual, auto after %s", d.AutoAfter)
	default:
		b.WriteString("manual")
	}
	if len(d.Reroute) > 0 {
		fmt.Fprintf(&b, "; re-route to %s", strings.Join(d.Reroute, ", "))
	}
	return b.String()
}

// placeOf is the grid an alert is placed in: the camera's grid from the
// configuration, else the grid the alert names, else the smallest polygon
// holding its position.
func (r *Router) placeOf(a *wire.Alert) (string, string) {
	var notes []string
	if cam, ok := r.cameras[a.CameraID]; ok {
		msg := fmt.Sprintf("place: %s (camera %s)", cam.grid, a.CameraID)
		if a.GridCode != "" && a.GridCode != cam.grid {
			msg += fmt.Sprintf(", not %s as the alert says", a.GridCode)
		}
		return cam.grid, msg + r.chainText(cam.grid)
	}
	if a.GridCode != "" {
		if _, ok := r.places[a.GridCode]; ok {
			return a.GridCode, fmt.Sprintf("place: %s (the alert's grid_code; camera %s is not configured)", a.GridCode, orDash(a.CameraID)) + r.chainText(a.GridCode)
		}
		notes = append(notes, fmt.Sprintf("grid_code %s is unknown", a.GridCode))
	}
	if a.Geo != nil {
		if p, ok := r.Locate(a.Geo.Lon, a.Geo.Lat); ok {
			notes = append(notes, fmt.Sprintf("position %.5f, %.5f", a.Geo.Lat, a.Geo.Lon))
			return p.Code, fmt.Sprintf("place: %s (%s)", p.Code, strings.Join(notes, "; ")) + r.chainText(p.Code)
		}
		notes = append(notes, fmt.Sprintf("position %.5f, %.5f is in no configured polygon", a.Geo.Lat, a.Geo.Lon))
	}
	notes = append(notes, "rules with grids cannot match")
	return a.GridCode, "place: unknown (" + strings.Join(notes, "; ") + ")"
}

func (r *Router) chainText(code string) string {
	var codes []string
	for _, p := range r.Chain(code) {
		codes = append(codes, p.Code)
	}
	return "; chain " + strings.Join(codes, " → ")
}

// tagsOf is the tags of the alert's zone, from its camera's configuration.
func (r *Router) tagsOf(a *wire.Alert) ([]string, string) {
	cam, ok := r.cameras[a.CameraID]
	switch {
	case a.Zone == "":
		return nil, "zone: none in the alert"
	case !ok:
		return nil, fmt.Sprintf("zone %s: no tags (camera %s is not configured)", a.Zone, orDash(a.CameraID))
	}
	tags, ok := cam.zones[a.Zone]
	if !ok || len(tags) == 0 {
		return nil, fmt.Sprintf("zone %s: no tags configured for camera %s", a.Zone, a.CameraID)
	}
	return tags, fmt.Sprintf("zone %s: tags %s", a.Zone, strings.Join(tags, ", "))
}

// test reports whether the rule matches and why: the conditions that hold
// when it does, the ones that fail when it does not.
func (ru rule) test(a *wire.Alert, chain []Place, tags []string, local time.Time) (bool, []string) {
	var held, failed []string
	check := func(ok bool, yes, no string) {
		if ok {
			held = append(held, yes)
		} else {
			failed = append(failed, no)
		}
	}
	m := ru.match
	if len(m.Types) > 0 {
		check(slices.Contains(m.Types, a.Type),
			"type "+a.Type,
			fmt.Sprintf("type %s is not %s", a.Type, list(m.Types)))
	}
	if len(m.ZoneTags) > 0 {
		i := slices.IndexFunc(m.ZoneTags, func(t string) bool { return slices.Contains(tags, t) })
		hit := ""
		if i >= 0 {
			hit = m.ZoneTags[i]
		}
		check(i >= 0, "zone tag "+hit, fmt.Sprintf("zone tags [%s] have none of %s", strings.Join(tags, ", "), list(m.ZoneTags)))
	}
	if len(m.Grids) > 0 {
		ok, yes := false, ""
		for _, p := range chain {
			if slices.Contains(m.Grids, p.Code) {
				ok, yes = true, "grid "+p.Code
				if p.Code != chain[0].Code {
					yes += fmt.Sprintf(" (%s of %s)", p.Level, chain[0].Code)
				}
				break
			}
		}
		no := fmt.Sprintf("grid %s is not in or under %s", orDash(firstCode(chain)), list(m.Grids))
		check(ok, yes, no)
	}
	if s := m.Severity; s.Min != 0 || s.Max != 0 {
		lo, hi := s.Min, s.Max
		if lo == 0 {
			lo = 1
		}
		if hi == 0 {
			hi = 4
		}
		check(a.Severity >= lo && a.Severity <= hi,
			fmt.Sprintf("severity %d within %d–%d", a.Severity, lo, hi),
			fmt.Sprintf("severity %d is outside %d–%d", a.Severity, lo, hi))
	}
	if len(ru.windows) > 0 || len(ru.weekdays) > 0 {
		ok, yes, no := ru.testTime(local)
		check(ok, yes, no)
	}
	if len(m.Types)+len(m.ZoneTags)+len(m.Grids)+len(ru.windows)+len(ru.weekdays) == 0 && m.Severity == (SeverityRange{}) {
		held = append(held, "no conditions (matches every alert)")
	}
	if len(failed) > 0 {
		return false, failed
	}
	return true, held
}

func (ru rule) testTime(local time.Time) (ok bool, yes, no string) {
	hm := local.Format("15:04")
	days := func() string {
		var s []string
		for _, d := range ru.weekdays {
			s = append(s, d.String()[:3])
		}
		return strings.Join(s, ", ")
	}
	if len(ru.windows) == 0 {
		d := local.Weekday()
		return slices.Contains(ru.weekdays, d),
			fmt.Sprintf("%s is one of %s", d.String()[:3], days()),
			fmt.Sprintf("%s is not one of %s", d.String()[:3], days())
	}
	var outside []string
	for _, w := range ru.windows {
		started, in := w.Contains(local)
		if !in {
			outside = append(outside, w.String())
			continue
		}
		if len(ru.weekdays) == 0 {
			return true, fmt.Sprintf("%s within %s", hm, w), ""
		}
		d := started.Weekday()
		if slices.Contains(ru.weekdays, d) {
			return true, fmt.Sprintf("%s within %s started %s, one of %s", hm, w, d.String()[:3], days()), ""
		}
		outside = append(outside, fmt.Sprintf("%s (it started %s, not one of %s)", w, d.String()[:3], days()))
	}
	return false, "", fmt.Sprintf("%s is outside %s", hm, strings.Join(outside, ", "))
}

func list(s []string) string {
	if len(s) == 1 {
		return s[0]
	}
	return "[" + strings.Join(s, ", ") + "]"
}

func firstCode(chain []Place) string {
	if len(chain) == 0 {
		return ""
	}
	return chain[0].Code
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// RerouteOf is the re-route list of the rule named rule (an incident's
// Rule); nil when no rule of that name is configured any more.
func (r *Router) RerouteOf(rule string) []string {
	for _, ru := range r.rules {
		if ru.name == rule {
			return slices.Clone(ru.result.Reroute)
		}
	}
	return nil
}
