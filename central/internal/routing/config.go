// Package routing decides who handles an alert: the places (grids with
// their parent chain grid → town → district → city), the agencies, the
// cameras' grids and zone tags, the SLA profiles, and ordered rules that map
// an alert's type, zone tags, grid, severity and time to a lead agency,
// support agencies, an SLA profile and the dispatch mode. It also names the
// management level above a place or an agency, which card notifications go to.
//
// Configuration is plain data decoded from YAML (mapstructure tags) and
// checked by Validate; New builds an immutable Router from it.
package routing

import (
	"fmt"
	"strings"
	"time"

	"github.com/xueliang/xl/central/internal/order"
	"github.com/xueliang/xl/internal/config"
	"github.com/xueliang/xl/internal/wire"
)

// Config is the routing section of xl-central's configuration.
type Config struct {
	Agencies    []AgencyConfig     `mapstructure:"agencies"`
	Grids       []GridConfig       `mapstructure:"grids"`
	Cameras     []CameraConfig     `mapstructure:"cameras"`
	SLAProfiles []SLAProfileConfig `mapstructure:"sla_profiles"`
	// DefaultSLAProfile applies to rules that name none, and to the duty
	// officer's decision when no rule matches. Optional.
	DefaultSLAProfile string       `mapstructure:"default_sla_profile"`
	Rules             []RuleConfig `mapstructure:"rules"`
}

// AgencyConfig is an agency that receives disposal orders.
type AgencyConfig struct {
	ID     string `mapstructure:"id"` // one MQTT topic level: [A-Za-z0-9][A-Za-z0-9_.-]{0,63}
	NameZH string `mapstructure:"name_zh"`
	NameEN string `mapstructure:"name_en"`
	Level  string `mapstructure:"level"` // grid, town, district or city
	// Jurisdiction is the code of the place the agency answers for (a grid,
	// town, district or city in grids); it is where escalation above the
	// agency starts. Optional.
	Jurisdiction string          `mapstructure:"jurisdiction"`
	Contacts     []ContactConfig `mapstructure:"contacts"` // duty contacts
	Topic        string          `mapstructure:"topic"`    // default: wire.OrdersTopic(id)
	Webhook      string          `mapstructure:"webhook"`  // optional http(s) URL
}

// ContactConfig is an agency's duty contact.
type ContactConfig struct {
	Name  string `mapstructure:"name"`
	Phone string `mapstructure:"phone"`
	Role  string `mapstructure:"role"` // e.g. duty officer, team leader
}

// GridConfig is a place: a grid, a town, a district or a city.
type GridConfig struct {
	Code   string `mapstructure:"code"`
	NameZH string `mapstructure:"name_zh"`
	NameEN string `mapstructure:"name_en"`
	Parent string `mapstructure:"parent"` // empty at the top of the chain
	// Level is grid, town, district or city. When empty it follows from the
	// depth below the top of the chain: city, district, town, then grid.
	Level string `mapstructure:"level"`
	// Supervisor is the agency notified when a card escalates to this place
	// (its command or social-governance centre). Optional.
	Supervisor string `mapstructure:"supervisor"`
	// Polygon is the boundary as [lon, lat] points (WGS-84), used to place
	// alerts that carry a position but no known grid. Optional.
	Polygon [][2]float64 `mapstructure:"polygon"`
}

// CameraConfig maps a camera to its grid and its zones to tags.
type CameraConfig struct {
	ID    string       `mapstructure:"id"`
	Grid  string       `mapstructure:"grid"`
	Zones []ZoneConfig `mapstructure:"zones"`
	// NameZH, NameEN and Geo place the camera on the console's site map.
	// Optional.
	NameZH string     `mapstructure:"name_zh"`
	NameEN string     `mapstructure:"name_en"`
	Geo    *GeoConfig `mapstructure:"geo"`
}

// GeoConfig is a WGS-84 position.
type GeoConfig struct {
	Lat float64 `mapstructure:"lat"`
	Lon float64 `mapstructure:"lon"`
}

