// Package wire is the MQTT wire contract v1 between xl-agent and xl-central:
// message types, topic builders and strict decoders. It is the only place
// where the contract is spelt out in code; both binaries import it.
package wire

import (
	"regexp"
	"time"
)

// Schema identifiers carried in every JSON message.
const (
	SchemaAlert  = "xl.alert/v1"
	SchemaStatus = "xl.status/v1"
	SchemaCmd    = "xl.cmd/v1"
	SchemaReply  = "xl.cmd_reply/v1"
)

// Size limits of the contract.
const (
	// MaxAlertBytes is the largest alert (and status or command) message.
	MaxAlertBytes = 64 << 10
	// MaxSnapshotBytes is the largest JPEG snapshot accepted as evidence.
	MaxSnapshotBytes = 4 << 20
	// MaxClipBytes is the largest MP4 clip accepted in one message. A
	// larger clip travels in parts (ClipPartTopic), each at most this.
	MaxClipBytes = 12 << 20
	// MaxClipParts is the most parts one clip is split into, so a whole
	// clip is at most MaxClipParts × MaxClipBytes.
	MaxClipParts = 16
	// MaxClipTotalBytes is the largest clip, sent in parts.
	MaxClipTotalBytes = MaxClipParts * MaxClipBytes
	// MaxObjects is the largest number of objects in one alert.
	MaxObjects = 256
)

// DefaultMaxFutureSkew is how far in the future a timestamp may lie before the
// message is rejected (an agent with a broken clock).
const DefaultMaxFutureSkew = 5 * time.Minute

// Phase is the step of an event's lifecycle an alert reports.
type Phase string

// Event lifecycle phases.
const (
	PhaseStart  Phase = "start"
	PhaseUpdate Phase = "update"
	PhaseEnd    Phase = "end"
)

// Valid reports whether p is one of the defined phases.
func (p Phase) Valid() bool { return p == PhaseStart || p == PhaseUpdate || p == PhaseEnd }

// Alert types known to this release. The decoder accepts any well-formed type
// name so that a newer agent can add scenarios; these are the ones both sides
// implement.
const (
	TypeIllegalFishing        = "illegal_fishing"
	TypeIntrusion             = "intrusion"
	TypeLoitering             = "loitering"
	TypeBoatInRestrictedWater = "boat_in_restricted_water"
	TypeCrowd                 = "crowd"
	TypeCameraTamper          = "camera_tamper"
	TypeStreamLost            = "stream_lost"
	TypeStreamRestored        = "stream_restored"
)

// Geo is a WGS-84 position.
type Geo struct {
	Lat float64 `json:"lat"`
	Lon float64 `json:"lon"`
}

// Object is one detected object in an alert.
type Object struct {
	Class   string     `json:"class"`
	Score   float64    `json:"score"`
	BBox    [4]float64 `json:"bbox"` // x, y, w, h normalised to 0–1
	TrackID int64      `json:"track_id"`
	DwellS  float64    `json:"dwell_s"`
}

// Evidence names the evidence of an alert by content hash.
//
// The snapshot (evidence/{alert_id}/snapshot) has the zone and the objects
// drawn on it. The clean snapshot, optional, is the same frame as the
// camera saw it; it travels as a second ordinary snapshot under its own
// ULID (evidence/{clean_snapshot_id}/snapshot), so that a central that does
// not know these two fields stores it as evidence of an unknown alert
// instead of rejecting a new evidence kind.
type Evidence struct {
	SnapshotSHA256      string `json:"snapshot_sha256,omitempty"`
	ClipSHA256          string `json:"clip_sha256,omitempty"`
	CleanSnapshotID     string `json:"clean_snapshot_id,omitempty"`
	CleanSnapshotSHA256 string `json:"clean_snapshot_sha256,omitempty"`
}

// Model identifies the detector that produced an alert.
type Model struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	SHA256  string `json:"sha256,omitempty"`
}

