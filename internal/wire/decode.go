package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"github.com/oklog/ulid/v2"
)

// Reason classifies why a message was rejected; it is the label of the
// rejection counters, so the set is small and fixed.
type Reason string

// Rejection reasons.
const (
	ReasonTooLarge    Reason = "too_large"
	ReasonInvalidUTF8 Reason = "invalid_utf8"
	ReasonBadJSON     Reason = "bad_json"
	ReasonWrongSchema Reason = "wrong_schema"
	ReasonMissing     Reason = "missing_field"
	ReasonInvalid     Reason = "invalid_field"
	ReasonFuture      Reason = "future_timestamp"
)

// DecodeError is returned by the decoders for every rejected message.
type DecodeError struct {
	Reason Reason
	Field  string // the JSON field at fault, if any
	Msg    string
}

func (e *DecodeError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %s: %s", e.Reason, e.Field, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Reason, e.Msg)
}

// ReasonOf returns the rejection reason of err, or "" when err is not a
// DecodeError.
func ReasonOf(err error) Reason {
	var de *DecodeError
	if errors.As(err, &de) {
		return de.Reason
	}
	return ""
}

func reject(r Reason, field, format string, args ...any) error {
	return &DecodeError{Reason: r, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Decoder decodes and validates messages. The zero value uses time.Now and
// DefaultMaxFutureSkew.
type Decoder struct {
	Now           func() time.Time
	MaxFutureSkew time.Duration
}

func (d Decoder) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

func (d Decoder) skew() time.Duration {
	if d.MaxFutureSkew > 0 {
		return d.MaxFutureSkew
	}
	return DefaultMaxFutureSkew
}

// precheck applies the checks every JSON message gets before it is parsed.
func precheck(b []byte, wantSchema string, dst any) error {
	if len(b) > MaxAlertBytes {
		return reject(ReasonTooLarge, "", "message is %d bytes, the limit is %d", len(b), MaxAlertBytes)
	}
	if !utf8.Valid(b) {
		return reject(ReasonInvalidUTF8, "", "message is not valid UTF-8")
	}
	var head struct {
		Schema *string `json:"schema"`
	}
	if err := strictUnmarshal(b, &head); err != nil {
		return reject(ReasonBadJSON, "", "%v", err)
	}
	if head.Schema == nil {
		return reject(ReasonWrongSchema, "schema", "missing; want %q", wantSchema)
	}
	if *head.Schema != wantSchema {
		return reject(ReasonWrongSchema, "schema", "got %q, want %q", *head.Schema, wantSchema)
	}
	if err := strictUnmarshal(b, dst); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return reject(ReasonInvalid, te.Field, "want a JSON %s, got %s", te.Type, te.Value)
		}
		var pe *time.ParseError
		if errors.As(err, &pe) {
			return reject(ReasonInvalid, "", "timestamp %q is not RFC 3339", pe.Value)
		}
		return reject(ReasonBadJSON, "", "%v", err)
	}
	return nil
}

