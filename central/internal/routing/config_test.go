package routing

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/xueliang/xl/internal/config"
)

// TestValidateReportsEveryMistake loads a file with many mistakes and
// expects each one, with its key (and line, from the loader), in one error.
func TestValidateReportsEveryMistake(t *testing.T) {
	yaml := `agencies:
  - {id: brigade, name_zh: 大队, level: district, jurisdiction: HM}
  - {id: brigade, name_zh: 重复, level: district}
  - {id: "bad/id", name_zh: 坏, level: province, jurisdiction: XX, webhook: "ftp://example.org/x", topic: "xl/v1/+/orders"}
  - {id: police, level: district, contacts: [{role: duty}]}
grids:
  - {code: NT, name_zh: 南通市, level: city}
  - {code: HM, name_zh: 海门区, parent: NT, level: district, supervisor: ghost}
  - {code: A, name_zh: 甲, parent: B}
  - {code: B, name_zh: 乙, parent: A}
  - {code: C, name_zh: 丙, parent: A}
  - {code: SELF, name_zh: 自, parent: SELF}
  - {code: TOWN, name_zh: 镇, parent: MISSING}
  - {code: HM, name_zh: 重复}
  - {code: UP, name_zh: 反, parent: HM-G, level: town}
  - {code: HM-G, name_zh: 格, parent: HM, level: grid, polygon: [[121.1, 31.8], [121.2, 91.0]]}
cameras:
  - {id: cam-1, grid: NOWHERE, zones: [{name: z, tags: [x]}, {name: z, tags: [""]}]}
  - {id: cam-1, grid: HM}
  - {grid: HM}
sla_profiles:
  - {name: fast, accept: -1m, en_route: 30m, on_scene: 20m}
  - {name: fast}
default_sla_profile: slow
rules:
  - name: r1
    match:
      types: [Illegal Fishing]
      grids: [HM, ATLANTIS]
      severity: {min: 3, max: 2}
      windows: ["25:00-06:00", "20:00", "08:00-08:00"]
      weekdays: [fri, funday]
    result: {lead: ghost, support: [brigade, police, police], sla_profile: turbo, dispatch: sometimes}
  - name: r1
    match: {severity: {max: 5}}
    result: {support: [nobody], dispatch: auto, auto_dispatch_after: 5m, reroute: [ghost]}
  - match: {}
    result: {lead: brigade, lead_agency: x}
`
	cfg := &Config{}
	err := config.LoadBytes("routing.yaml", []byte(yaml), cfg, noEnv)
	var errs *config.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("want *config.Errors, got %v", err)
	}
	got := errs.Error()
	want := []string{
		// agencies
		`agencies[1].id: duplicate id "brigade" (also agencies[0])`,
		`agencies[2].id: "bad/id" must match`,
		`agencies[2].level: "province" is not one of grid, town, district, city`,
		`agencies[2].jurisdiction: unknown grid "XX"`,
		`agencies[2].topic: "xl/v1/+/orders": a topic to publish to has no wildcards`,
		`agencies[2].webhook: scheme "ftp" is not one of [http https]`,
		`agencies[3].name_zh: required`,
		`agencies[3].contacts[0]: needs a name or a phone`,
		// grids
		`grids[1].supervisor: unknown agency "ghost"`,
		`grids[2].parent: parent chain loops: A → B → A`,
		`grids[5].parent: "SELF" is its own parent`,
		`grids[6].parent: unknown grid "MISSING"`,
		`grids[7].code: duplicate code "HM" (also grids[1])`,
		`grids[8].parent: "HM-G" is a grid, below this town`,
		`grids[9].polygon: polygon needs at least 3 points, has 2`,
		`grids[9].polygon[1]: [121.2, 91] is not [lon, lat]`,
		// cameras
		`cameras[0].grid: unknown grid "NOWHERE"`,
		`cameras[0].zones[1].name: duplicate zone "z"`,
		`cameras[0].zones[1].tags[0]: empty tag`,
		`cameras[1].id: duplicate id "cam-1" (also cameras[0])`,
		`cameras[2].id: required`,
		// SLA profiles
		`sla_profiles[0].accept: must not be negative`,
		`sla_profiles[0].en_route: 30m0s is after on_scene (20m0s)`,
		`sla_profiles[1].name: duplicate name "fast" (also sla_profiles[0])`,
		`default_sla_profile: unknown SLA profile "slow"`,
		// rules
		`rules[0].match.types[0]: "Illegal Fishing" is not an alert type`,
		`rules[0].match.grids[1]: unknown grid "ATLANTIS"`,
		`rules[0].match.severity: min 3 is above max 2`,
		`rules[0].match.windows[0]: "25:00-06:00": start: 25:00 is not a time of day`,
		`rules[0].match.windows[1]: "20:00": want "HH:MM-HH:MM"`,
		`rules[0].match.windows[2]: "08:00-08:00": start and end are the same time`,
		`rules[0].match.weekdays[1]: "funday" is not a weekday`,
		`rules[0].result.lead: unknown agency "ghost"`,
		`rules[0].result.support[2]: "police" is listed twice`,
		`rules[0].result.sla_profile: unknown SLA profile "turbo"`,
		`rules[0].result.dispatch: "sometimes" is not one of [auto manual]`,
		`rules[1].name: duplicate rule name "r1" (also rules[0])`,
		`rules[1].match.severity.max: must be within 1 (most urgent) – 4`,
		`rules[1].result.lead: required`,
		`rules[1].result.support[0]: unknown agency "nobody"`,
		`rules[1].result.reroute[0]: unknown agency "ghost"`,
		`rules[1].result.auto_dispatch_after: only applies to dispatch: manual`,
		`rules[2].result.lead_agency: unknown key`,
	}
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("missing %q", w)
		}
	}
	// Grids below a loop are not reported again, nor is the loop twice.
	for _, unwanted := range []string{"grids[3].parent", "grids[4].parent", "rules[0].result.support[0]"} {
		if strings.Contains(got, unwanted+":") {
			t.Errorf("unexpected %q", unwanted)
		}
	}
	// The loader adds the line of each key.
	for _, w := range []string{"line 3: agencies[1].id", "line 38: rules[2].result.lead_agency: unknown key"} {
		if !strings.Contains(got, w) {
			t.Errorf("missing %q", w)
		}
	}
	if t.Failed() {
		t.Log(got)
	}
	if len(errs.List) < len(want) {
		t.Errorf("%d errors, want at least %d", len(errs.List), len(want))
	}
}

