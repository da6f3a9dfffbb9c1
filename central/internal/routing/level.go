package routing

import "strings"

// Level is a management level. Levels are ordered: grid < town < district
// < city.
type Level int

// Management levels.
const (
	LevelUnknown Level = iota
	LevelGrid
	LevelTown
	LevelDistrict
	LevelCity
)

func (l Level) String() string {
	switch l {
	case LevelGrid:
		return "grid"
	case LevelTown:
		return "town"
	case LevelDistrict:
		return "district"
	case LevelCity:
		return "city"
	}
	return "unknown"
}

// ParseLevel reads grid, town, district or city.
func ParseLevel(s string) (Level, bool) {
	for l := LevelGrid; l <= LevelCity; l++ {
		if strings.EqualFold(s, l.String()) {
			return l, true
		}
	}
	return LevelUnknown, false
}

// MarshalText writes the level's name.
func (l Level) MarshalText() ([]byte, error) { return []byte(l.String()), nil }
