package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

var base = time.Date(2026, 6, 5, 13, 30, 0, 123456789, time.UTC)

// clock is a fake clock that moves one second per reading.
func clock() func() time.Time {
	t := base
	return func() time.Time {
		t = t.Add(time.Second)
		return t
	}
}

// referenceChain is the audit trail of the reference case.
func referenceChain(t *testing.T) []Entry {
	t.Helper()
	c := NewChain(clock())
	in := []Entry{
		{Actor: "intake", Entity: "incident", EntityID: "inc-1", Action: "open", After: json.RawMessage(`{"type": "illegal_fishing", "grid": "HM-ZY-QZ-03"}`)},
		{Actor: "router", Entity: "order", EntityID: "o-1", Action: "create", After: json.RawMessage(`{"agency":"hm-agri-brigade","role":"lead","state":"pending"}`)},
		{Actor: "router", Entity: "order", EntityID: "o-2", Action: "create", After: json.RawMessage(`{"agency":"hm-river-police","role":"support","state":"pending"}`)},
		{Actor: "brigade-duty", Entity: "order", EntityID: "o-1", Action: "accept", Before: json.RawMessage(`{"state":"dispatched","version":2}`), After: json.RawMessage(`{"state":"accepted","version":3}`)},
		{Actor: "sla", Entity: "order", EntityID: "o-1", Action: "raise_card", Before: json.RawMessage(`{"card":"blue"}`), After: json.RawMessage(`{"card":"yellow","notify":"HM"}`)},
		{Actor: "brigade-unit-3", Entity: "order", EntityID: "o-1", Action: "resolve", Before: json.RawMessage(`{"state":"on_scene"}`), After: json.RawMessage(`{"state":"resolved","note":"net seized <2 people>; photo"}`)},
		{Actor: "officer-wang", Entity: "incident", EntityID: "inc-1", Action: "close", Before: json.RawMessage(`{"state":"resolved"}`), After: json.RawMessage(`{"state":"closed"}`)},
	}
	var out []Entry
	for _, e := range in {
		got, err := c.Append(e)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, got)
	}
	return out
}

func TestChainVerifies(t *testing.T) {
	chain := referenceChain(t)
	if err := VerifySlice(chain); err != nil {
		t.Fatal(err)
	}
	for i, e := range chain {
		if e.Seq != uint64(i+1) {
			t.Errorf("entry %d has seq %d", i, e.Seq)
		}
		if e.At.Location() != time.UTC || e.At.Nanosecond() != 123456789 {
			t.Errorf("entry %d at %v: want UTC with nanoseconds", i, e.At)
		}
		if i == 0 && e.PrevHash != Genesis || i > 0 && e.PrevHash != chain[i-1].Hash {
			t.Errorf("entry %d prev %s", i, e.PrevHash)
		}
	}
	// Stored JSON is canonical: sorted keys, no spaces, no HTML escaping.
	if got := string(chain[0].After); got != `{"grid":"HM-ZY-QZ-03","type":"illegal_fishing"}` {
		t.Errorf("canonical after: %s", got)
	}
	if got := string(chain[5].After); got != `{"note":"net seized <2 people>; photo","state":"resolved"}` {
		t.Errorf("canonical after: %s", got)
	}
	// A store that re-formats JSON (jsonb) does not break the chain.
	reformatted := slices.Clone(chain)
	reformatted[3].After = json.RawMessage(`{ "version": 3, "state": "accepted" }`)
	if err := VerifySlice(reformatted); err != nil {
		t.Errorf("re-formatted JSON: %v", err)
	}
	seq, hash := chain[len(chain)-1].Seq, chain[len(chain)-1].Hash
	if err := VerifyUpTo(slices.Values(chain), seq, hash); err != nil {
		t.Errorf("up to the head: %v", err)
	}
}

