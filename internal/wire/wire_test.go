package wire

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// fixedNow is the clock of every test: a day after the fixtures' timestamps.
var fixedNow = time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC)

var dec = Decoder{Now: func() time.Time { return fixedNow }}

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGolden decodes each fixture, re-encodes it and compares with the golden
// file beside it: the encoding is stable, UTC, and drops unknown fields.
func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		in     string
		decode func([]byte) (any, error)
	}{
		{"alert_full.json", func(b []byte) (any, error) { return dec.DecodeAlert(b) }},
		{"alert_minimal.json", func(b []byte) (any, error) { return dec.DecodeAlert(b) }},
		{"status_online.json", func(b []byte) (any, error) { return dec.DecodeStatus(b) }},
		{"cmd_snapshot.json", func(b []byte) (any, error) { return dec.DecodeCmd(b) }},
	} {
		t.Run(tc.in, func(t *testing.T) {
			v, err := tc.decode(readFile(t, tc.in))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			got, err := Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			golden := strings.TrimSuffix(tc.in, ".json") + ".golden"
			if *update {
				if err := os.WriteFile(filepath.Join("testdata", golden), append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want := bytes.TrimSpace(readFile(t, golden))
			if !bytes.Equal(got, want) {
				t.Errorf("encoding differs from %s\n got: %s\nwant: %s", golden, got, want)
			}
			// The golden encoding decodes to the same value.
			again, err := tc.decode(got)
			if err != nil {
				t.Fatalf("decode golden: %v", err)
			}
			if !reflect.DeepEqual(normalise(v), normalise(again)) {
				t.Errorf("round trip changed the value:\n%#v\n%#v", v, again)
			}
		})
	}
}

// normalise puts every timestamp in UTC so values compare with DeepEqual.
func normalise(v any) any {
	switch m := v.(type) {
	case *Alert:
		c := *m
		c.StartedAt, c.DetectedAt, c.PublishedAt = utc(c.StartedAt), utc(c.DetectedAt), utc(c.PublishedAt)
		if len(c.Objects) == 0 {
			c.Objects = nil // an empty list is omitted on the wire
		}
		return c
	case *Status:
		c := *m
		c.TS = utc(c.TS)
		if len(c.Cameras) == 0 {
			c.Cameras = nil
		}
		return c
	case *Cmd:
		c := *m
		c.TS = utc(c.TS)
		return c
	}
	return v
}

func TestDecodeAlertFields(t *testing.T) {
	a, err := dec.DecodeAlert(readFile(t, "alert_full.json"))
	if err != nil {
		t.Fatal(err)
	}
	if a.Type != TypeIllegalFishing || a.Severity != 2 || a.GridCode != "HM-ZY-QZ-03" || a.Site != "立新闸外长江水域" {
		t.Errorf("fields: %+v", a)
	}
	if len(a.Objects) != 2 || a.Objects[0].Class != "person" || a.Objects[0].TrackID != 17 || a.Objects[0].BBox[3] != 0.17 {
		t.Errorf("objects: %+v", a.Objects)
	}
	if want := time.Date(2026, 11, 21, 6, 2, 11, 5e8, time.UTC); !a.StartedAt.Equal(want) {
		t.Errorf("started_at %v, want %v (offset +08:00 honoured)", a.StartedAt, want)
	}
}

// mutate returns the minimal alert with one field replaced (or removed when
// value is nil), re-encoded by hand so that malformed values survive.
func mutate(t *testing.T, field string, value string) []byte {
	t.Helper()
	base := string(readFile(t, "alert_minimal.json"))
	base = strings.TrimSpace(base)
	key := `"` + field + `":`
	i := strings.Index(base, key)
	if i < 0 {
		// add the field
		return []byte(base[:len(base)-1] + `,` + key + value + `}`)
	}
	j := i + len(key)
	depth, inStr := 0, false
	for ; j < len(base); j++ {
		c := base[j]
		if inStr {
			if c == '\\' {
				j++
			} else if c == '"' {
				inStr = false
			}
			continue
		}
		switch c {
		case '"':
			inStr = true
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				goto done
			}
			depth--
		case ',':
			if depth == 0 {
				goto done
			}
		}
	}
done:
	if value == "" { // remove
		end := j
		if base[end] == ',' {
			end++
		} else if base[i-1] == ',' {
			i--
		}
		return []byte(base[:i] + base[end:])
	}
	return []byte(base[:i+len(key)] + value + base[j:])
}

