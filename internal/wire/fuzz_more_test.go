package wire

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// The fuzz targets below share one property: anything a decoder accepts
// encodes, decodes again without complaint and compares equal; anything it
// rejects carries a reason (the label of central's rejection counters).

func checkRejected(t *testing.T, err error) {
	t.Helper()
	if ReasonOf(err) == "" {
		t.Fatalf("rejection without a reason: %v", err)
	}
}

// statusSeeds are valid and borderline status messages.
var statusSeeds = []string{
	`{"schema":"xl.status/v1","agent_id":"a1","state":"offline","ts":"2026-11-21T06:00:00Z"}`,
	`{"schema":"xl.status/v1","agent_id":"a1","state":"online","cameras":[],"ts":"2026-11-21T14:00:00.123456789+08:00"}`,
	`{"schema":"xl.status/v1","agent_id":"a1","state":"online","cameras":[{"camera_id":"c","state":"down","fps":0}],"ts":"2026-11-21T06:00:00Z","extra":{"x":[1,2]}}`,
	`{"schema":"xl.status/v1","agent_id":"a1","state":"online","cameras":[{"camera_id":"c","fps":-1}],"ts":"2026-11-21T06:00:00Z"}`,
	`{"schema":"xl.status/v1","agent_id":"a/b","state":"online","ts":"2026-11-21T06:00:00Z"}`,
	`{"schema":"xl.status/v1","agent_id":"a1","state":"online","ts":"1999-12-31T23:59:59Z"}`,
	`{"schema":"xl.status/v1","agent_id":"a1","state":"online","ts":"9999-12-31T23:59:59Z"}`,
	`{"schema":"xl.status/v1","agent_id":"a1","state":"online","ts":"2026-11-21T06:00:00Z"} {}`,
	`{"schema":"xl.status/v1","schema":"xl.alert/v1"}`,
}

// FuzzDecodeStatus checks the status decoder's round trip.
func FuzzDecodeStatus(f *testing.F) {
	f.Add(readFile(f, "status_online.json"))
	for _, s := range statusSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := dec.DecodeStatus(b)
		if err != nil {
			checkRejected(t, err)
			return
		}
		out, err := Marshal(s)
		if err != nil {
			t.Fatalf("accepted status does not encode: %v", err)
		}
		s2, err := dec.DecodeStatus(out)
		if err != nil {
			t.Fatalf("re-encoded status rejected: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(normalise(s), normalise(s2)) {
			t.Fatalf("round trip changed the status:\n%#v\n%#v", s, s2)
		}
	})
}

// FuzzDecodeCmd checks the command decoder's round trip.
func FuzzDecodeCmd(f *testing.F) {
	f.Add(readFile(f, "cmd_snapshot.json"))
	for _, s := range []string{
		`{"schema":"xl.cmd/v1","cmd_id":"1","cmd":"reload"}`,
		`{"schema":"xl.cmd/v1","cmd_id":"1","cmd":"verify","camera_id":"","ts":"0001-01-01T00:00:00Z"}`,
		`{"schema":"xl.cmd/v1","cmd_id":"1","cmd":"shutdown"}`,
		`{"schema":"xl.cmd/v1","cmd_id":"","cmd":"reload"}`,
		`{"schema":"xl.cmd/v1","cmd_id":"1","cmd":"snapshot","camera_id":"../etc"}`,
		`{"schema":"xl.cmd/v1","cmd_id":1,"cmd":"reload"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := dec.DecodeCmd(b)
		if err != nil {
			checkRejected(t, err)
			return
		}
		if c.CameraID != "" && !ValidID(c.CameraID) {
			t.Fatalf("accepted camera_id %q", c.CameraID)
		}
		out, err := Marshal(c)
		if err != nil {
			t.Fatalf("accepted command does not encode: %v", err)
		}
		c2, err := dec.DecodeCmd(out)
		if err != nil {
			t.Fatalf("re-encoded command rejected: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(normalise(c), normalise(c2)) {
			t.Fatalf("round trip changed the command:\n%#v\n%#v", c, c2)
		}
	})
}

// FuzzDecodeCmdReply checks the reply decoder's round trip, free-form
// result included.
func FuzzDecodeCmdReply(f *testing.F) {
	for _, s := range []string{
		`{"schema":"xl.cmd_reply/v1","cmd_id":"1","agent_id":"a1","cmd":"verify","ok":true,"result":{"cameras":[{"id":"c","ok":true}],"n":1.5},"ts":"2026-11-21T06:00:00Z"}`,
		`{"schema":"xl.cmd_reply/v1","cmd_id":"1","agent_id":"a1","cmd":"reload","ok":false,"error":"zones: bad polygon","ts":"2026-11-21T06:00:00Z"}`,
		`{"schema":"xl.cmd_reply/v1","cmd_id":"1","agent_id":"a1","result":null,"ts":"2026-11-21T06:00:00Z"}`,
		`{"schema":"xl.cmd_reply/v1","cmd_id":"1","agent_id":"a1","result":{"big":1e308,"neg":-0,"s":"\u0000"}}`,
		`{"schema":"xl.cmd_reply/v1","cmd_id":"1","agent_id":"#"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := dec.DecodeCmdReply(b)
		if err != nil {
			checkRejected(t, err)
			return
		}
		out, err := Marshal(r)
		if err != nil {
			t.Fatalf("accepted reply does not encode: %v", err)
		}
		r2, err := dec.DecodeCmdReply(out)
		if err != nil {
			t.Fatalf("re-encoded reply rejected: %v\n%s", err, out)
		}
		r.TS, r2.TS = utc(r.TS), utc(r2.TS)
		if len(r.Result) == 0 {
			r.Result = nil // an empty result is omitted on the wire
		}
		if !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip changed the reply:\n%#v\n%#v", r, r2)
		}
	})
}

