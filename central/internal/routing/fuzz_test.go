package routing

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/xueliang/xl/internal/config"
	"github.com/xueliang/xl/internal/config/configtest"
	"github.com/xueliang/xl/internal/wire"
)

// FuzzRoutingRules loads arbitrary routing files and routes an arbitrary
// alert with them. A file either loads or lists its problems; one that
// loads builds a router; routing never panics, is deterministic, gives the
// same decision with the configuration written back and loaded again, and
// a decision only names configured agencies and profiles.
func FuzzRoutingRules(f *testing.F) {
	base := time.Date(2026, 6, 5, 22, 30, 0, 0, time.UTC).Unix()
	for _, s := range []struct {
		yaml               string
		typ                string
		sev                int
		camera, zone, grid string
		lat, lon           float64
		at                 int64
	}{
		{haimenYAML, wire.TypeIllegalFishing, 2, "lixin-sluice-east", "riverbank", "HM-ZY-QZ-03", 31.87, 121.18, base - 9*3600},
		{haimenYAML, wire.TypeCrowd, 1, "sd-pond", "pond", "", 0, 0, base},
		{haimenYAML, wire.TypeIntrusion, 3, "unknown-cam", "gate", "HM-SD-01", 31.87, 121.18, base + 86400*1},
		{haimenYAML, wire.TypeIntrusion, 2, "", "", "", math.NaN(), math.Inf(1), 0},
		{"", wire.TypeIntrusion, 1, "c", "z", "g", 0, 0, base},
		{"rules:\n  - match: {types: [intrusion]}\n    result: {lead: nobody}\n", "intrusion", 1, "c", "", "", 0, 0, base},
		{"agencies: [{id: a, level: town}]\ngrids: [{code: A, parent: B}, {code: B, parent: A}]\n", "x", 1, "", "", "A", 0, 0, base},
		{"agencies: [{id: a, level: town}]\nrules: [{match: {windows: ['23:00-01:00'], weekdays: [sun]}, result: {lead: a}}]\n", "x", 1, "", "", "", 0, 0, base},
		{"agencies: [{id: a, level: town}]\nrules: [{match: {windows: ['24:00-01:00', '00:00-24:00']}, result: {lead: a}}]\n", "x", 1, "", "", "", 0, 0, base},
		{"agencies: [{id: a, level: town}]\ngrids: [{code: G, polygon: [[0, 0], [1, 0], [1, 1]]}]\nrules: [{match: {grids: [G]}, result: {lead: a, dispatch: manual, auto_dispatch_after: 1m}}]\n", "x", 4, "", "", "", 0.5, 0.25, base},
		{"agencies: [{id: a, level: town}]\nrules: [{match: {severity: {min: 3, max: 2}}, result: {lead: a}}]\n", "x", 1, "", "", "", 0, 0, base},
	} {
		f.Add([]byte(s.yaml), s.typ, s.sev, s.camera, s.zone, s.grid, s.lat, s.lon, s.at)
	}
	f.Fuzz(func(t *testing.T, data []byte, typ string, sev int, camera, zone, grid string, lat, lon float64, at int64) {
		v := configtest.Check(t, data, func() config.Validator { return &Config{} })
		if v == nil {
			return
		}
		cfg := v.(*Config)
		r, err := New(cfg)
		if err != nil {
			t.Fatalf("a configuration that validates does not build a router: %v", err)
		}
		out, err := config.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		cfg2 := &Config{}
		if err := config.LoadBytes("again.yaml", out, cfg2, configtest.NoEnv); err != nil {
			t.Fatal(err)
		}
		r2, err := New(cfg2)
		if err != nil {
			t.Fatalf("written-back configuration does not build a router: %v", err)
		}

		a := &wire.Alert{AlertID: "01JZREFERENCE0000000000000", Type: typ, Severity: sev, CameraID: camera, Zone: zone,
			GridCode: grid, Geo: &wire.Geo{Lat: lat, Lon: lon}}
		when := time.Unix(at%(1<<40), 0)
		d := r.Route(a, when)
		if again := r.Route(a, when); !reflect.DeepEqual(d, again) {
			t.Fatalf("routing is not deterministic:\n%+v\n%+v", d, again)
		}
		// nil and empty lists are the same decision: compare the printed form.
		if other := r2.Route(a, when); fmt.Sprintf("%+v", d) != fmt.Sprintf("%+v", other) {
			t.Fatalf("the written-back configuration routes differently:\n%+v\n%+v\n%s", d, other, out)
		}
		if !d.Matched {
			if d.Lead != "" || d.RuleIndex != -1 || d.Rule != "" || len(d.Agencies()) != 0 {
				t.Fatalf("no match, yet a decision: %+v", d)
			}
		} else {
			if d.RuleIndex < 0 || d.RuleIndex >= len(cfg.Rules) || d.Rule == "" {
				t.Fatalf("matched rule %q at %d of %d", d.Rule, d.RuleIndex, len(cfg.Rules))
			}
			for _, id := range slices.Concat(d.Agencies(), d.Reroute) {
				if _, ok := r.agencies[id]; !ok {
					t.Fatalf("decision names agency %q, which is not configured", id)
				}
			}
			if d.Auto && d.AutoAfter != 0 {
				t.Fatalf("auto dispatch with a delay: %+v", d)
			}
		}
		if d.SLAProfile != "" {
			if _, ok := r.Profile(d.SLAProfile); !ok {
				t.Fatalf("decision names SLA profile %q, which is not configured", d.SLAProfile)
			}
		}
		if len(d.Why) == 0 {
			t.Fatal("a decision without reasons")
		}
		_ = r.Route(nil, when)
	})
}

// FuzzParseWindow: an accepted window is a real span of the day and reads
// back from its own text.
func FuzzParseWindow(f *testing.F) {
	for _, s := range []string{"20:00-06:00", "00:00-24:00", "9:30-10:00", " 22:00 - 02:00 ", "24:00-01:00", "23:59-24:00",
		"10:00-10:00", "-1:00-02:00", "+1:00-02:00", "1:60-2:00", "01:00", "a:bc-de:fg", "0x1:00-2:00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		w, err := ParseWindow(s)
		if err != nil {
			return
		}
		if w.Start < 0 || w.Start >= minutesPerDay || w.End < 0 || w.End > minutesPerDay || w.Start == w.End {
			t.Fatalf("%q gave %+v", s, w)
		}
		w2, err := ParseWindow(w.String())
		if err != nil || w2 != w {
			t.Fatalf("%q → %+v → %q → %+v, %v", s, w, w.String(), w2, err)
		}
	})
}
