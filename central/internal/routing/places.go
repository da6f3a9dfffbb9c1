package routing

import "slices"

// Place is a grid, town, district or city.
type Place struct {
	Code       string
	NameZH     string
	NameEN     string
	Level      Level
	Parent     string // empty at the top
	Supervisor string // agency notified when a card escalates here; may be empty
	polygon    [][2]float64
}

// Agency is an agency that receives orders.
type Agency struct {
	ID           string
	NameZH       string
	NameEN       string
	Level        Level
	Jurisdiction string // place code; may be empty
	Contacts     []Contact
	Topic        string // MQTT topic for its orders
	Webhook      string // may be empty
}

// Contact is a duty contact of an agency.
type Contact struct {
	Name, Phone, Role string
}

// buildPlaces turns the validated grids into places, inferring missing
// levels from the parent: one level below it, city at the top.
func buildPlaces(grids []GridConfig) map[string]Place {
	places := make(map[string]Place, len(grids))
	for _, g := range grids {
		lvl, _ := ParseLevel(g.Level)
		places[g.Code] = Place{Code: g.Code, NameZH: g.NameZH, NameEN: g.NameEN, Level: lvl,
			Parent: g.Parent, Supervisor: g.Supervisor, polygon: slices.Clone(g.Polygon)}
	}
	var infer func(code string, depth int) Level
	infer = func(code string, depth int) Level {
		p := places[code]
		if p.Level != LevelUnknown || depth > len(places) {
			return p.Level
		}
		lvl := LevelCity
		if p.Parent != "" {
			lvl = max(infer(p.Parent, depth+1)-1, LevelGrid)
		}
		p.Level = lvl
		places[code] = p
		return lvl
	}
	for code := range places {
		infer(code, 0)
	}
	return places
}

// Place is the place with this code.
func (r *Router) Place(code string) (Place, bool) {
	p, ok := r.places[code]
	return p, ok
}

// Agency is the agency with this id.
func (r *Router) Agency(id string) (Agency, bool) {
	a, ok := r.agencies[id]
	if ok {
		a.Contacts = slices.Clone(a.Contacts)
	}
	return a, ok
}

// Chain is the place with this code followed by its ancestors, nearest
// first; nil when the code is unknown.
func (r *Router) Chain(code string) []Place {
	var out []Place
	for cur := code; cur != ""; {
		p, ok := r.places[cur]
		if !ok || len(out) > len(r.places) {
			break
		}
		out = append(out, p)
		cur = p.Parent
	}
	return out
}

// NextLevel is the management level above a place: for a grid, its town
// (or the nearest ancestor above it when there is no town). ok is false
// at the top of the chain or for an unknown code.
func (r *Router) NextLevel(code string) (Place, bool) { return r.LevelsAbove(code, 1) }

// LevelsAbove is the place n management levels above the place code: 1
// from a grid is its town, 2 its district, 3 its city. A missing level is
// skipped to the next one up, and a level above the top of the chain gives
// the top. ok is false when nothing is above the place. Card notifications
// use n = order.Card.LevelsUp().
func (r *Router) LevelsAbove(code string, n int) (Place, bool) {
	chain := r.Chain(code)
	if len(chain) == 0 {
		return Place{}, false
	}
	return above(chain[1:], chain[0].Level, n)
}

// AgencyNextLevel is the management level above an agency: the nearest
// place above the agency's level in its jurisdiction's chain (for a
// district-level agency, the city). ok is false when the agency is unknown,
// has no jurisdiction, or nothing is above it.
func (r *Router) AgencyNextLevel(id string) (Place, bool) {
	a, ok := r.agencies[id]
	if !ok || a.Jurisdiction == "" {
		return Place{}, false
	}
	return above(r.Chain(a.Jurisdiction), a.Level, 1)
}

// above is the first place in chain (nearest first) at least n levels above
// from, or the last place of the chain when it is above from.
func above(chain []Place, from Level, n int) (Place, bool) {
	if n < 1 {
		return Place{}, false
	}
	target := min(from+Level(n), LevelCity)
	for _, p := range chain {
		if p.Level > from && p.Level >= target {
			return p, true
		}
	}
	if len(chain) > 0 && chain[len(chain)-1].Level > from {
		return chain[len(chain)-1], true
	}
	return Place{}, false
}

// Locate is the smallest place whose polygon contains the point: the
// lowest level, then the deepest in its chain.
func (r *Router) Locate(lon, lat float64) (Place, bool) {
	var best Place
	bestDepth, found := -1, false
	for _, p := range r.places {
		if len(p.polygon) < 3 || !inPolygon(p.polygon, lon, lat) {
			continue
		}
		depth := len(r.Chain(p.Code))
		if !found || p.Level < best.Level || (p.Level == best.Level && (depth > bestDepth || (depth == bestDepth && p.Code < best.Code))) {
			best, bestDepth, found = p, depth, true
		}
	}
	return best, found
}

// inPolygon is the even-odd rule on [lon, lat] points.
func inPolygon(poly [][2]float64, x, y float64) bool {
	in := false
	for i, j := 0, len(poly)-1; i < len(poly); j, i = i, i+1 {
		xi, yi, xj, yj := poly[i][0], poly[i][1], poly[j][0], poly[j][1]
		if (yi > y) != (yj > y) && x < (xj-xi)*(y-yi)/(yj-yi)+xi {
			in = !in
		}
	}
	return in
}
