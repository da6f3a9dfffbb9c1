// Package store holds the records central keeps and the errors its stores
// return. The interfaces are declared by the packages that use them (intake,
// dispatch, web); implementations live in subfolders (sqlite, postgres),
// and storetest is the contract both pass.
package store

import (
	"errors"
	"time"

	"github.com/xueliang/xl/central/internal/audit"
	"github.com/xueliang/xl/central/internal/order"
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

// EvidencePart is one part of evidence sent in parts (large clips).
type EvidencePart struct {
	AlertID    string
	Kind       wire.EvidenceKind
	Index      int // 0-based
	Parts      int
	Data       []byte
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

// AgentStatus is one agent status to record: the message as received and
// when central received it.
type AgentStatus struct {
	Status *wire.Status
	Seen   time.Time
}

// Incident groups alerts of one (camera, type, zone) that arrive within the
// incident window of each other.
type Incident struct {
	ID           string              `json:"id"`
	CameraID     string              `json:"camera_id"`
	Type         string              `json:"type"`
	Zone         string              `json:"zone"`
	Grid         string              `json:"grid"`
	State        order.IncidentState `json:"state"`
	Severity     int                 `json:"severity"` // the most urgent of its alerts
	FirstAlertAt time.Time           `json:"first_alert_at"`
	LastAlertAt  time.Time           `json:"last_alert_at"`
	AlertCount   int                 `json:"alert_count"`
	RecurrenceOf string              `json:"recurrence_of,omitempty"` // the closed incident this one repeats
	Rule         string              `json:"rule,omitempty"`          // the routing rule that matched
	SLAProfile   string              `json:"sla_profile,omitempty"`
	Why          []string            `json:"why,omitempty"` // the routing trace
	CreatedAt    time.Time           `json:"created_at"`
	UpdatedAt    time.Time           `json:"updated_at"`
	Version      int64               `json:"version"`
}

// Closed reports whether the incident is over (closed, a false alarm or
// cancelled): a new alert for its key opens a recurrence.
func (i Incident) Closed() bool {
	switch i.State {
	case order.IncidentClosed, order.IncidentFalseAlarm, order.IncidentCancelled:
		return true
	}
	return false
}

// OrderRecord is a stored order with its timers.
type OrderRecord struct {
	Order      order.Order `json:"order"`
	SLAProfile string      `json:"sla_profile,omitempty"`
	// AutoDispatchAt is when a pending order is sent without the officer
	// (manual dispatch with a fallback); zero: never.
	AutoDispatchAt time.Time `json:"auto_dispatch_at,omitzero"`
	// NextTimerAt is when the timers must look at the order again; zero:
	// never.
	NextTimerAt time.Time `json:"next_timer_at,omitzero"`
}

// IncidentFilter selects incidents; zero fields select everything.
type IncidentFilter struct {
	CameraID string
	State    string
	Limit    int
}

// ErrConflict is returned when a row changed since it was read (its
// version, or a timer already claimed).
var ErrConflict = errors.New("conflict: changed concurrently")

// Tx is one transaction of the dispatcher. Every method works inside it;
// nothing is visible to others before the transaction commits.
type Tx interface {
	// IncidentsOfAlerts maps those of alertIDs that joined an incident to
	// their incident.
	IncidentsOfAlerts(alertIDs []string) (map[string]string, error)
	// LatestIncident is the most recently created incident of a key.
	LatestIncident(cameraID, typ, zone string) (Incident, bool, error)
	// LastClosedIncident is the most recently created closed incident of a key.
	LastClosedIncident(cameraID, typ, zone string) (Incident, bool, error)
	GetIncident(id string) (Incident, error)
	InsertIncident(inc Incident) error
	// UpdateIncident stores inc when the stored version is prevVersion
	// (ErrConflict otherwise).
	UpdateIncident(inc Incident, prevVersion int64) error
	LinkAlert(incidentID, alertID string, detectedAt time.Time) error
	GetOrder(id string) (OrderRecord, error)
	OrdersOf(incidentID string) ([]OrderRecord, error)
	InsertOrder(rec OrderRecord) error
	// UpdateOrder stores rec when the stored version is prevVersion and,
	// when claimTimer is not zero, its timer is due at claimTimer (the
	// claim of a timer); ErrConflict otherwise.
	UpdateOrder(rec OrderRecord, prevVersion int64, claimTimer time.Time) error
	// AppendAudit seals e as the next entry of the audit chain and stores it.
	AppendAudit(e audit.Entry) (audit.Entry, error)
	// MarkDispatched records that these alerts are in their incidents.
	MarkDispatched(alertIDs []string) error
	// EnqueueEgress stores messages for agencies, to be delivered once
	// the transaction commits.
	EnqueueEgress(msgs ...Egress) error
}

// Egress delivery channels.
const (
	ChannelMQTT    = "mqtt"
	ChannelWebhook = "webhook"
)

// Egress states.
const (
	EgressPending   = "pending"
	EgressDelivered = "delivered"
	EgressDead      = "dead" // gave up: counted, listed, retried by hand
)

// Egress is one message to an agency through one channel.
type Egress struct {
	ID          int64     `json:"id"`
	Channel     string    `json:"channel"` // ChannelMQTT or ChannelWebhook
	Target      string    `json:"target"`  // topic or URL
	AgencyID    string    `json:"agency_id"`
	OrderID     string    `json:"order_id"`
	Event       string    `json:"event"`
	Payload     []byte    `json:"-"`
	CreatedAt   time.Time `json:"created_at"`
	State       string    `json:"state"`
	Attempts    int       `json:"attempts"`
	NextAt      time.Time `json:"next_at,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	DeliveredAt time.Time `json:"delivered_at,omitzero"`
}

// EgressFilter selects egress messages; zero fields select everything.
type EgressFilter struct {
	State   string
	OrderID string
	Limit   int
}

// User roles.
const (
	RoleOfficer = "officer" // duty officer: alerts, incidents, dispatch
	RoleAgency  = "agency"  // field unit of one agency: its own orders
	RoleOps     = "ops"     // operations: fleet, deliveries, agent commands
	RoleAdmin   = "admin"   // everything, and users
)

// ValidRole reports whether r is one of the roles.
func ValidRole(r string) bool {
	switch r {
	case RoleOfficer, RoleAgency, RoleOps, RoleAdmin:
		return true
	}
	return false
}

// User is a person (or system) who signs in to the console or the API.
type User struct {
	Username     string    `json:"username"`
	Role         string    `json:"role"`
	AgencyID     string    `json:"agency_id,omitempty"` // the agency of a RoleAgency user
	DisplayName  string    `json:"display_name,omitempty"`
	PasswordHash string    `json:"-"` // bcrypt; empty: no password login
	CreatedAt    time.Time `json:"created_at"`
	Disabled     bool      `json:"disabled,omitempty"`
}

// Session is a signed-in browser. Only the SHA-256 of its cookie value is
// stored, so a copy of the database signs nobody in.
type Session struct {
	IDHash    string
	Username  string
	CSRF      string // the token state-changing requests must echo
	CreatedAt time.Time
	ExpiresAt time.Time
}

// APIToken is a bearer token for systems; only its SHA-256 is stored.
type APIToken struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Username  string    `json:"username"` // acts as this user
	Hash      string    `json:"-"`
	CreatedAt time.Time `json:"created_at"`
}

// OrderPhoto is a photo a field unit attached to an order.
type OrderPhoto struct {
	ID          int64     `json:"id"`
	OrderID     string    `json:"order_id"`
	ContentType string    `json:"content_type"`
	SHA256      string    `json:"sha256"`
	Size        int       `json:"size"`
	UploadedBy  string    `json:"uploaded_by"`
	Note        string    `json:"note,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	Data        []byte    `json:"-"`
}

// Counts is how many rows of a kind are in each state (or card).
type Counts map[string]int

// Stats are the counts operations watch, computed by the store in a few
// grouped queries (for metrics on scrape).
type Stats struct {
	Incidents Counts // by incident state
	Orders    Counts // by order state
	// Cards counts the orders that still need work (pending … on_scene) by
	// their last card: none, blue, yellow, red.
	Cards  Counts
	Agents Counts // by agent state: online, offline
	Egress Counts // messages to agencies by state: pending, delivered, dead
}
