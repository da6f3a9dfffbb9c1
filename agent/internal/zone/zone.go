// Package zone is a camera's named areas: polygons in normalised
// coordinates (0–1 from the top-left of the frame) with tags such as
// no_fishing, water or restricted. An include zone is where scenarios look;
// an exclude zone is masked out everywhere (a timestamp overlay, trees in
// the wind, glare on water): its motion is ignored and objects standing in
// it count in no zone. Pure Go.
package zone

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// Zone is one named polygon.
type Zone struct {
	Name    string
	Tags    []string
	Polygon [][2]float64
	Exclude bool
}

// ValidatePolygon checks a normalised polygon: at least 3 points, each
// within 0–1, and a non-zero area.
func ValidatePolygon(p [][2]float64) error {
	if len(p) < 3 {
		return fmt.Errorf("polygon needs at least 3 points, has %d", len(p))
	}
	for i, pt := range p {
		if math.IsNaN(pt[0]) || math.IsNaN(pt[1]) || pt[0] < 0 || pt[0] > 1 || pt[1] < 0 || pt[1] > 1 {
			return fmt.Errorf("point %d (%g, %g) is outside 0–1", i, pt[0], pt[1])
		}
	}
	if Area(p) < 1e-6 {
		return errors.New("polygon has no area (its points are on one line)")
	}
	return nil
}

// Area is the polygon's area as a share of the frame (shoelace formula).
func Area(p [][2]float64) float64 {
	s := 0.0
	for i := range p {
		j := (i + 1) % len(p)
		s += p[i][0]*p[j][1] - p[j][0]*p[i][1]
	}
	return math.Abs(s) / 2
}

// Contains reports whether the normalised point is inside the polygon
// (even-odd rule; a point exactly on an edge may fall either way).
func Contains(poly [][2]float64, pt [2]float64) bool {
	in := false
	for i, j := 0, len(poly)-1; i < len(poly); j, i = i, i+1 {
		a, b := poly[i], poly[j]
		if (a[1] > pt[1]) != (b[1] > pt[1]) &&
			pt[0] < (b[0]-a[0])*(pt[1]-a[1])/(b[1]-a[1])+a[0] {
			in = !in
		}
	}
	return in
}

// Anchor is where an object stands: the bottom centre of its box (x, y, w,
// h normalised), the feet of a person, the waterline of a boat.
func Anchor(box [4]float64) [2]float64 {
	return [2]float64{box[0] + box[2]/2, box[1] + box[3]}
}

// Validate checks a camera's zones: names unique and present, polygons
// valid. Errors name the zone.
func Validate(zones []Zone) error {
	var errs []error
	seen := map[string]bool{}
	for i, z := range zones {
		switch {
		case z.Name == "":
			errs = append(errs, fmt.Errorf("zones[%d]: no name", i))
		case seen[z.Name]:
			errs = append(errs, fmt.Errorf("zones[%d]: name %q is used by another zone", i, z.Name))
		}
		seen[z.Name] = true
		if err := ValidatePolygon(z.Polygon); err != nil {
			errs = append(errs, fmt.Errorf("zone %s: %w", z.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Set is a camera's zones with lookups.
type Set struct {
	zones []Zone
}

// NewSet validates the zones and returns them as a Set.
func NewSet(zones []Zone) (*Set, error) {
	if err := Validate(zones); err != nil {
		return nil, err
	}
	return &Set{zones: slices.Clone(zones)}, nil
}

// All returns every zone in configuration order.
func (s *Set) All() []Zone { return s.zones }

// Include returns the include zones in configuration order.
func (s *Set) Include() []Zone {
	var out []Zone
	for _, z := range s.zones {
		if !z.Exclude {
			out = append(out, z)
		}
	}
	return out
}

// Excluded reports whether the point lies in any exclude zone.
func (s *Set) Excluded(pt [2]float64) bool {
	for _, z := range s.zones {
		if z.Exclude && Contains(z.Polygon, pt) {
			return true
		}
	}
	return false
}

// Get returns the zone named name.
func (s *Set) Get(name string) (Zone, bool) {
	for _, z := range s.zones {
		if z.Name == name {
			return z, true
		}
	}
	return Zone{}, false
}

// Select returns the names of the include zones that are named in names or
// carry any of tags, in configuration order and each once. A name that is
// unknown or an exclude zone is an error; tags that match nothing are not
// (a scenario may name a tag before any zone carries it), but a selection
// that ends up empty is.
func (s *Set) Select(names, tags []string) ([]string, error) {
	for _, n := range names {
		z, ok := s.Get(n)
		if !ok {
			return nil, fmt.Errorf("no zone named %q", n)
		}
		if z.Exclude {
			return nil, fmt.Errorf("zone %q is an exclude zone", n)
		}
	}
	var out []string
	for _, z := range s.zones {
		if z.Exclude {
			continue
		}
		if slices.Contains(names, z.Name) || anyTag(z.Tags, tags) {
			out = append(out, z.Name)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no include zone is named %v or tagged %v", names, tags)
	}
	return out, nil
}

func anyTag(have, want []string) bool {
	for _, t := range want {
		if slices.Contains(have, t) {
			return true
		}
	}
	return false
}