func TestValidConfigAppliesDefaults(t *testing.T) {
	cfg := loadConfig(t, haimenYAML)
	if got := cfg.Agencies[0].Topic; got != "xl/v1/agencies/nt-command/orders" {
		t.Errorf("default topic %q", got)
	}
	if got := cfg.Rules[0].Result.Dispatch; got != DispatchAuto {
		t.Errorf("default dispatch %q", got)
	}
}

func TestParseWindow(t *testing.T) {
	tests := []struct {
		in      string
		want    Window
		wraps   bool
		wantErr string
	}{
		{"20:00-06:00", Window{20 * 60, 6 * 60}, true, ""},
		{"08:30-17:30", Window{8*60 + 30, 17*60 + 30}, false, ""},
		{"22:00-24:00", Window{22 * 60, 24 * 60}, false, ""},
		{"00:00-06:00", Window{0, 6 * 60}, false, ""},
		{" 7:05 - 9:10 ", Window{7*60 + 5, 9*60 + 10}, false, ""},
		{"23:00-00:00", Window{23 * 60, 0}, true, ""},
		{"00:00-24:00", Window{}, false, "same time"},
		{"24:00-06:00", Window{}, false, "not a time of day"},
		{"20:60-06:00", Window{}, false, "HH:MM-HH:MM"},
		{"20-06", Window{}, false, "HH:MM-HH:MM"},
		{"", Window{}, false, "HH:MM-HH:MM"},
	}
	for _, tt := range tests {
		w, err := ParseWindow(tt.in)
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q: error %v, want %q", tt.in, err, tt.wantErr)
			}
		case err != nil:
			t.Errorf("%q: %v", tt.in, err)
		case w != tt.want || w.Wraps() != tt.wraps:
			t.Errorf("%q: %+v wraps %v, want %+v wraps %v", tt.in, w, w.Wraps(), tt.want, tt.wraps)
		}
	}
}

func TestWindowContains(t *testing.T) {
	cst := time.FixedZone("CST", 8*3600)
	at := func(day, h, m int) time.Time { return time.Date(2026, 6, day, h, m, 0, 0, cst) }
	night := Window{20 * 60, 6 * 60}
	day := Window{8 * 60, 18 * 60}
	tests := []struct {
		w           Window
		t           time.Time
		want        bool
		wantStarted int // day of month the window started
	}{
		{night, at(5, 20, 0), true, 5},
		{night, at(5, 23, 59), true, 5},
		{night, at(6, 0, 0), true, 5},
		{night, at(6, 5, 59), true, 5},
		{night, at(6, 6, 0), false, 0},
		{night, at(6, 19, 59), false, 0},
		{night, at(1, 3, 0), true, 31}, // back into May
		{day, at(5, 8, 0), true, 5},
		{day, at(5, 17, 59), true, 5},
		{day, at(5, 18, 0), false, 0},
		{day, at(5, 7, 59), false, 0},
	}
	for _, tt := range tests {
		started, ok := tt.w.Contains(tt.t)
		if ok != tt.want || (ok && started.Day() != tt.wantStarted) {
			t.Errorf("%s contains %s: %v (started %d), want %v (started %d)", tt.w, tt.t.Format("01-02 15:04"), ok, started.Day(), tt.want, tt.wantStarted)
		}
	}
}

func TestLevels(t *testing.T) {
	for _, s := range []string{"grid", "town", "district", "city", "City"} {
		if _, ok := ParseLevel(s); !ok {
			t.Errorf("%s not parsed", s)
		}
	}
	if _, ok := ParseLevel("province"); ok {
		t.Error("province parsed")
	}
	if !(LevelGrid < LevelTown && LevelTown < LevelDistrict && LevelDistrict < LevelCity) {
		t.Error("levels out of order")
	}
	if b, _ := LevelDistrict.MarshalText(); string(b) != "district" {
		t.Errorf("%s", b)
	}
}
