package routing

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xueliang/xl/internal/config"
	"github.com/xueliang/xl/internal/wire"
)

// haimenYAML is a small Haimen district: Nantong city → Haimen district →
// Zhengyu and Sande towns → grids. The reference case is the night fishing
// rule on the Lixin sluice camera.
const haimenYAML = `
agencies:
  - {id: nt-command, name_zh: 南通市社会治理现代化指挥中心, name_en: Nantong command centre, level: city, jurisdiction: NT}
  - {id: hm-command, name_zh: 海门区社会治理现代化指挥中心, name_en: Haimen command centre, level: district, jurisdiction: HM}
  - {id: zy-command, name_zh: 正余镇综治中心, name_en: Zhengyu governance centre, level: town, jurisdiction: HM-ZY}
  - id: hm-agri-brigade
    name_zh: 海门区农业综合行政执法大队
    name_en: Haimen agricultural law-enforcement brigade
    level: district
    jurisdiction: HM
    contacts:
      - {name: 值班室, phone: "0513-82210000", role: duty}
    webhook: https://agri.example.gov.cn/xl/orders
  - {id: hm-river-police, name_zh: 海门公安分局水上派出所, name_en: Haimen river police, level: district, jurisdiction: HM}
  - {id: hm-police, name_zh: 海门公安分局, name_en: Haimen police, level: district, jurisdiction: HM, topic: gov/haimen/police/orders}
  - {id: zy-patrol, name_zh: 正余镇综合执法队, name_en: Zhengyu patrol, level: town, jurisdiction: HM-ZY}

grids:
  - {code: NT, name_zh: 南通市, name_en: Nantong, supervisor: nt-command}
  - {code: HM, name_zh: 海门区, name_en: Haimen, parent: NT, supervisor: hm-command}
  - {code: HM-ZY, name_zh: 正余镇, name_en: Zhengyu, parent: HM, supervisor: zy-command}
  - code: HM-ZY-QZ-03
    name_zh: 青展村三网格
    parent: HM-ZY
    polygon: [[121.17, 31.86], [121.19, 31.86], [121.19, 31.88], [121.17, 31.88]]
  - {code: HM-ZY-QZ-04, name_zh: 青展村四网格, parent: HM-ZY}
  - {code: HM-SD, name_zh: 三德镇, parent: HM}
  - {code: HM-SD-01, name_zh: 三德一网格, parent: HM-SD}
  - {code: HM-PORT, name_zh: 港区网格, parent: HM, level: grid}

cameras:
  - id: lixin-sluice-east
    grid: HM-ZY-QZ-03
    zones:
      - {name: riverbank, tags: [no_fishing, river]}
      - {name: north_path, tags: [restricted]}
  - {id: qz04-dock, grid: HM-ZY-QZ-04, zones: [{name: dock, tags: [no_fishing]}]}
  - {id: sd-pond, grid: HM-SD-01, zones: [{name: pond, tags: [no_fishing]}]}
  - {id: sd-park-gate, grid: HM-SD-01, zones: [{name: gate, tags: [restricted]}]}

sla_profiles:
  - {name: urgent, accept: 2m, on_scene: 10m, resolve: 1h, close: 12h}
  - {name: river-night, accept: 5m, on_scene: 20m, resolve: 2h, close: 24h}
  - {name: standard, accept: 10m, on_scene: 45m, resolve: 4h, close: 48h}
default_sla_profile: standard

rules:
  - name: critical-crowd
    match: {types: [crowd], severity: {max: 1}}
    result: {lead: hm-police, support: [zy-patrol], sla_profile: urgent}
  - name: river-fishing-night
    match:
      types: [illegal_fishing]
      zone_tags: [no_fishing]
      grids: [HM-ZY]
      windows: ["20:00-06:00"]
    result:
      lead: hm-agri-brigade
      support: [hm-river-police]
      sla_profile: river-night
      dispatch: auto
      reroute: [zy-patrol]
  - name: fishing-day
    match: {types: [illegal_fishing]}
    result: {lead: hm-agri-brigade, dispatch: manual, auto_dispatch_after: 10m}
  - name: intrusion-weekend-night
    match: {types: [intrusion], zone_tags: [restricted], windows: ["22:00-02:00"], weekdays: [fri, sat]}
    result: {lead: zy-patrol, support: [hm-police], sla_profile: urgent}
  - name: intrusion
    match: {types: [intrusion], severity: {min: 2, max: 3}}
    result: {lead: zy-patrol}
`

func noEnv(string) (string, bool) { return "", false }