// FuzzDecodeOrderAck checks an agency's ack: whatever is accepted has every
// required field and survives a round trip.
func FuzzDecodeOrderAck(f *testing.F) {
	for _, s := range []string{
		`{"schema":"xl.order_ack/v1","order_id":"o1","cmd_id":"c1","action":"accept","expected_version":3,"actor":"unit-7"}`,
		`{"schema":"xl.order_ack/v1","order_id":"o1","cmd_id":"c1","action":"reject","expected_version":1,"actor":"u","reason":"not ours","note":"说明"}`,
		`{"schema":"xl.order_ack/v1","order_id":"o1","cmd_id":"c1","action":"accept","expected_version":1e3,"actor":"u"}`,
		`{"schema":"xl.order_ack/v1","order_id":"","cmd_id":"c1","action":"accept","actor":"u"}`,
		`{"SCHEMA":"xl.order_ack/v1","Order_ID":"o1","cmd_id":"c1","action":"accept","actor":"u"}`,
		`null`,
		`[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := DecodeOrderAck(b)
		if err != nil {
			checkRejected(t, err)
			return
		}
		if a.Schema != SchemaOrderAck || a.OrderID == "" || a.CmdID == "" || a.Action == "" || a.Actor == "" {
			t.Fatalf("accepted an incomplete ack: %#v", a)
		}
		out, err := json.Marshal(a)
		if err != nil {
			t.Fatalf("accepted ack does not encode: %v", err)
		}
		a2, err := DecodeOrderAck(out)
		if err != nil {
			t.Fatalf("re-encoded ack rejected: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(a, a2) {
			t.Fatalf("round trip changed the ack:\n%#v\n%#v", a, a2)
		}
	})
}

// FuzzParseAgentTopic checks that every topic the parser accepts is exactly
// the one the topic builders make from the parsed fields, and that no level
// can smuggle in a wildcard or a separator.
func FuzzParseAgentTopic(f *testing.F) {
	const id = "01JD3Z8Q6P4X2N7M5K9R1T0VWC"
	for _, s := range []string{
		StatusTopic("hm-lixin-01"), AlertsTopic("a1"), CmdTopic("a1"), ReplyTopic("a1"),
		EvidenceTopic("a1", id, EvidenceSnapshot), EvidenceTopic("a1", id, EvidenceClip),
		ClipPartTopic("a1", id, 0, 2), ClipPartTopic("a1", id, 15, 16),
		EvidenceTopic("a1", id, EvidenceClip) + "/01/2", EvidenceTopic("a1", id, EvidenceClip) + "/1/+2",
		EvidenceTopic("a1", id, EvidenceSnapshot) + "/0/2", EvidenceTopic("a1", id, EvidenceClip) + "/2/2",
		"xl/v1/agents/+/alerts", "xl/v1/agents/a1/alerts/", "xl/v1/agents//alerts", "xl/v1/agents/a1/evidence/#",
		"xl/v1/agencies/ag/acks", "xl/v1/agents/a1", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		p, err := ParseAgentTopic(topic)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if !ValidID(p.AgentID) || strings.ContainsAny(p.AgentID, "/+#") {
			t.Fatalf("accepted agent id %q", p.AgentID)
		}
		var rebuilt string
		switch p.Kind {
		case KindStatus:
			rebuilt = StatusTopic(p.AgentID)
		case KindAlerts:
			rebuilt = AlertsTopic(p.AgentID)
		case KindCmd:
			rebuilt = CmdTopic(p.AgentID)
		case KindReplies:
			rebuilt = ReplyTopic(p.AgentID)
		case KindEvidence:
			if validULID(p.AlertID) != nil || !p.EvKind.Valid() {
				t.Fatalf("accepted evidence topic with %q / %q", p.AlertID, p.EvKind)
			}
			rebuilt = EvidenceTopic(p.AgentID, p.AlertID, p.EvKind)
			if p.Parts != 0 {
				if p.EvKind != EvidenceClip || p.Parts < 2 || p.Parts > MaxClipParts || p.Part < 0 || p.Part >= p.Parts {
					t.Fatalf("accepted part %d of %d (%s)", p.Part, p.Parts, p.EvKind)
				}
				rebuilt = ClipPartTopic(p.AgentID, p.AlertID, p.Part, p.Parts)
			}
		default:
			t.Fatalf("accepted unknown kind %q", p.Kind)
		}
		if rebuilt != topic {
			t.Fatalf("parsed %q as %+v, which builds %q", topic, p, rebuilt)
		}
		if again, err := ParseAgentTopic(rebuilt); err != nil || again != p {
			t.Fatalf("rebuilt topic parses differently: %+v, %v", again, err)
		}
	})
}

// FuzzParseAckTopic: the agency of an accepted acks topic rebuilds it.
func FuzzParseAckTopic(f *testing.F) {
	for _, s := range []string{AckTopic("hm-agri-brigade"), OrdersTopic("x"), "xl/v1/agencies//acks",
		"xl/v1/agencies/+/acks", "xl/v1/agencies/a/b/acks", "xl/v1/agencies/a/acks/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		id, err := ParseAckTopic(topic)
		if err != nil {
			return
		}
		if id == "" || strings.ContainsAny(id, "/+#") {
			t.Fatalf("accepted agency %q", id)
		}
		if AckTopic(id) != topic {
			t.Fatalf("%q parsed to %q, which builds %q", topic, id, AckTopic(id))
		}
	})
}

// FuzzEvidence checks the evidence checks: accepted snapshot bytes start a
// JPEG, accepted clips (and first clip parts) an MP4, and nothing accepted
// exceeds its kind's limit.
func FuzzEvidence(f *testing.F) {
	jpeg := []byte{0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 'J', 'F', 'I', 'F'}
	mp4 := []byte{0, 0, 0, 0x18, 'f', 't', 'y', 'p', 'i', 's', 'o', 'm'}
	f.Add("snapshot", 0, jpeg)
	f.Add("clip", 0, mp4)
	f.Add("clip", 1, []byte{1})
	f.Add("clip", 0, []byte{})
	f.Add("snapshot", 0, mp4)
	f.Add("thumbnail", 0, jpeg)
	f.Add("", -1, []byte(nil))
	f.Fuzz(func(t *testing.T, kind string, index int, b []byte) {
		k := EvidenceKind(kind)
		if err := CheckEvidence(k, b); err != nil {
			checkRejected(t, err)
		} else {
			if !k.Valid() || len(b) > k.MaxBytes() {
				t.Fatalf("accepted %d bytes of kind %q", len(b), kind)
			}
			if k == EvidenceSnapshot && (len(b) < 4 || b[0] != 0xff || b[1] != 0xd8) {
				t.Fatalf("accepted a snapshot that is no JPEG: % x", b[:min(len(b), 4)])
			}
			if k == EvidenceClip && (len(b) < 12 || string(b[4:8]) != "ftyp") {
				t.Fatal("accepted a clip that is no MP4")
			}
		}
		if err := CheckClipPart(index, b); err != nil {
			checkRejected(t, err)
		} else if len(b) == 0 || (index == 0 && string(b[4:8]) != "ftyp") {
			t.Fatalf("accepted part %d of %d bytes", index, len(b))
		}
		topic := ClipPartTopic("a1", "01JD3Z8Q6P4X2N7M5K9R1T0VWC", index, 4)
		if p, err := ParseAgentTopic(topic); err == nil && (p.Part != index || strconv.Itoa(p.Part) != strconv.Itoa(index)) {
			t.Fatalf("part %d came back as %d", index, p.Part)
		}
	})
}