func TestDecodeAlertRejects(t *testing.T) {
	big := `"` + strings.Repeat("x", MaxAlertBytes) + `"`
	for _, tc := range []struct {
		name   string
		in     []byte
		reason Reason
		field  string
	}{
		{"empty", []byte(""), ReasonBadJSON, ""},
		{"not json", []byte("hello"), ReasonBadJSON, ""},
		{"array", []byte("[1,2]"), ReasonBadJSON, ""},
		{"null", []byte("null"), ReasonBadJSON, ""},
		{"truncated", readFile(t, "alert_minimal.json")[:40], ReasonBadJSON, ""},
		{"trailing data", append(readFile(t, "alert_minimal.json"), []byte(" {}")...), ReasonBadJSON, ""},
		{"invalid utf8", []byte("{\"schema\":\"xl.alert/v1\",\"site\":\"\xff\xfe\"}"), ReasonInvalidUTF8, ""},
		{"too large", mutate(t, "site", big), ReasonTooLarge, ""},
		{"no schema", mutate(t, "schema", ""), ReasonWrongSchema, "schema"},
		{"wrong schema", mutate(t, "schema", `"xl.alert/v2"`), ReasonWrongSchema, "schema"},
		{"schema of status", mutate(t, "schema", `"xl.status/v1"`), ReasonWrongSchema, "schema"},
		{"no alert_id", mutate(t, "alert_id", ""), ReasonMissing, "alert_id"},
		{"bad alert_id", mutate(t, "alert_id", `"not-a-ulid"`), ReasonInvalid, "alert_id"},
		{"no event_id", mutate(t, "event_id", ""), ReasonMissing, "event_id"},
		{"bad phase", mutate(t, "phase", `"begin"`), ReasonInvalid, "phase"},
		{"no agent", mutate(t, "agent_id", ""), ReasonMissing, "agent_id"},
		{"agent with slash", mutate(t, "agent_id", `"a/b"`), ReasonInvalid, "agent_id"},
		{"camera with wildcard", mutate(t, "camera_id", `"c+"`), ReasonInvalid, "camera_id"},
		{"no type", mutate(t, "type", ""), ReasonMissing, "type"},
		{"bad type", mutate(t, "type", `"Intrusion!"`), ReasonInvalid, "type"},
		{"no severity", mutate(t, "severity", ""), ReasonMissing, "severity"},
		{"severity 5", mutate(t, "severity", `5`), ReasonInvalid, "severity"},
		{"severity string", mutate(t, "severity", `"2"`), ReasonInvalid, "severity"},
		{"no detected_at", mutate(t, "detected_at", ""), ReasonMissing, "detected_at"},
		{"bad timestamp", mutate(t, "detected_at", `"yesterday"`), ReasonInvalid, ""},
		{"started after detected", mutate(t, "started_at", `"2026-11-21T07:00:00Z"`), ReasonInvalid, "started_at"},
		{"clock not set", mutate(t, "started_at", `"1970-01-01T00:00:00Z"`), ReasonInvalid, "started_at"},
		{"future", mutate(t, "detected_at", `"2026-11-22T07:00:00Z"`), ReasonFuture, "detected_at"},
		{"future published", mutate(t, "published_at", `"2027-01-01T00:00:00Z"`), ReasonFuture, "published_at"},
		{"bbox out of frame", mutate(t, "objects", `[{"class":"person","score":0.5,"bbox":[0.9,0.1,0.2,0.1],"track_id":1,"dwell_s":0}]`), ReasonInvalid, "objects[0].bbox"},
		{"score above 1", mutate(t, "objects", `[{"class":"person","score":1.5,"bbox":[0.1,0.1,0.2,0.1],"track_id":1,"dwell_s":0}]`), ReasonInvalid, "objects[0].score"},
		{"object without class", mutate(t, "objects", `[{"score":0.5,"bbox":[0.1,0.1,0.2,0.1]}]`), ReasonInvalid, "objects[0].class"},
		{"bad evidence hash", mutate(t, "evidence", `{"snapshot_sha256":"ABC"}`), ReasonInvalid, "evidence.snapshot_sha256"},
		{"bad clean snapshot hash", mutate(t, "evidence", `{"clean_snapshot_sha256":"ABC"}`), ReasonInvalid, "evidence.clean_snapshot_sha256"},
		{"bad clean snapshot id", mutate(t, "evidence", `{"clean_snapshot_id":"x/y"}`), ReasonInvalid, "evidence.clean_snapshot_id"},
		{"bad reason", mutate(t, "reason", `"Covered!"`), ReasonInvalid, "reason"},
		{"geo out of range", mutate(t, "geo", `{"lat":91,"lon":0}`), ReasonInvalid, "geo"},
		{"model without name", mutate(t, "model", `{"version":"1"}`), ReasonInvalid, "model.name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := dec.DecodeAlert(tc.in)
			if err == nil {
				t.Fatalf("accepted: %+v", a)
			}
			de, ok := err.(*DecodeError)
			if !ok {
				t.Fatalf("error %T %v is not a *DecodeError", err, err)
			}
			if de.Reason != tc.reason || (tc.field != "" && de.Field != tc.field) {
				t.Errorf("got %s/%s (%v), want %s/%s", de.Reason, de.Field, err, tc.reason, tc.field)
			}
		})
	}
}

