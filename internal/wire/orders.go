package wire

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Schemas of the messages between central and agencies.
const (
	SchemaOrder    = "xl.order/v1"     // central → agency: an order or a change to it
	SchemaOrderAck = "xl.order_ack/v1" // agency → central: a field unit's action on an order
)

// Order events: why central sent an order message.
const (
	OrderDispatched = "dispatched"  // a new order to carry out
	OrderCancelled  = "cancelled"   // stop: the officer cancelled it
	OrderFalseAlarm = "false_alarm" // stop: the officer marked it a false alarm
	OrderClosed     = "closed"      // the officer closed the incident
	OrderRerouted   = "rerouted"    // the order came to this agency after another rejected it
	OrderCard       = "card"        // an SLA card on the agency's own order
	OrderEscalation = "escalation"  // an SLA card on an order of an agency this one supervises
)

// AckTopic is where an agency's field units send their actions on orders.
func AckTopic(agencyID string) string { return Root + "/agencies/" + agencyID + "/acks" }

// AllAcksFilter is central's subscription to every agency's actions.
const AllAcksFilter = Root + "/agencies/+/acks"

// ParseAckTopic returns the agency of an acks topic.
func ParseAckTopic(topic string) (string, error) {
	rest, ok := strings.CutPrefix(topic, Root+"/agencies/")
	if !ok {
		return "", fmt.Errorf("topic %q is not under %s/agencies/", topic, Root)
	}
	id, kind, ok := strings.Cut(rest, "/")
	if !ok || kind != "acks" || id == "" || strings.ContainsAny(id, "+#/") {
		return "", fmt.Errorf("topic %q is not an agency acks topic", topic)
	}
	return id, nil
}

// OrderMessage is what an agency receives on its orders topic (and
// webhook).
type OrderMessage struct {
	Schema     string    `json:"schema"`
	Event      string    `json:"event"`
	OrderID    string    `json:"order_id"`
	IncidentID string    `json:"incident_id"`
	AgencyID   string    `json:"agency_id"` // the agency the order belongs to
	Role       string    `json:"role"`      // lead or support
	State      string    `json:"state"`
	Version    int64     `json:"version"` // expected_version for the next action
	Type       string    `json:"type"`
	CameraID   string    `json:"camera_id"`
	Zone       string    `json:"zone,omitempty"`
	Place      Place     `json:"place"`
	Severity   int       `json:"severity"`
	DetectedAt time.Time `json:"detected_at"`
	// Deadline is when the current stage is due (the next card).
	Deadline time.Time `json:"deadline,omitzero"`
	Card     string    `json:"card,omitempty"`  // blue, yellow, red
	Stage    string    `json:"stage,omitempty"` // the overdue stage
	Reason   string    `json:"reason,omitempty"`
	Links    Links     `json:"links"`
	At       time.Time `json:"at"`
}

// Place names the grid of an incident.
type Place struct {
	Code   string `json:"code"`
	NameZH string `json:"name_zh,omitempty"`
	NameEN string `json:"name_en,omitempty"`
}

// Links point into central's API and console.
type Links struct {
	Console  string `json:"console,omitempty"`
	Order    string `json:"order,omitempty"`
	Snapshot string `json:"snapshot,omitempty"`
}

// OrderAck is a field unit's action on an order, sent on its agency's
// acks topic.
type OrderAck struct {
	Schema          string `json:"schema"`
	OrderID         string `json:"order_id"`
	CmdID           string `json:"cmd_id"` // idempotency key: a resent ack changes nothing
	Action          string `json:"action"` // accept, en_route, arrive, resolve, reject
	ExpectedVersion int64  `json:"expected_version"`
	Actor           string `json:"actor"` // the field unit
	Reason          string `json:"reason,omitempty"`
	Note            string `json:"note,omitempty"`
}

// DecodeOrderAck parses and checks an agency's ack.
func DecodeOrderAck(b []byte) (*OrderAck, error) {
	if len(b) > 16<<10 {
		return nil, reject(ReasonTooLarge, "", "%d bytes (at most 16 KiB)", len(b))
	}
	if !utf8.Valid(b) {
		return nil, reject(ReasonInvalidUTF8, "", "payload is not UTF-8")
	}
	var a OrderAck
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, reject(ReasonBadJSON, "", "%v", err)
	}
	if a.Schema != SchemaOrderAck {
		return nil, reject(ReasonWrongSchema, "schema", "%q, want %q", a.Schema, SchemaOrderAck)
	}
	for _, f := range []struct{ name, v string }{{"order_id", a.OrderID}, {"cmd_id", a.CmdID}, {"action", a.Action}, {"actor", a.Actor}} {
		if f.v == "" {
			return nil, reject(ReasonMissing, f.name, "required")
		}
	}
	return &a, nil
}