// ZoneConfig is the tags of one of a camera's zones, by the zone name
// alerts carry.
type ZoneConfig struct {
	Name string   `mapstructure:"name"`
	Tags []string `mapstructure:"tags"`
}

// SLAProfileConfig is the deadline of each stage of an order; zero means no
// deadline for that stage.
type SLAProfileConfig struct {
	Name    string        `mapstructure:"name"`
	Accept  time.Duration `mapstructure:"accept"`   // dispatched → accepted
	EnRoute time.Duration `mapstructure:"en_route"` // accepted → en_route
	OnScene time.Duration `mapstructure:"on_scene"` // accepted → on_scene (arrival)
	Resolve time.Duration `mapstructure:"resolve"`  // on_scene → resolved
	Close   time.Duration `mapstructure:"close"`    // resolved → closed
}

// SLA is the profile as the order package uses it.
func (p SLAProfileConfig) SLA() order.SLA {
	return order.SLA{Accept: p.Accept, EnRoute: p.EnRoute, OnScene: p.OnScene, Resolve: p.Resolve, Close: p.Close}
}

// RuleConfig is one routing rule. Rules are tried in order; the first that
// matches decides.
type RuleConfig struct {
	Name   string       `mapstructure:"name"` // optional; shown as rules[i] when empty
	Match  MatchConfig  `mapstructure:"match"`
	Result ResultConfig `mapstructure:"result"`
}

// MatchConfig is what an alert must have for a rule to match. Every
// condition given must hold; a list matches when any of its entries does; an
// empty condition matches everything.
type MatchConfig struct {
	Types    []string      `mapstructure:"types"`     // alert types
	ZoneTags []string      `mapstructure:"zone_tags"` // tags of the alert's zone
	Grids    []string      `mapstructure:"grids"`     // the alert's grid or any of its ancestors
	Severity SeverityRange `mapstructure:"severity"`
	// Windows are local times of day in Asia/Shanghai, "HH:MM-HH:MM", start
	// included, end excluded; a window may wrap midnight ("20:00-06:00").
	Windows []string `mapstructure:"windows"`
	// Weekdays (mon … sun) limit the rule to those days. With windows, a
	// window that wraps midnight belongs to the day it starts on: Friday's
	// 20:00-06:00 includes Saturday 02:00.
	Weekdays []string `mapstructure:"weekdays"`
}

// SeverityRange bounds the alert's severity (1 most urgent … 4); zero leaves
// a side open.
type SeverityRange struct {
	Min int `mapstructure:"min"`
	Max int `mapstructure:"max"`
}

// ResultConfig is what a rule decides.
type ResultConfig struct {
	Lead       string   `mapstructure:"lead"`        // agency id
	Support    []string `mapstructure:"support"`     // agency ids
	SLAProfile string   `mapstructure:"sla_profile"` // default: default_sla_profile
	// Dispatch is auto (orders go out at once) or manual (they wait for the
	// officer). Default auto.
	Dispatch string `mapstructure:"dispatch"`
	// AutoDispatchAfter, for manual dispatch, sends the orders anyway when
	// the officer has not acted in this time. Zero: wait for the officer.
	AutoDispatchAfter time.Duration `mapstructure:"auto_dispatch_after"`
	// Reroute lists agencies, in order, to re-route a rejected order to.
	Reroute []string `mapstructure:"reroute"`
}

// Dispatch modes.
const (
	DispatchAuto   = "auto"
	DispatchManual = "manual"
)

// ApplyDefaults fills in the agencies' topics and the rules' dispatch mode.
func (c *Config) ApplyDefaults() {
	for i := range c.Agencies {
		if a := &c.Agencies[i]; a.Topic == "" && wire.ValidID(a.ID) {
			a.Topic = wire.OrdersTopic(a.ID)
		}
	}
	for i := range c.Rules {
		if r := &c.Rules[i]; r.Result.Dispatch == "" {
			r.Result.Dispatch = DispatchAuto
		}
	}
}