// edits change one field of an entry.
var edits = []struct {
	field string
	edit  func(*Entry)
}{
	{"seq", func(e *Entry) { e.Seq += 100 }},
	{"seq down", func(e *Entry) { e.Seq-- }},
	{"at", func(e *Entry) { e.At = e.At.Add(time.Nanosecond) }},
	{"actor", func(e *Entry) { e.Actor = "someone-else" }},
	{"entity", func(e *Entry) { e.Entity = "alert" }},
	{"entity_id", func(e *Entry) { e.EntityID += "x" }},
	{"action", func(e *Entry) { e.Action = "cancel" }},
	{"before", func(e *Entry) { e.Before = json.RawMessage(`{"state":"pending"}`) }},
	{"before removed", func(e *Entry) {
		if e.Before == nil {
			e.Before = json.RawMessage(`null`)
		} else {
			e.Before = nil
		}
	}},
	{"after", func(e *Entry) { e.After = json.RawMessage(`{"state":"closed","forged":true}`) }},
	{"after broken", func(e *Entry) { e.After = json.RawMessage(`{"state":`) }},
	{"prev_hash", func(e *Entry) { e.PrevHash = Genesis[:63] + "1" }},
	{"hash", func(e *Entry) { e.Hash = Genesis }},
}

func TestEditingAnyFieldOfAnyRowFails(t *testing.T) {
	chain := referenceChain(t)
	for i := range chain {
		for _, ed := range edits {
			t.Run(fmt.Sprintf("seq%d/%s", i+1, ed.field), func(t *testing.T) {
				tampered := slices.Clone(chain)
				ed.edit(&tampered[i])
				err := VerifySlice(tampered)
				var ve *VerifyError
				if !errors.Is(err, ErrTampered) || !errors.As(err, &ve) {
					t.Fatalf("want a VerifyError, got %v", err)
				}
				if ve.Seq != uint64(i+1) {
					t.Errorf("reported seq %d (%v), want %d", ve.Seq, err, i+1)
				}
			})
		}
	}
}

func TestDeletingARowFails(t *testing.T) {
	chain := referenceChain(t)
	for i := range chain[:len(chain)-1] {
		tampered := slices.Delete(slices.Clone(chain), i, i+1)
		err := VerifySlice(tampered)
		var ve *VerifyError
		if !errors.As(err, &ve) || ve.Seq != uint64(i+1) || ve.Reason != ReasonMissing {
			t.Errorf("deleted seq %d: got %v", i+1, err)
		}
		if i == 2 && err.Error() != "audit: chain broken at seq 3: missing: expected seq 3, found 4" {
			t.Errorf("message: %v", err)
		}
	}
	// Deleting the newest row leaves a consistent chain: only the recorded
	// head shows it.
	last := chain[len(chain)-1]
	short := chain[:len(chain)-1]
	if err := VerifySlice(short); err != nil {
		t.Errorf("shorter chain: %v", err)
	}
	err := VerifyUpTo(slices.Values(short), last.Seq, last.Hash)
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Seq != last.Seq || ve.Reason != ReasonMissing {
		t.Errorf("deleted newest row: got %v", err)
	}
}