func loadConfig(t *testing.T, yaml string) *Config {
	t.Helper()
	cfg := &Config{}
	if err := config.LoadBytes("routing.yaml", []byte(yaml), cfg, noEnv); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func newRouter(t *testing.T, yaml string) *Router {
	t.Helper()
	r, err := New(loadConfig(t, yaml))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// local is a wall-clock time in Asia/Shanghai (UTC+8 all year).
func local(t *testing.T, s string) time.Time {
	t.Helper()
	at, err := time.ParseInLocation("2006-01-02 15:04", s, time.FixedZone("CST", 8*3600))
	if err != nil {
		t.Fatal(err)
	}
	return at.UTC()
}

func alert(typ string, severity int, cameraID, zone, grid string) *wire.Alert {
	return &wire.Alert{Schema: wire.SchemaAlert, AlertID: "01JZREFERENCE0000000000000", Phase: wire.PhaseStart, AgentID: "hm-lixin-01",
		CameraID: cameraID, GridCode: grid, Type: typ, Severity: severity, Zone: zone}
}

func TestRoute(t *testing.T) {
	r := newRouter(t, haimenYAML)
	fishing := alert(wire.TypeIllegalFishing, 2, "lixin-sluice-east", "riverbank", "HM-ZY-QZ-03")
	// 2026-06-05 is a Friday.
	tests := []struct {
		name        string
		a           *wire.Alert
		at          string
		wantRule    string
		wantLead    string
		wantSupport []string
		wantProfile string
		wantAuto    bool
		wantAfter   time.Duration
		wantGrid    string
		wantWhy     []string // substrings of the trace
	}{
		{"reference case: night fishing at the Lixin sluice", fishing, "2026-06-05 21:30",
			"river-fishing-night", "hm-agri-brigade", []string{"hm-river-police"}, "river-night", true, 0, "HM-ZY-QZ-03",
			[]string{"place: HM-ZY-QZ-03 (camera lixin-sluice-east); chain HM-ZY-QZ-03 → HM-ZY → HM → NT",
				"zone riverbank: tags no_fishing, river",
				"rule critical-crowd: no match: type illegal_fishing is not crowd",
				"rule river-fishing-night: match: type illegal_fishing; zone tag no_fishing; grid HM-ZY (town of HM-ZY-QZ-03); 21:30 within 20:00-06:00",
				"3 later rule(s) not tried"}},
		{"window across midnight: 02:00 the next day", fishing, "2026-06-06 02:00",
			"river-fishing-night", "hm-agri-brigade", []string{"hm-river-police"}, "river-night", true, 0, "HM-ZY-QZ-03", nil},
		{"window end is excluded: 06:00 is day", fishing, "2026-06-06 06:00",
			"fishing-day", "hm-agri-brigade", nil, "standard", false, 10 * time.Minute, "HM-ZY-QZ-03",
			[]string{"rule river-fishing-night: no match: 06:00 is outside 20:00-06:00", "dispatch manual, auto after 10m0s"}},
		{"before the window: 19:59 is day", fishing, "2026-06-05 19:59",
			"fishing-day", "hm-agri-brigade", nil, "standard", false, 10 * time.Minute, "HM-ZY-QZ-03", nil},
		{"ancestor: another grid of the same town", alert(wire.TypeIllegalFishing, 3, "qz04-dock", "dock", ""), "2026-06-05 23:00",
			"river-fishing-night", "hm-agri-brigade", []string{"hm-river-police"}, "river-night", true, 0, "HM-ZY-QZ-04",
			[]string{"grid HM-ZY (town of HM-ZY-QZ-04)"}},
		{"ancestor: a grid of another town does not match", alert(wire.TypeIllegalFishing, 2, "sd-pond", "pond", ""), "2026-06-05 23:00",
			"fishing-day", "hm-agri-brigade", nil, "standard", false, 10 * time.Minute, "HM-SD-01",
			[]string{"grid HM-SD-01 is not in or under HM-ZY"}},
		{"the camera's configured grid wins over the alert's", alert(wire.TypeIllegalFishing, 2, "lixin-sluice-east", "riverbank", "HM-SD-01"), "2026-06-05 21:30",
			"river-fishing-night", "hm-agri-brigade", []string{"hm-river-police"}, "river-night", true, 0, "HM-ZY-QZ-03",
			[]string{"not HM-SD-01 as the alert says"}},
		{"zone without the tag", alert(wire.TypeIllegalFishing, 2, "lixin-sluice-east", "north_path", ""), "2026-06-05 21:30",
			"fishing-day", "hm-agri-brigade", nil, "standard", false, 10 * time.Minute, "HM-ZY-QZ-03",
			[]string{"zone tags [restricted] have none of no_fishing"}},
		{"unknown camera placed by its position", &wire.Alert{Type: wire.TypeIllegalFishing, Severity: 2, CameraID: "new-cam", Geo: &wire.Geo{Lat: 31.8712, Lon: 121.1805}}, "2026-06-05 21:30",
			"fishing-day", "hm-agri-brigade", nil, "standard", false, 10 * time.Minute, "HM-ZY-QZ-03",
			[]string{"place: HM-ZY-QZ-03 (position 31.87120, 121.18050)", "zone: none in the alert"}},
		{"severity 1 is within max 1", alert(wire.TypeCrowd, 1, "sd-park-gate", "gate", ""), "2026-06-05 12:00",
			"critical-crowd", "hm-police", []string{"zy-patrol"}, "urgent", true, 0, "HM-SD-01",
			[]string{"severity 1 within 1–1"}},
		{"severity 2 is outside max 1: to the officer", alert(wire.TypeCrowd, 2, "sd-park-gate", "gate", ""), "2026-06-05 12:00",
			"", "", nil, "standard", false, 0, "HM-SD-01",
			[]string{"severity 2 is outside 1–1", "no rule matched: the duty officer decides (SLA profile standard)"}},
		{"severity within min 2 max 3", alert(wire.TypeIntrusion, 3, "sd-park-gate", "gate", ""), "2026-06-02 12:00",
			"intrusion", "zy-patrol", nil, "standard", true, 0, "HM-SD-01", nil},
		{"severity 4 is below the range", alert(wire.TypeIntrusion, 4, "sd-park-gate", "gate", ""), "2026-06-02 12:00",
			"", "", nil, "standard", false, 0, "HM-SD-01", []string{"severity 4 is outside 2–3"}},
		{"weekday window: Friday 23:00", alert(wire.TypeIntrusion, 4, "sd-park-gate", "gate", ""), "2026-06-05 23:00",
			"intrusion-weekend-night", "zy-patrol", []string{"hm-police"}, "urgent", true, 0, "HM-SD-01",
			[]string{"23:00 within 22:00-02:00 started Fri, one of Fri, Sat"}},
		{"weekday window: Saturday 01:00 belongs to Friday night", alert(wire.TypeIntrusion, 4, "sd-park-gate", "gate", ""), "2026-06-06 01:00",
			"intrusion-weekend-night", "zy-patrol", []string{"hm-police"}, "urgent", true, 0, "HM-SD-01", nil},
		{"weekday window: Sunday 01:30 belongs to Saturday night", alert(wire.TypeIntrusion, 4, "sd-park-gate", "gate", ""), "2026-06-07 01:30",
			"intrusion-weekend-night", "zy-patrol", []string{"hm-police"}, "urgent", true, 0, "HM-SD-01", nil},
		{"weekday window: Monday 01:00 belongs to Sunday night", alert(wire.TypeIntrusion, 3, "sd-park-gate", "gate", ""), "2026-06-08 01:00",
			"intrusion", "zy-patrol", nil, "standard", true, 0, "HM-SD-01",
			[]string{"22:00-02:00 (it started Sun, not one of Fri, Sat)"}},
		{"weekday window: Saturday 02:00 is past the end", alert(wire.TypeIntrusion, 3, "sd-park-gate", "gate", ""), "2026-06-06 02:00",
			"intrusion", "zy-patrol", nil, "standard", true, 0, "HM-SD-01", nil},
		{"no rule for the type: to the officer", alert(wire.TypeCameraTamper, 2, "lixin-sluice-east", "", ""), "2026-06-05 21:30",
			"", "", nil, "standard", false, 0, "HM-ZY-QZ-03", []string{"no rule matched"}},
		{"unknown place: rules with grids cannot match", alert(wire.TypeIllegalFishing, 2, "", "", "XX-99"), "2026-06-05 21:30",
			"fishing-day", "hm-agri-brigade", nil, "standard", false, 10 * time.Minute, "XX-99",
			[]string{"place: unknown (grid_code XX-99 is unknown; rules with grids cannot match)", "grid - is not in or under HM-ZY"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := r.Route(tt.a, local(t, tt.at))
			if d.Rule != tt.wantRule || d.Matched != (tt.wantRule != "") || d.Lead != tt.wantLead ||
				!slices.Equal(d.Support, tt.wantSupport) || d.SLAProfile != tt.wantProfile ||
				d.Auto != tt.wantAuto || d.AutoAfter != tt.wantAfter || d.Grid != tt.wantGrid {
				t.Errorf("got rule %q lead %q support %v profile %q auto %v after %s grid %q\nwant rule %q lead %q support %v profile %q auto %v after %s grid %q",
					d.Rule, d.Lead, d.Support, d.SLAProfile, d.Auto, d.AutoAfter, d.Grid,
					tt.wantRule, tt.wantLead, tt.wantSupport, tt.wantProfile, tt.wantAuto, tt.wantAfter, tt.wantGrid)
			}
			why := strings.Join(d.Why, "\n")
			for _, w := range tt.wantWhy {
				if !strings.Contains(why, w) {
					t.Errorf("trace lacks %q:\n%s", w, why)
				}
			}
			if t.Failed() || testing.Verbose() {
				t.Logf("trace:\n  %s", strings.Join(d.Why, "\n  "))
			}
		})
	}
}

func TestReferenceDecisionDetails(t *testing.T) {
	r := newRouter(t, haimenYAML)
	d := r.Route(alert(wire.TypeIllegalFishing, 2, "lixin-sluice-east", "riverbank", "HM-ZY-QZ-03"), local(t, "2026-06-05 21:30"))
	if got := d.Agencies(); !slices.Equal(got, []string{"hm-agri-brigade", "hm-river-police"}) {
		t.Errorf("one order each for %v", got)
	}
	if d.RuleIndex != 1 || !slices.Equal(d.Reroute, []string{"zy-patrol"}) {
		t.Errorf("rule index %d, reroute %v", d.RuleIndex, d.Reroute)
	}
	p, ok := r.Profile(d.SLAProfile)
	if !ok || p.SLA().OnScene != 20*time.Minute || p.SLA().Accept != 5*time.Minute {
		t.Errorf("profile %+v %v", p, ok)
	}
	lead, ok := r.Agency(d.Lead)
	if !ok || lead.Topic != wire.OrdersTopic("hm-agri-brigade") || lead.Webhook == "" || len(lead.Contacts) != 1 || lead.Level != LevelDistrict {
		t.Errorf("lead agency %+v", lead)
	}
	police, _ := r.Agency("hm-police")
	if police.Topic != "gov/haimen/police/orders" {
		t.Errorf("configured topic lost: %q", police.Topic)
	}
	// The yellow card notifies two levels above the grid: the district.
	up, ok := r.LevelsAbove(d.Grid, 2)
	if !ok || up.Code != "HM" || up.Level != LevelDistrict || up.Supervisor != "hm-command" {
		t.Errorf("yellow card goes to %+v", up)
	}
	if d := r.Route(nil, time.Now()); d.Matched || len(d.Why) == 0 {
		t.Errorf("nil alert: %+v", d)
	}
}

// TestFirstMatchWins routes the same alert with two rule orders.
func TestFirstMatchWins(t *testing.T) {
	at := local(t, "2026-06-05 21:30")
	a := alert(wire.TypeIllegalFishing, 2, "lixin-sluice-east", "riverbank", "")
	cfg := loadConfig(t, haimenYAML)
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d := r.Route(a, at); d.Rule != "river-fishing-night" {
		t.Fatalf("as written: %s", d.Rule)
	}
	cfg.Rules[1], cfg.Rules[2] = cfg.Rules[2], cfg.Rules[1]
	r, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d := r.Route(a, at)
	if d.Rule != "fishing-day" || d.RuleIndex != 1 || len(d.Support) != 0 {
		t.Errorf("swapped: rule %s index %d support %v", d.Rule, d.RuleIndex, d.Support)
	}
}

func TestUnnamedRuleAndNoRules(t *testing.T) {
	yaml := `
agencies: [{id: a, name_zh: 甲, level: town}]
sla_profiles: [{name: p, accept: 1m}]
default_sla_profile: p
rules:
  - result: {lead: a}
`
	r := newRouter(t, yaml)
	d := r.Route(alert("anything", 4, "c", "", ""), time.Now())
	if !d.Matched || d.Rule != "rules[0]" || d.SLAProfile != "p" || !d.Auto {
		t.Errorf("catch-all: %+v", d)
	}
	if !strings.Contains(strings.Join(d.Why, "\n"), "no conditions (matches every alert)") {
		t.Errorf("trace: %v", d.Why)
	}
	r = newRouter(t, "sla_profiles: [{name: p}]\n")
	if d := r.Route(alert("anything", 4, "c", "", ""), time.Now()); d.Matched || d.SLAProfile != "" || !strings.Contains(d.Why[len(d.Why)-1], "no rules configured") {
		t.Errorf("no rules: %+v", d)
	}
}

func TestEscalationLevels(t *testing.T) {
	r := newRouter(t, haimenYAML)
	tests := []struct {
		name   string
		got    func() (Place, bool)
		want   string
		wantOK bool
	}{
		{"grid → town (blue)", func() (Place, bool) { return r.LevelsAbove("HM-ZY-QZ-03", 1) }, "HM-ZY", true},
		{"NextLevel is one level", func() (Place, bool) { return r.NextLevel("HM-ZY-QZ-03") }, "HM-ZY", true},
		{"grid → district (yellow)", func() (Place, bool) { return r.LevelsAbove("HM-ZY-QZ-03", 2) }, "HM", true},
		{"grid → city (red)", func() (Place, bool) { return r.LevelsAbove("HM-ZY-QZ-03", 3) }, "NT", true},
		{"beyond the top stops at the top", func() (Place, bool) { return r.LevelsAbove("HM-ZY-QZ-03", 9) }, "NT", true},
		{"town → district", func() (Place, bool) { return r.NextLevel("HM-ZY") }, "HM", true},
		{"missing town level: grid → district", func() (Place, bool) { return r.NextLevel("HM-PORT") }, "HM", true},
		{"nothing above the city", func() (Place, bool) { return r.NextLevel("NT") }, "", false},
		{"unknown place", func() (Place, bool) { return r.NextLevel("XX") }, "", false},
		{"zero levels", func() (Place, bool) { return r.LevelsAbove("HM-ZY-QZ-03", 0) }, "", false},
		{"district agency → city", func() (Place, bool) { return r.AgencyNextLevel("hm-agri-brigade") }, "NT", true},
		{"town agency → district", func() (Place, bool) { return r.AgencyNextLevel("zy-patrol") }, "HM", true},
		{"city agency: nothing above", func() (Place, bool) { return r.AgencyNextLevel("nt-command") }, "", false},
		{"unknown agency", func() (Place, bool) { return r.AgencyNextLevel("nobody") }, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, ok := tt.got()
			if ok != tt.wantOK || p.Code != tt.want {
				t.Errorf("got %q %v, want %q %v", p.Code, ok, tt.want, tt.wantOK)
			}
		})
	}
	levels := map[string]Level{"NT": LevelCity, "HM": LevelDistrict, "HM-ZY": LevelTown, "HM-ZY-QZ-03": LevelGrid, "HM-PORT": LevelGrid}
	for code, want := range levels {
		if p, _ := r.Place(code); p.Level != want {
			t.Errorf("%s inferred as %s, want %s", code, p.Level, want)
		}
	}
	var codes []string
	for _, p := range r.Chain("HM-SD-01") {
		codes = append(codes, p.Code)
	}
	if !slices.Equal(codes, []string{"HM-SD-01", "HM-SD", "HM", "NT"}) {
		t.Errorf("chain %v", codes)
	}
}

func TestLocate(t *testing.T) {
	yaml := `
grids:
  - {code: D, name_zh: 区, level: district, polygon: [[0, 0], [10, 0], [10, 10], [0, 10]]}
  - {code: T, name_zh: 镇, parent: D, polygon: [[0, 0], [5, 0], [5, 5], [0, 5]]}
  - {code: G, name_zh: 格, parent: T, polygon: [[1, 1], [3, 1], [2, 3]]}
`
	r := newRouter(t, yaml)
	for _, tt := range []struct {
		lon, lat float64
		want     string
	}{{2, 1.5, "G"}, {4, 4, "T"}, {8, 8, "D"}, {2, 2.9, "G"}, {1.2, 2.9, "T"}} {
		p, ok := r.Locate(tt.lon, tt.lat)
		if !ok || p.Code != tt.want {
			t.Errorf("Locate(%g, %g) = %q %v, want %q", tt.lon, tt.lat, p.Code, ok, tt.want)
		}
	}
	if _, ok := r.Locate(20, 20); ok {
		t.Error("a point outside every polygon was placed")
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	_, err := New(&Config{Rules: []RuleConfig{{Result: ResultConfig{Lead: "ghost"}}}})
	var errs *config.Errors
	if !errors.Is(err, ErrInvalidConfig) || !errors.As(err, &errs) || len(errs.List) != 2 {
		t.Fatalf("got %v", err)
	}
}