// Validate reports every problem in c, each with its key.
func (c *Config) Validate() []config.FieldError {
	var p config.Problems
	agencies := indexIDs(&p, "agencies", "id", len(c.Agencies), func(i int) string { return c.Agencies[i].ID })
	grids := indexIDs(&p, "grids", "code", len(c.Grids), func(i int) string { return c.Grids[i].Code })
	profiles := indexIDs(&p, "sla_profiles", "name", len(c.SLAProfiles), func(i int) string { return c.SLAProfiles[i].Name })

	for i, a := range c.Agencies {
		key := fmt.Sprintf("agencies[%d]", i)
		if a.ID != "" && !wire.ValidID(a.ID) {
			p.Add(key+".id", "%q must match [A-Za-z0-9][A-Za-z0-9_.-]{0,63} (it is an MQTT topic level)", a.ID)
		}
		if a.NameZH == "" {
			p.Add(key+".name_zh", "required")
		}
		if _, ok := ParseLevel(a.Level); !ok {
			p.Add(key+".level", "%q is not one of grid, town, district, city", a.Level)
		}
		if a.Jurisdiction != "" && !grids[a.Jurisdiction] {
			p.Add(key+".jurisdiction", "unknown grid %q", a.Jurisdiction)
		}
		for j, ct := range a.Contacts {
			if ct.Name == "" && ct.Phone == "" {
				p.Add(fmt.Sprintf("%s.contacts[%d]", key, j), "needs a name or a phone")
			}
		}
		if strings.ContainsAny(a.Topic, "+#") || strings.HasPrefix(a.Topic, "$") {
			p.Add(key+".topic", "%q: a topic to publish to has no wildcards (+, #) and does not start with $", a.Topic)
		}
		if a.Webhook != "" {
			p.URL(key+".webhook", a.Webhook, "http", "https")
		}
	}

	c.validateGrids(&p, grids, agencies)

	cameras := map[string]int{}
	for i, cam := range c.Cameras {
		key := fmt.Sprintf("cameras[%d]", i)
		switch j, dup := cameras[cam.ID]; {
		case cam.ID == "":
			p.Add(key+".id", "required")
		case dup:
			p.Add(key+".id", "duplicate id %q (also cameras[%d])", cam.ID, j)
		default:
			cameras[cam.ID] = i
		}
		if g := cam.Geo; g != nil && (g.Lat < -90 || g.Lat > 90 || g.Lon < -180 || g.Lon > 180 || g.Lat == 0 && g.Lon == 0) {
			p.Add(key+".geo", "lat must be within ±90 and lon within ±180 (WGS-84)")
		}
		if cam.Grid == "" {
			p.Add(key+".grid", "required")
		} else if !grids[cam.Grid] {
			p.Add(key+".grid", "unknown grid %q", cam.Grid)
		}
		zones := map[string]bool{}
		for j, z := range cam.Zones {
			zkey := fmt.Sprintf("%s.zones[%d]", key, j)
			if z.Name == "" {
				p.Add(zkey+".name", "required")
			} else if zones[z.Name] {
				p.Add(zkey+".name", "duplicate zone %q", z.Name)
			}
			zones[z.Name] = true
			for k, tag := range z.Tags {
				if strings.TrimSpace(tag) == "" {
					p.Add(fmt.Sprintf("%s.tags[%d]", zkey, k), "empty tag")
				}
			}
		}
	}

	for i, sp := range c.SLAProfiles {
		key := fmt.Sprintf("sla_profiles[%d]", i)
		for _, st := range []struct {
			name string
			d    time.Duration
		}{{"accept", sp.Accept}, {"en_route", sp.EnRoute}, {"on_scene", sp.OnScene}, {"resolve", sp.Resolve}, {"close", sp.Close}} {
			if st.d < 0 {
				p.Add(key+"."+st.name, "must not be negative")
			}
		}
		if sp.EnRoute > 0 && sp.OnScene > 0 && sp.EnRoute > sp.OnScene {
			p.Add(key+".en_route", "%s is after on_scene (%s): both count from acceptance", sp.EnRoute, sp.OnScene)
		}
	}
	if c.DefaultSLAProfile != "" && !profiles[c.DefaultSLAProfile] {
		p.Add("default_sla_profile", "unknown SLA profile %q", c.DefaultSLAProfile)
	}

	names := map[string]int{}
	for i, r := range c.Rules {
		key := fmt.Sprintf("rules[%d]", i)
		if r.Name != "" {
			if j, dup := names[r.Name]; dup {
				p.Add(key+".name", "duplicate rule name %q (also rules[%d])", r.Name, j)
			} else {
				names[r.Name] = i
			}
		}
		c.validateRule(&p, key, r, agencies, grids, profiles)
	}
	return p.List()
}