func TestMutateHelperKeepsValidBase(t *testing.T) {
	// The rejection table relies on mutate; a mutation that changes nothing
	// must still decode, so a broken helper cannot pass the table vacuously.
	if _, err := dec.DecodeAlert(mutate(t, "zone", `"crossing"`)); err != nil {
		t.Fatalf("added zone: %v", err)
	}
	if _, err := dec.DecodeAlert(mutate(t, "severity", `1`)); err != nil {
		t.Fatalf("replaced severity: %v", err)
	}
	if a, err := dec.DecodeAlert(mutate(t, "reason", `"covered"`)); err != nil || a.Reason != "covered" {
		t.Fatalf("added reason: %v %+v", err, a)
	}
}

func TestDecodeStatusAndCmdRejects(t *testing.T) {
	for _, tc := range []struct {
		name   string
		in     string
		status bool
		reason Reason
	}{
		{"status bad state", `{"schema":"xl.status/v1","agent_id":"a","state":"asleep","ts":"2026-11-21T06:00:00Z"}`, true, ReasonInvalid},
		{"status no ts", `{"schema":"xl.status/v1","agent_id":"a","state":"online"}`, true, ReasonMissing},
		{"status alert schema", `{"schema":"xl.alert/v1","agent_id":"a","state":"online","ts":"2026-11-21T06:00:00Z"}`, true, ReasonWrongSchema},
		{"cmd unknown", `{"schema":"xl.cmd/v1","cmd_id":"1","cmd":"selfdestruct"}`, false, ReasonInvalid},
		{"cmd no id", `{"schema":"xl.cmd/v1","cmd":"reload"}`, false, ReasonMissing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.status {
				_, err = dec.DecodeStatus([]byte(tc.in))
			} else {
				_, err = dec.DecodeCmd([]byte(tc.in))
			}
			if got := ReasonOf(err); got != tc.reason {
				t.Errorf("reason %q (%v), want %q", got, err, tc.reason)
			}
		})
	}
}

