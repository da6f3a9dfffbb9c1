package wire

import (
	"fmt"
	"strconv"
	"strings"
)

// Root is the topic root of contract v1.
const Root = "xl/v1"

// Topic kinds below xl/v1/agents/{agent_id}/.
const (
	KindStatus   = "status"
	KindAlerts   = "alerts"
	KindEvidence = "evidence"
	KindCmd      = "cmd"
	KindReplies  = "replies"
)

// StatusTopic is where an agent publishes its retained status and last will.
func StatusTopic(agentID string) string { return Root + "/agents/" + agentID + "/" + KindStatus }

// AlertsTopic is where an agent publishes alerts.
func AlertsTopic(agentID string) string { return Root + "/agents/" + agentID + "/" + KindAlerts }

// EvidenceTopic is where an agent publishes the evidence bytes of an alert.
func EvidenceTopic(agentID, alertID string, kind EvidenceKind) string {
	return Root + "/agents/" + agentID + "/" + KindEvidence + "/" + alertID + "/" + string(kind)
}

// ClipPartTopic is where an agent publishes part index (0-based) of parts
// of a clip too large for one message: the parts, joined in order, are the
// MP4.
func ClipPartTopic(agentID, alertID string, index, parts int) string {
	return EvidenceTopic(agentID, alertID, EvidenceClip) + "/" + strconv.Itoa(index) + "/" + strconv.Itoa(parts)
}

// CmdTopic is where central sends commands to one agent.
func CmdTopic(agentID string) string { return Root + "/agents/" + agentID + "/" + KindCmd }

// ReplyTopic is where an agent answers central's commands.
func ReplyTopic(agentID string) string { return Root + "/agents/" + agentID + "/" + KindReplies }

// OrdersTopic is where central publishes disposal orders for an agency.
func OrdersTopic(agencyID string) string { return Root + "/agencies/" + agencyID + "/orders" }

// Subscription filters used by central.
const (
	AllStatusFilter   = Root + "/agents/+/" + KindStatus
	AllAlertsFilter   = Root + "/agents/+/" + KindAlerts
	AllEvidenceFilter = Root + "/agents/+/" + KindEvidence + "/#"
	AllRepliesFilter  = Root + "/agents/+/" + KindReplies
)

// AgentTopic is a parsed topic under xl/v1/agents/.
type AgentTopic struct {
	AgentID string
	Kind    string       // KindStatus, KindAlerts, KindEvidence, KindCmd or KindReplies
	AlertID string       // evidence topics only
	EvKind  EvidenceKind // evidence topics only
	// Part and Parts locate a part of a clip sent in parts (Parts ≥ 2);
	// Parts is 0 for evidence in one message.
	Part, Parts int
}

// ParseAgentTopic parses a topic under xl/v1/agents/ and checks every level.
func ParseAgentTopic(topic string) (AgentTopic, error) {
	rest, ok := strings.CutPrefix(topic, Root+"/agents/")
	if !ok {
		return AgentTopic{}, fmt.Errorf("topic %q is not under %s/agents/", topic, Root)
	}
	parts := strings.Split(rest, "/")
	if !ValidID(parts[0]) {
		return AgentTopic{}, fmt.Errorf("topic %q: invalid agent id", topic)
	}
	t := AgentTopic{AgentID: parts[0]}
	switch {
	case len(parts) == 2 && (parts[1] == KindStatus || parts[1] == KindAlerts || parts[1] == KindCmd || parts[1] == KindReplies):
		t.Kind = parts[1]
	case (len(parts) == 4 || len(parts) == 6) && parts[1] == KindEvidence:
		t.Kind = KindEvidence
		if err := validULID(parts[2]); err != nil {
			return AgentTopic{}, fmt.Errorf("topic %q: alert id: %w", topic, err)
		}
		t.AlertID = parts[2]
		t.EvKind = EvidenceKind(parts[3])
		if !t.EvKind.Valid() {
			return AgentTopic{}, fmt.Errorf("topic %q: evidence kind %q is not snapshot or clip", topic, parts[3])
		}
		if len(parts) == 6 {
			if t.EvKind != EvidenceClip {
				return AgentTopic{}, fmt.Errorf("topic %q: only clips travel in parts", topic)
			}
			i, err1 := strconv.Atoi(parts[4])
			n, err2 := strconv.Atoi(parts[5])
			if err1 != nil || err2 != nil || n < 2 || n > MaxClipParts || i < 0 || i >= n ||
				parts[4] != strconv.Itoa(i) || parts[5] != strconv.Itoa(n) {
				return AgentTopic{}, fmt.Errorf("topic %q: part %q of %q is not an index below a count of 2–%d", topic, parts[4], parts[5], MaxClipParts)
			}
			t.Part, t.Parts = i, n
		}
	default:
		return AgentTopic{}, fmt.Errorf("topic %q: unknown layout", topic)
	}
	return t, nil
}
