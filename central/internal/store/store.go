// Package store holds the records central keeps and the errors its stores
// return. The interfaces are declared by the packages that use them (intake,
// web); implementations live in subfolders (sqlite, and postgres later).
package store

import (
	"errors"
	"time"

	"github.com/xueliang/xl/internal/wire"
)

// ErrNotFound is returned when a record does not exist.
var ErrNotFound = errors.New("not found")

// AlertRecord is a stored alert.
type AlertRecord struct {
	Seq        int64      // order of arrival at central
	Alert      wire.Alert // as received, normalised
	ReceivedAt time.Time  // when central stored it
	Evidence   []EvidenceMeta
}

// EvidenceMeta describes stored evidence without its bytes.
type EvidenceMeta struct {
	AlertID    string
	Kind       wire.EvidenceKind
	SHA256     string
	Size       int
	ReceivedAt time.Time
}

// Evidence is stored evidence with its bytes.
type Evidence struct {
	EvidenceMeta
	Data []byte
}

// AlertFilter selects alerts; zero fields select everything.
type AlertFilter struct {
	CameraID string
	AgentID  string
	Type     string
	Since    time.Time // detected at or after
	Before   *Cursor   // page: only alerts listed after this one
	Limit    int
}

// Cursor is a position in the alert list, which is ordered by detection
// time, newest first, then by arrival.
type Cursor struct {
	DetectedAt time.Time
	Seq        int64
}

// AgentRecord is the last status seen from an agent.
type AgentRecord struct {
	AgentID       string
	State         wire.AgentState
	Version       string
	ConfigVersion string
	Cameras       []wire.CameraStatus
	StatusAt      time.Time // the status message's own timestamp
	LastSeen      time.Time // when central last heard from the agent
}
