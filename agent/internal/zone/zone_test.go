package zone

import (
	"math"
	"slices"
	"strings"
	"testing"
)

var square = [][2]float64{{0.2, 0.2}, {0.6, 0.2}, {0.6, 0.6}, {0.2, 0.6}}

func TestContains(t *testing.T) {
	concave := [][2]float64{{0, 0}, {1, 0}, {1, 1}, {0.5, 0.3}, {0, 1}} // a notch from below
	for _, tc := range []struct {
		poly [][2]float64
		pt   [2]float64
		want bool
	}{
		{square, [2]float64{0.4, 0.4}, true},
		{square, [2]float64{0.1, 0.4}, false},
		{square, [2]float64{0.4, 0.7}, false},
		{concave, [2]float64{0.5, 0.1}, true},
		{concave, [2]float64{0.5, 0.6}, false}, // inside the notch
		{concave, [2]float64{0.9, 0.8}, true},
	} {
		if got := Contains(tc.poly, tc.pt); got != tc.want {
			t.Errorf("Contains(%v, %v) = %v, want %v", tc.poly, tc.pt, got, tc.want)
		}
	}
}

func TestAnchorIsTheFeet(t *testing.T) {
	if got := Anchor([4]float64{0.1, 0.2, 0.2, 0.4}); math.Abs(got[0]-0.2) > 1e-12 || math.Abs(got[1]-0.6) > 1e-12 {
		t.Fatalf("anchor %v", got)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		zones []Zone
		want  string
	}{
		{"fine", []Zone{{Name: "a", Polygon: square}, {Name: "b", Polygon: square, Exclude: true}}, ""},
		{"two points", []Zone{{Name: "a", Polygon: square[:2]}}, "at least 3 points"},
		{"outside", []Zone{{Name: "a", Polygon: [][2]float64{{0, 0}, {1.2, 0}, {1, 1}}}}, "outside 0–1"},
		{"a line", []Zone{{Name: "a", Polygon: [][2]float64{{0, 0}, {0.5, 0.5}, {1, 1}}}}, "no area"},
		{"duplicate", []Zone{{Name: "a", Polygon: square}, {Name: "a", Polygon: square}}, "used by another zone"},
		{"unnamed", []Zone{{Polygon: square}}, "no name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.zones)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestSelect(t *testing.T) {
	s, err := NewSet([]Zone{
		{Name: "bank", Tags: []string{"no_fishing", "water"}, Polygon: square},
		{Name: "pier", Tags: []string{"restricted"}, Polygon: square},
		{Name: "glare", Tags: []string{"no_fishing"}, Polygon: square, Exclude: true},
		{Name: "road", Polygon: square},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		names, tags []string
		want        []string
		err         string
	}{
		{names: []string{"road"}, want: []string{"road"}},
		{tags: []string{"no_fishing"}, want: []string{"bank"}}, // the exclude zone is not selected
		{names: []string{"road"}, tags: []string{"restricted", "water"}, want: []string{"bank", "pier", "road"}},
		{names: []string{"road", "road"}, want: []string{"road"}},
		{names: []string{"lake"}, err: `no zone named "lake"`},
		{names: []string{"glare"}, err: "exclude zone"},
		{tags: []string{"beach"}, err: "no include zone"},
	} {
		got, err := s.Select(tc.names, tc.tags)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Select(%v, %v): error %v, want %q", tc.names, tc.tags, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("Select(%v, %v) = %v, %v; want %v", tc.names, tc.tags, got, err, tc.want)
		}
	}
	if !s.Excluded([2]float64{0.4, 0.4}) || s.Excluded([2]float64{0.9, 0.9}) {
		t.Error("Excluded")
	}
	if n := len(s.Include()); n != 3 {
		t.Errorf("%d include zones", n)
	}
}
