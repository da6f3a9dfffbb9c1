package wire

import (
	"encoding/json"
	"time"
)

// Marshal encodes v (an *Alert, *Status or *Cmd) with every timestamp in UTC
// and the schema field filled in, as the contract requires.
func Marshal(v any) ([]byte, error) {
	switch m := v.(type) {
	case *Alert:
		c := *m
		c.Schema = SchemaAlert
		c.StartedAt, c.DetectedAt, c.PublishedAt = utc(c.StartedAt), utc(c.DetectedAt), utc(c.PublishedAt)
		return json.Marshal(&c)
	case *Status:
		c := *m
		c.Schema = SchemaStatus
		c.TS = utc(c.TS)
		return json.Marshal(&c)
	case *Cmd:
		c := *m
		c.Schema = SchemaCmd
		c.TS = utc(c.TS)
		return json.Marshal(&c)
	case *CmdReply:
		c := *m
		c.Schema = SchemaReply
		c.TS = utc(c.TS)
		return json.Marshal(&c)
	default:
		return json.Marshal(v)
	}
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}

// NewULID returns a new ULID string for alert and event IDs.
func NewULID(t time.Time) string { return ulidAt(t) }