func TestTopics(t *testing.T) {
	id := "01JD3Z8Q6P4X2N7M5K9R1T0VWA"
	cases := map[string]string{
		StatusTopic("a1"):                         "xl/v1/agents/a1/status",
		AlertsTopic("a1"):                         "xl/v1/agents/a1/alerts",
		EvidenceTopic("a1", id, EvidenceSnapshot): "xl/v1/agents/a1/evidence/" + id + "/snapshot",
		CmdTopic("a1"):                            "xl/v1/agents/a1/cmd",
		ReplyTopic("a1"):                          "xl/v1/agents/a1/replies",
		OrdersTopic("agri-brigade"):               "xl/v1/agencies/agri-brigade/orders",
	}
	for got, want := range cases {
		if got != want {
			t.Errorf("topic %q, want %q", got, want)
		}
	}
	pt, err := ParseAgentTopic(EvidenceTopic("a1", id, EvidenceClip))
	if err != nil || pt.AgentID != "a1" || pt.Kind != KindEvidence || pt.AlertID != id || pt.EvKind != EvidenceClip {
		t.Errorf("parse evidence: %+v %v", pt, err)
	}
	pt, err = ParseAgentTopic(AlertsTopic("hm-lixin-01"))
	if err != nil || pt.AgentID != "hm-lixin-01" || pt.Kind != KindAlerts {
		t.Errorf("parse alerts: %+v %v", pt, err)
	}
	for _, bad := range []string{
		"xl/v2/agents/a1/alerts", "xl/v1/agents/a1", "xl/v1/agents//alerts", "xl/v1/agents/a1/alerts/extra",
		"xl/v1/agents/a1/evidence/" + id + "/video", "xl/v1/agents/a1/evidence/nope/snapshot", "xl/v1/agents/a1/other",
	} {
		if _, err := ParseAgentTopic(bad); err == nil {
			t.Errorf("ParseAgentTopic(%q) accepted", bad)
		}
	}
}

func TestCheckEvidence(t *testing.T) {
	if err := CheckEvidence(EvidenceSnapshot, []byte{0xFF, 0xD8, 0xFF, 0xE0, 0, 0}); err != nil {
		t.Errorf("jpeg: %v", err)
	}
	if ReasonOf(CheckEvidence(EvidenceSnapshot, []byte("GIF89a"))) != ReasonInvalid {
		t.Error("gif accepted as snapshot")
	}
	if ReasonOf(CheckEvidence(EvidenceSnapshot, append([]byte{0xFF, 0xD8, 0xFF}, make([]byte, MaxSnapshotBytes)...))) != ReasonTooLarge {
		t.Error("oversize snapshot accepted")
	}
	if err := CheckEvidence(EvidenceClip, []byte("\x00\x00\x00\x18ftypisom\x00\x00")); err != nil {
		t.Errorf("mp4: %v", err)
	}
}

func TestULIDMonotonic(t *testing.T) {
	now := time.Now()
	prev := NewULID(now)
	for range 1000 {
		id := NewULID(now)
		if id <= prev {
			t.Fatalf("ULID %s not after %s", id, prev)
		}
		if err := validULID(id); err != nil {
			t.Fatal(err)
		}
		prev = id
	}
}

func TestCmdReplyRoundTrip(t *testing.T) {
	r := &CmdReply{CmdID: "01JD3Z8Q6P4X2N7M5K9R1T0VWC", AgentID: "a1", Cmd: CmdVerify, OK: true, Result: map[string]any{"outbox_messages": 3.0}, TS: fixedNow}
	b, err := Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := dec.DecodeCmdReply(b)
	if err != nil || got.Schema != SchemaReply || !got.OK || got.Result["outbox_messages"] != 3.0 {
		t.Fatalf("%+v %v", got, err)
	}
	if _, err := dec.DecodeCmdReply([]byte(`{"schema":"xl.cmd_reply/v1","agent_id":"a1"}`)); ReasonOf(err) != ReasonMissing {
		t.Fatalf("reply without cmd_id: %v", err)
	}
}