// strictUnmarshal decodes one JSON object and nothing after it. Unknown
// fields are ignored, as the contract says.
func strictUnmarshal(b []byte, dst any) error {
	trimmed := bytes.TrimSpace(b)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return errors.New("message is not a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if err := dec.Decode(dst); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON object")
	}
	if _, err := dec.Token(); err == nil {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// DecodeAlert decodes and validates an alert message.
func (d Decoder) DecodeAlert(b []byte) (*Alert, error) {
	var a Alert
	if err := precheck(b, SchemaAlert, &a); err != nil {
		return nil, err
	}
	if err := d.validateAlert(&a); err != nil {
		return nil, err
	}
	return &a, nil
}

func validULID(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if _, err := ulid.ParseStrict(s); err != nil {
		return fmt.Errorf("%q is not a ULID: %w", s, err)
	}
	return nil
}

// minTime is the earliest timestamp accepted; anything before it comes from
// a device whose clock was never set.
var minTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

func (d Decoder) validateAlert(a *Alert) error {
	if a.AlertID == "" {
		return reject(ReasonMissing, "alert_id", "required")
	}
	if err := validULID(a.AlertID); err != nil {
		return reject(ReasonInvalid, "alert_id", "%v", err)
	}
	if a.EventID == "" {
		return reject(ReasonMissing, "event_id", "required")
	}
	if len(a.EventID) > 64 {
		return reject(ReasonInvalid, "event_id", "longer than 64 bytes")
	}
	if a.Phase == "" {
		return reject(ReasonMissing, "phase", "required")
	}
	if !a.Phase.Valid() {
		return reject(ReasonInvalid, "phase", "%q is not start, update or end", a.Phase)
	}
	if err := checkID("agent_id", a.AgentID); err != nil {
		return err
	}
	if err := checkID("camera_id", a.CameraID); err != nil {
		return err
	}
	if a.Type == "" {
		return reject(ReasonMissing, "type", "required")
	}
	if !ValidType(a.Type) {
		return reject(ReasonInvalid, "type", "%q is not a lower-case name of [a-z0-9_]", a.Type)
	}
	if a.Severity == 0 {
		return reject(ReasonMissing, "severity", "required")
	}
	if a.Severity < 1 || a.Severity > 4 {
		return reject(ReasonInvalid, "severity", "%d is outside 1–4", a.Severity)
	}
	for _, f := range []struct {
		name string
		v    string
		max  int
	}{{"site", a.Site, 128}, {"grid_code", a.GridCode, 64}, {"zone", a.Zone, 64}, {"config_version", a.ConfigVersion, 64}} {
		if len(f.v) > f.max {
			return reject(ReasonInvalid, f.name, "longer than %d bytes", f.max)
		}
	}
	if a.Geo != nil {
		if !finite(a.Geo.Lat) || a.Geo.Lat < -90 || a.Geo.Lat > 90 || !finite(a.Geo.Lon) || a.Geo.Lon < -180 || a.Geo.Lon > 180 {
			return reject(ReasonInvalid, "geo", "lat/lon out of range")
		}
	}
	if a.DetectedAt.IsZero() {
		return reject(ReasonMissing, "detected_at", "required")
	}
	if a.StartedAt.IsZero() {
		return reject(ReasonMissing, "started_at", "required")
	}
	if a.StartedAt.After(a.DetectedAt) {
		return reject(ReasonInvalid, "started_at", "is after detected_at")
	}
	limit := d.now().Add(d.skew())
	for _, ts := range []struct {
		name string
		t    time.Time
	}{{"started_at", a.StartedAt}, {"detected_at", a.DetectedAt}, {"published_at", a.PublishedAt}} {
		if !ts.t.IsZero() && ts.t.Before(minTime) {
			return reject(ReasonInvalid, ts.name, "%s is before 2000: the sender's clock is not set", ts.t.UTC().Format(time.RFC3339))
		}
		if ts.t.After(limit) {
			return reject(ReasonFuture, ts.name, "%s is more than %s ahead of this clock", ts.t.UTC().Format(time.RFC3339), d.skew())
		}
	}
	if len(a.Objects) > MaxObjects {
		return reject(ReasonInvalid, "objects", "%d objects, the limit is %d", len(a.Objects), MaxObjects)
	}
	for i, o := range a.Objects {
		field := fmt.Sprintf("objects[%d]", i)
		if o.Class == "" || len(o.Class) > 32 {
			return reject(ReasonInvalid, field+".class", "required, at most 32 bytes")
		}
		if !finite(o.Score) || o.Score < 0 || o.Score > 1 {
			return reject(ReasonInvalid, field+".score", "must be within 0–1")
		}
		for _, v := range o.BBox {
			if !finite(v) || v < 0 || v > 1 {
				return reject(ReasonInvalid, field+".bbox", "values must be normalised to 0–1")
			}
		}
		if o.BBox[0]+o.BBox[2] > 1.0001 || o.BBox[1]+o.BBox[3] > 1.0001 {
			return reject(ReasonInvalid, field+".bbox", "box reaches outside the frame")
		}
		if !finite(o.DwellS) || o.DwellS < 0 {
			return reject(ReasonInvalid, field+".dwell_s", "must be ≥ 0")
		}
	}
	if a.Reason != "" && !ValidType(a.Reason) {
		return reject(ReasonInvalid, "reason", "%q is not a lower-case name of [a-z0-9_]", a.Reason)
	}
	if a.Evidence.CleanSnapshotID != "" {
		if err := validULID(a.Evidence.CleanSnapshotID); err != nil {
			return reject(ReasonInvalid, "evidence.clean_snapshot_id", "%v", err)
		}
	}
	for _, h := range []struct{ name, v string }{
		{"evidence.snapshot_sha256", a.Evidence.SnapshotSHA256},
		{"evidence.clip_sha256", a.Evidence.ClipSHA256},
		{"evidence.clean_snapshot_sha256", a.Evidence.CleanSnapshotSHA256},
	} {
		if h.v != "" && !shaPattern.MatchString(h.v) {
			return reject(ReasonInvalid, h.name, "not a lower-case hex sha256")
		}
	}
	if a.Model != nil {
		if a.Model.Name == "" || len(a.Model.Name) > 64 {
			return reject(ReasonInvalid, "model.name", "required, at most 64 bytes")
		}
		if a.Model.SHA256 != "" && !shaPattern.MatchString(a.Model.SHA256) {
			return reject(ReasonInvalid, "model.sha256", "not a lower-case hex sha256")
		}
	}
	return nil
}

func checkID(field, v string) error {
	if v == "" {
		return reject(ReasonMissing, field, "required")
	}
	if !ValidID(v) {
		return reject(ReasonInvalid, field, "%q must match [A-Za-z0-9][A-Za-z0-9_.-]{0,63}", v)
	}
	return nil
}

// DecodeStatus decodes and validates a status message.
func (d Decoder) DecodeStatus(b []byte) (*Status, error) {
	var s Status
	if err := precheck(b, SchemaStatus, &s); err != nil {
		return nil, err
	}
	if err := checkID("agent_id", s.AgentID); err != nil {
		return nil, err
	}
	if s.State != StateOnline && s.State != StateOffline {
		return nil, reject(ReasonInvalid, "state", "%q is not online or offline", s.State)
	}
	if s.TS.IsZero() {
		return nil, reject(ReasonMissing, "ts", "required")
	}
	if s.TS.Before(minTime) {
		return nil, reject(ReasonInvalid, "ts", "before 2000: the sender's clock is not set")
	}
	if s.TS.After(d.now().Add(d.skew())) {
		return nil, reject(ReasonFuture, "ts", "more than %s ahead of this clock", d.skew())
	}
	for i, c := range s.Cameras {
		if err := checkID(fmt.Sprintf("cameras[%d].camera_id", i), c.CameraID); err != nil {
			return nil, err
		}
		if !finite(c.FPS) || c.FPS < 0 {
			return nil, reject(ReasonInvalid, fmt.Sprintf("cameras[%d].fps", i), "must be ≥ 0")
		}
	}
	return &s, nil
}

// DecodeCmd decodes and validates a command message.
func (d Decoder) DecodeCmd(b []byte) (*Cmd, error) {
	var c Cmd
	if err := precheck(b, SchemaCmd, &c); err != nil {
		return nil, err
	}
	if c.CmdID == "" {
		return nil, reject(ReasonMissing, "cmd_id", "required")
	}
	if len(c.CmdID) > 64 {
		return nil, reject(ReasonInvalid, "cmd_id", "longer than 64 bytes")
	}
	switch c.Cmd {
	case CmdReload, CmdSnapshot, CmdVerify:
	case "":
		return nil, reject(ReasonMissing, "cmd", "required")
	default:
		return nil, reject(ReasonInvalid, "cmd", "%q is not reload, snapshot or verify", c.Cmd)
	}
	if c.CameraID != "" && !ValidID(c.CameraID) {
		return nil, reject(ReasonInvalid, "camera_id", "invalid id")
	}
	return &c, nil
}

// CheckEvidence validates the bytes of an evidence message of the given kind.
func CheckEvidence(kind EvidenceKind, b []byte) error {
	if len(b) > kind.MaxBytes() {
		return reject(ReasonTooLarge, "", "%s is %d bytes, the limit is %d", kind, len(b), kind.MaxBytes())
	}
	switch kind {
	case EvidenceSnapshot:
		if len(b) < 4 || b[0] != 0xFF || b[1] != 0xD8 || b[2] != 0xFF {
			return reject(ReasonInvalid, "", "snapshot is not a JPEG")
		}
	case EvidenceClip:
		if len(b) < 12 || string(b[4:8]) != "ftyp" {
			return reject(ReasonInvalid, "", "clip is not an MP4")
		}
	default:
		return reject(ReasonInvalid, "", "unknown evidence kind %q", kind)
	}
	return nil
}

// CheckClipPart checks one part of a clip sent in parts: its size and, for
// the first part, that it starts an MP4.
func CheckClipPart(index int, b []byte) error {
	if len(b) == 0 || len(b) > MaxClipBytes {
		return reject(ReasonTooLarge, "", "clip part is %d bytes, the limit is 1–%d", len(b), MaxClipBytes)
	}
	if index == 0 && (len(b) < 12 || string(b[4:8]) != "ftyp") {
		return reject(ReasonInvalid, "", "clip is not an MP4")
	}
	return nil
}

// SplitClip cuts a clip into parts of at most MaxClipBytes for
// ClipPartTopic; a clip that fits one message is one part.
func SplitClip(b []byte) ([][]byte, error) {
	if len(b) <= MaxClipBytes {
		return [][]byte{b}, nil
	}
	n := (len(b) + MaxClipBytes - 1) / MaxClipBytes
	if n > MaxClipParts {
		return nil, fmt.Errorf("clip of %d bytes needs %d parts, more than %d", len(b), n, MaxClipParts)
	}
	size := (len(b) + n - 1) / n
	parts := make([][]byte, 0, n)
	for len(b) > 0 {
		k := min(size, len(b))
		parts = append(parts, b[:k])
		b = b[k:]
	}
	return parts, nil
}

// DecodeCmdReply decodes and validates an agent's reply to a command.
func (d Decoder) DecodeCmdReply(b []byte) (*CmdReply, error) {
	var r CmdReply
	if err := precheck(b, SchemaReply, &r); err != nil {
		return nil, err
	}
	if r.CmdID == "" || len(r.CmdID) > 64 {
		return nil, reject(ReasonMissing, "cmd_id", "required, at most 64 bytes")
	}
	if err := checkID("agent_id", r.AgentID); err != nil {
		return nil, err
	}
	if len(r.Error) > 4096 {
		return nil, reject(ReasonInvalid, "error", "longer than 4096 bytes")
	}
	return &r, nil
}