// indexIDs records the set of non-empty IDs of a list and reports empty and
// duplicate ones.
func indexIDs(p *config.Problems, list, field string, n int, id func(int) string) map[string]bool {
	first := map[string]int{}
	for i := range n {
		key := fmt.Sprintf("%s[%d].%s", list, i, field)
		v := id(i)
		if v == "" {
			p.Add(key, "required")
			continue
		}
		if j, dup := first[v]; dup {
			p.Add(key, "duplicate %s %q (also %s[%d])", field, v, list, j)
			continue
		}
		first[v] = i
	}
	set := make(map[string]bool, len(first))
	for v := range first {
		set[v] = true
	}
	return set
}

func (c *Config) validateGrids(p *config.Problems, grids, agencies map[string]bool) {
	parent := map[string]string{}
	level := map[string]Level{}
	for _, g := range c.Grids {
		if _, seen := parent[g.Code]; !seen && g.Code != "" {
			parent[g.Code] = g.Parent
			level[g.Code], _ = ParseLevel(g.Level)
		}
	}
	inCycle := map[string]bool{}
	for i, g := range c.Grids {
		key := fmt.Sprintf("grids[%d]", i)
		if g.Level != "" {
			if _, ok := ParseLevel(g.Level); !ok {
				p.Add(key+".level", "%q is not one of grid, town, district, city", g.Level)
			}
		}
		if g.Parent != "" {
			switch {
			case g.Parent == g.Code:
				p.Add(key+".parent", "%q is its own parent", g.Code)
				inCycle[g.Code] = true
			case !grids[g.Parent]:
				p.Add(key+".parent", "unknown grid %q", g.Parent)
			default:
				loop := cycleFrom(g.Code, parent)
				if loop != nil {
					// Reported once, at the first grid of the loop; grids
					// below a loop are not reported again.
					if loop[0] == g.Code && !inCycle[g.Code] {
						for _, code := range loop {
							inCycle[code] = true
						}
						p.Add(key+".parent", "parent chain loops: %s", strings.Join(append(loop, loop[0]), " → "))
					}
				} else if l, pl := level[g.Code], level[g.Parent]; l != LevelUnknown && pl != LevelUnknown && pl < l {
					p.Add(key+".parent", "%q is a %s, below this %s", g.Parent, pl, l)
				}
			}
		}
		if g.Supervisor != "" && !agencies[g.Supervisor] {
			p.Add(key+".supervisor", "unknown agency %q", g.Supervisor)
		}
		if len(g.Polygon) > 0 && len(g.Polygon) < 3 {
			p.Add(key+".polygon", "polygon needs at least 3 points, has %d", len(g.Polygon))
		}
		for j, pt := range g.Polygon {
			if pt[0] < -180 || pt[0] > 180 || pt[1] < -90 || pt[1] > 90 {
				p.Add(fmt.Sprintf("%s.polygon[%d]", key, j), "[%g, %g] is not [lon, lat]", pt[0], pt[1])
			}
		}
	}
}