// Alert is published by an agent on AlertsTopic.
type Alert struct {
	Schema        string    `json:"schema"`
	AlertID       string    `json:"alert_id"`
	EventID       string    `json:"event_id"`
	Phase         Phase     `json:"phase"`
	AgentID       string    `json:"agent_id"`
	CameraID      string    `json:"camera_id"`
	Site          string    `json:"site,omitempty"`
	GridCode      string    `json:"grid_code,omitempty"`
	Geo           *Geo      `json:"geo,omitempty"`
	Type          string    `json:"type"`
	Severity      int       `json:"severity"`
	Zone          string    `json:"zone,omitempty"`
	Reason        string    `json:"reason,omitempty"` // optional detail of the type, e.g. covered, blurred, moved for camera_tamper
	StartedAt     time.Time `json:"started_at"`
	DetectedAt    time.Time `json:"detected_at"`
	PublishedAt   time.Time `json:"published_at,omitzero"`
	Objects       []Object  `json:"objects,omitempty"`
	Evidence      Evidence  `json:"evidence,omitzero"`
	Model         *Model    `json:"model,omitempty"`
	ConfigVersion string    `json:"config_version,omitempty"`
}

// AgentState is the state in a status message.
type AgentState string

// Agent states.
const (
	StateOnline  AgentState = "online"
	StateOffline AgentState = "offline"
)

// CameraStatus is one camera's line in a status message.
type CameraStatus struct {
	CameraID string  `json:"camera_id"`
	State    string  `json:"state"`
	FPS      float64 `json:"fps"`
}

// Status is published retained on StatusTopic, and is the agent's last will.
type Status struct {
	Schema        string         `json:"schema"`
	AgentID       string         `json:"agent_id"`
	State         AgentState     `json:"state"`
	Version       string         `json:"version,omitempty"`
	ConfigVersion string         `json:"config_version,omitempty"`
	Cameras       []CameraStatus `json:"cameras,omitempty"`
	TS            time.Time      `json:"ts"`
}

// CmdName is a command central sends to an agent.
type CmdName string

// Commands.
const (
	CmdReload   CmdName = "reload"
	CmdSnapshot CmdName = "snapshot"
	CmdVerify   CmdName = "verify"
)

// Cmd is published by central on CmdTopic.
type Cmd struct {
	Schema   string    `json:"schema"`
	CmdID    string    `json:"cmd_id"`
	Cmd      CmdName   `json:"cmd"`
	CameraID string    `json:"camera_id,omitempty"`
	TS       time.Time `json:"ts,omitzero"`
}

// CmdReply is an agent's answer to a Cmd, published on ReplyTopic.
type CmdReply struct {
	Schema  string         `json:"schema"`
	CmdID   string         `json:"cmd_id"`
	AgentID string         `json:"agent_id"`
	Cmd     CmdName        `json:"cmd"`
	OK      bool           `json:"ok"`
	Error   string         `json:"error,omitempty"`
	Result  map[string]any `json:"result,omitempty"`
	TS      time.Time      `json:"ts"`
}

// EvidenceKind is the last element of an evidence topic.
type EvidenceKind string

// Evidence kinds.
const (
	EvidenceSnapshot EvidenceKind = "snapshot"
	EvidenceClip     EvidenceKind = "clip"
)

// Valid reports whether k is a defined evidence kind.
func (k EvidenceKind) Valid() bool { return k == EvidenceSnapshot || k == EvidenceClip }

// MaxBytes is the size limit of one evidence message of this kind.
func (k EvidenceKind) MaxBytes() int {
	if k == EvidenceClip {
		return MaxClipBytes
	}
	return MaxSnapshotBytes
}

var (
	idPattern   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	typePattern = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
	shaPattern  = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// ValidID reports whether s may be used as an agent, camera or agency ID: it
// must be safe as one MQTT topic level.
func ValidID(s string) bool { return idPattern.MatchString(s) }

// ValidType reports whether s is a well-formed alert type name.
func ValidType(s string) bool { return typePattern.MatchString(s) }