func TestDecodeOrderAck(t *testing.T) {
	good := `{"schema":"xl.order_ack/v1","order_id":"o1","cmd_id":"c1","action":"accept","expected_version":2,"actor":"unit-7"}`
	a, err := DecodeOrderAck([]byte(good))
	if err != nil || a.OrderID != "o1" || a.ExpectedVersion != 2 || a.Actor != "unit-7" {
		t.Fatalf("%+v %v", a, err)
	}
	for _, c := range []struct {
		in   string
		want Reason
	}{
		{`{`, ReasonBadJSON},
		{`{"schema":"xl.order/v1","order_id":"o1","cmd_id":"c1","action":"accept","actor":"u"}`, ReasonWrongSchema},
		{`{"schema":"xl.order_ack/v1","cmd_id":"c1","action":"accept","actor":"u"}`, ReasonMissing},
		{`{"schema":"xl.order_ack/v1","order_id":"o1","action":"accept","actor":"u"}`, ReasonMissing},
		{"{\"schema\":\"xl.order_ack/v1\",\"actor\":\"\xff\"}", ReasonInvalidUTF8},
		{`{"schema":"xl.order_ack/v1","note":"` + strings.Repeat("x", 17<<10) + `"}`, ReasonTooLarge},
	} {
		if _, err := DecodeOrderAck([]byte(c.in)); ReasonOf(err) != c.want {
			t.Errorf("%.60s: %v, want %s", c.in, err, c.want)
		}
	}
	if id, err := ParseAckTopic(AckTopic("river-police")); err != nil || id != "river-police" {
		t.Fatalf("%q %v", id, err)
	}
	for _, bad := range []string{"xl/v1/agencies/x/orders", "xl/v1/agents/x/acks", "xl/v1/agencies//acks", "xl/v1/agencies/+/acks"} {
		if _, err := ParseAckTopic(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestClipParts(t *testing.T) {
	const alert = "01JD3Z8Q6P4X2N7M5K9R1T0VWZ"
	got, err := ParseAgentTopic(ClipPartTopic("hm-lixin-01", alert, 2, 3))
	if err != nil || got.Kind != KindEvidence || got.EvKind != EvidenceClip || got.Part != 2 || got.Parts != 3 || got.AlertID != alert {
		t.Fatalf("%+v %v", got, err)
	}
	if whole, err := ParseAgentTopic(EvidenceTopic("hm-lixin-01", alert, EvidenceClip)); err != nil || whole.Parts != 0 {
		t.Fatalf("one-message clip: %+v %v", whole, err)
	}
	base := EvidenceTopic("hm-lixin-01", alert, EvidenceClip)
	for _, bad := range []string{base + "/3/3", base + "/0/1", base + "/0/17", base + "/-1/3", base + "/01/3", base + "/a/3",
		EvidenceTopic("hm-lixin-01", alert, EvidenceSnapshot) + "/0/2", base + "/0"} {
		if _, err := ParseAgentTopic(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	// Split and join give back the clip; a too-large clip is refused.
	clip := make([]byte, 2*MaxClipBytes+5)
	copy(clip[4:], "ftyp")
	parts, err := SplitClip(clip)
	if err != nil || len(parts) != 3 {
		t.Fatalf("%d parts, %v", len(parts), err)
	}
	var joined []byte
	for i, p := range parts {
		if err := CheckClipPart(i, p); err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		joined = append(joined, p...)
	}
	if !bytes.Equal(joined, clip) {
		t.Fatal("parts do not join into the clip")
	}
	if err := CheckClipPart(0, []byte("not an mp4 at all")); ReasonOf(err) != ReasonInvalid {
		t.Fatalf("first part not MP4: %v", err)
	}
	if _, err := SplitClip(make([]byte, MaxClipParts*MaxClipBytes+1)); err == nil {
		t.Fatal("a clip over the parts limit was split")
	}
	if one, _ := SplitClip(clip[:100]); len(one) != 1 {
		t.Fatal("a small clip was split")
	}
}