// TestDeleteAndRenumberFails deletes a row and renumbers the rest, keeping
// their hashes; then also re-hashes them, which only the head catches.
func TestDeleteAndRenumberFails(t *testing.T) {
	chain := referenceChain(t)
	tampered := slices.Delete(slices.Clone(chain), 2, 3)
	for i := 2; i < len(tampered); i++ {
		tampered[i].Seq--
	}
	var ve *VerifyError
	if err := VerifySlice(tampered); !errors.As(err, &ve) || ve.Seq != 3 {
		t.Errorf("renumbered: got %v", err)
	}
	// Rewrite everything after the deletion consistently.
	c, err := Resume(tampered[1], nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 2; i < len(tampered); i++ {
		if tampered[i], err = c.Append(tampered[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := VerifySlice(tampered); err != nil {
		t.Fatalf("a rewritten chain is consistent: %v", err)
	}
	head := chain[len(chain)-1]
	if err := VerifyUpTo(slices.Values(tampered), head.Seq, head.Hash); !errors.As(err, &ve) || ve.Seq != head.Seq {
		t.Errorf("rewritten chain against the recorded head: got %v", err)
	}
}

func TestSwappingRowsFails(t *testing.T) {
	chain := referenceChain(t)
	for i := 0; i+1 < len(chain); i++ {
		for _, j := range []int{i + 1, len(chain) - 1} {
			if j == i {
				continue
			}
			// Rows returned in the wrong order.
			tampered := slices.Clone(chain)
			tampered[i], tampered[j] = tampered[j], tampered[i]
			err := VerifySlice(tampered)
			var ve *VerifyError
			if !errors.As(err, &ve) || ve.Seq != uint64(i+1) || ve.Reason != ReasonReordered {
				t.Errorf("swap %d and %d: got %v", i+1, j+1, err)
			}
			// Contents swapped between two seq numbers (what ORDER BY seq
			// returns after an UPDATE of both rows).
			tampered = slices.Clone(chain)
			tampered[i], tampered[j] = tampered[j], tampered[i]
			tampered[i].Seq, tampered[j].Seq = chain[i].Seq, chain[j].Seq
			err = VerifySlice(tampered)
			if !errors.As(err, &ve) || ve.Seq != uint64(i+1) || ve.Reason != ReasonEdited {
				t.Errorf("swap contents %d and %d: got %v", i+1, j+1, err)
			}
		}
	}
}

func TestDuplicateRowFails(t *testing.T) {
	chain := referenceChain(t)
	tampered := slices.Insert(slices.Clone(chain), 3, chain[2])
	var ve *VerifyError
	if err := VerifySlice(tampered); !errors.As(err, &ve) || ve.Seq != 4 || ve.Reason != ReasonDuplicate {
		t.Errorf("got %v", err)
	}
}

func TestHashEncodingIsUnambiguous(t *testing.T) {
	pairs := [][2]Entry{
		{{Actor: "ab", Entity: "c"}, {Actor: "a", Entity: "bc"}},
		{{EntityID: "1", Action: ""}, {EntityID: "", Action: "1"}},
		{{Before: nil}, {Before: json.RawMessage(`null`)}},
		{{Before: json.RawMessage(`{}`)}, {After: json.RawMessage(`{}`)}},
		{{Seq: 1, At: base}, {Seq: 2, At: base}},
		{{PrevHash: "a"}, {PrevHash: "A"}},
	}
	for _, p := range pairs {
		a, err1 := Hash(p[0])
		b, err2 := Hash(p[1])
		if err1 != nil || err2 != nil || a == b {
			t.Errorf("%+v and %+v hash alike (%v %v)", p[0], p[1], err1, err2)
		}
	}
}

func TestAppendRejectsBadEntries(t *testing.T) {
	c := NewChain(clock())
	for _, e := range []Entry{
		{Entity: "order", EntityID: "o", Action: "accept"},
		{Actor: "a", EntityID: "o", Action: "accept"},
		{Actor: "a", Entity: "order", EntityID: "o", Action: "accept", After: json.RawMessage(`{"state":`)},
		{Actor: "a", Entity: "order", EntityID: "o", Action: "accept", Before: json.RawMessage(`{} {}`)},
	} {
		if _, err := c.Append(e); !errors.Is(err, ErrInvalidEntry) {
			t.Errorf("%+v: got %v", e, err)
		}
	}
	if seq, head := c.Head(); seq != 0 || head != Genesis {
		t.Errorf("refused entries moved the head: %d %s", seq, head)
	}
}

func TestResumeAndCheckpoint(t *testing.T) {
	chain := referenceChain(t)
	// After a restart the chain continues from the last stored row.
	c, err := Resume(chain[len(chain)-1], clock())
	if err != nil {
		t.Fatal(err)
	}
	more, err := c.Append(Entry{Actor: "officer-wang", Entity: "incident", EntityID: "inc-1", Action: "annotate", At: base.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	all := append(slices.Clone(chain), more)
	if err := VerifySlice(all); err != nil {
		t.Fatal(err)
	}
	// Only the rows after a checkpoint need checking.
	v := VerifierFrom(chain[3].Seq, chain[3].Hash)
	for _, e := range all[4:] {
		if err := v.Next(e); err != nil {
			t.Fatal(err)
		}
	}
	if seq, hash := v.Head(); seq != more.Seq || hash != more.Hash {
		t.Errorf("head %d %s", seq, hash)
	}
	edited := chain[len(chain)-1]
	edited.Actor = "forger"
	if _, err := Resume(edited, nil); !errors.Is(err, ErrTampered) {
		t.Errorf("resume from an edited row: %v", err)
	}
}

func TestConcurrentAppends(t *testing.T) {
	c := NewChain(nil)
	var mu sync.Mutex
	var all []Entry
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 50 {
				e, err := c.Append(Entry{Actor: fmt.Sprint("w", w), Entity: "order", EntityID: fmt.Sprint(i), Action: "escalate"})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				all = append(all, e)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.SortFunc(all, func(a, b Entry) int { return int(a.Seq) - int(b.Seq) })
	if err := VerifySlice(all); err != nil {
		t.Fatal(err)
	}
	if seq, _ := c.Head(); seq != 400 {
		t.Errorf("head %d", seq)
	}
}