// cycleFrom returns the loop the parent chain from code runs into, or nil
// when it reaches the top. Unknown parents end the chain.
func cycleFrom(code string, parent map[string]string) []string {
	pos := map[string]int{}
	var path []string
	for cur := code; cur != ""; cur = parent[cur] {
		if i, seen := pos[cur]; seen {
			return path[i:]
		}
		if _, known := parent[cur]; !known {
			return nil
		}
		pos[cur] = len(path)
		path = append(path, cur)
	}
	return nil
}

func (c *Config) validateRule(p *config.Problems, key string, r RuleConfig, agencies, grids, profiles map[string]bool) {
	m := r.Match
	for j, typ := range m.Types {
		if !wire.ValidType(typ) {
			p.Add(fmt.Sprintf("%s.match.types[%d]", key, j), "%q is not an alert type ([a-z][a-z0-9_]*)", typ)
		}
	}
	for j, tag := range m.ZoneTags {
		if strings.TrimSpace(tag) == "" {
			p.Add(fmt.Sprintf("%s.match.zone_tags[%d]", key, j), "empty tag")
		}
	}
	for j, g := range m.Grids {
		if !grids[g] {
			p.Add(fmt.Sprintf("%s.match.grids[%d]", key, j), "unknown grid %q", g)
		}
	}
	sev := m.Severity
	if sev.Min != 0 && (sev.Min < 1 || sev.Min > 4) {
		p.Add(key+".match.severity.min", "must be within 1 (most urgent) – 4")
	}
	if sev.Max != 0 && (sev.Max < 1 || sev.Max > 4) {
		p.Add(key+".match.severity.max", "must be within 1 (most urgent) – 4")
	}
	if sev.Min != 0 && sev.Max != 0 && sev.Min > sev.Max {
		p.Add(key+".match.severity", "min %d is above max %d", sev.Min, sev.Max)
	}
	for j, w := range m.Windows {
		if _, err := ParseWindow(w); err != nil {
			p.Add(fmt.Sprintf("%s.match.windows[%d]", key, j), "%v", err)
		}
	}
	for j, d := range m.Weekdays {
		if _, ok := parseWeekday(d); !ok {
			p.Add(fmt.Sprintf("%s.match.weekdays[%d]", key, j), "%q is not a weekday (mon … sun)", d)
		}
	}

	res := r.Result
	switch {
	case res.Lead == "":
		p.Add(key+".result.lead", "required")
	case !agencies[res.Lead]:
		p.Add(key+".result.lead", "unknown agency %q", res.Lead)
	}
	seen := map[string]bool{res.Lead: true}
	for j, s := range res.Support {
		k := fmt.Sprintf("%s.result.support[%d]", key, j)
		switch {
		case !agencies[s]:
			p.Add(k, "unknown agency %q", s)
		case s == res.Lead:
			p.Add(k, "%q is already the lead", s)
		case seen[s]:
			p.Add(k, "%q is listed twice", s)
		}
		seen[s] = true
	}
	for j, s := range res.Reroute {
		if !agencies[s] {
			p.Add(fmt.Sprintf("%s.result.reroute[%d]", key, j), "unknown agency %q", s)
		}
	}
	switch {
	case res.SLAProfile != "" && !profiles[res.SLAProfile]:
		p.Add(key+".result.sla_profile", "unknown SLA profile %q", res.SLAProfile)
	case res.SLAProfile == "" && c.DefaultSLAProfile == "":
		p.Add(key+".result.sla_profile", "required (there is no default_sla_profile)")
	}
	if res.Dispatch != "" {
		p.OneOf(key+".result.dispatch", res.Dispatch, DispatchAuto, DispatchManual)
	}
	switch {
	case res.AutoDispatchAfter < 0:
		p.Add(key+".result.auto_dispatch_after", "must not be negative")
	case res.AutoDispatchAfter > 0 && res.Dispatch != DispatchManual:
		p.Add(key+".result.auto_dispatch_after", "only applies to dispatch: manual")
	}
}
