// Package audit is the append-only, hash-chained record of every change:
// who, when, what, before → after. Each entry's hash covers all of its
// fields and the previous entry's hash, so editing, deleting or reordering a
// stored row breaks verification at that row.
//
// A chain only proves that its rows agree with each other: someone able to
// rewrite every row after an edit can make a consistent chain. Record the
// head (Seq and Hash) outside the database now and then, and verify up to
// it, to detect that too.
package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"strings"
	"sync"
	"time"
)

// Entry is one audited change.
type Entry struct {
	Seq      uint64          `json:"seq"` // 1, 2, 3, … without gaps
	At       time.Time       `json:"at"`  // UTC, nanoseconds
	Actor    string          `json:"actor"`
	Entity   string          `json:"entity"` // e.g. order, incident
	EntityID string          `json:"entity_id"`
	Action   string          `json:"action"`
	Before   json.RawMessage `json:"before,omitempty"` // nil: the entity did not exist
	After    json.RawMessage `json:"after,omitempty"`  // nil: the entity was removed
	PrevHash string          `json:"prev_hash"`        // Hash of the entry before; Genesis for the first
	Hash     string          `json:"hash"`             // hex SHA-256, see Hash
}

// Genesis is the PrevHash of the first entry.
const Genesis = "0000000000000000000000000000000000000000000000000000000000000000"

// Sentinel errors.
var (
	ErrInvalidEntry = errors.New("audit: invalid entry")
	ErrTampered     = errors.New("audit: chain does not verify")
)

// Hash is the entry's hash: hex SHA-256 over an unambiguous encoding of
// every field but Hash itself (see encode). Before and After are hashed in
// canonical form, so a store that re-formats JSON (e.g. PostgreSQL jsonb:
// key order, spacing) does not break the chain; prefer storing them as text
// all the same, as jsonb may also rewrite numbers.
func Hash(e Entry) (string, error) {
	var buf bytes.Buffer
	if err := encode(&buf, e); err != nil {
		return "", err
	}
	sum := sha256.Sum256(buf.Bytes())
	return hex.EncodeToString(sum[:]), nil
}

// encode writes, in this order: a version tag, Seq and At (Unix
// nanoseconds) as 8-byte big-endian integers, then Actor, Entity, EntityID,
// Action, Before, After and PrevHash each as a presence byte, an 8-byte
// length and the bytes. Every field has a fixed place and a length, so no
// two different entries encode the same.
func encode(w *bytes.Buffer, e Entry) error {
	w.WriteString("xl.audit/v1\x00")
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], e.Seq)
	w.Write(n[:])
	binary.BigEndian.PutUint64(n[:], uint64(e.At.UnixNano()))
	w.Write(n[:])
	field := func(present bool, b []byte) {
		if !present {
			w.WriteByte(0)
			return
		}
		w.WriteByte(1)
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		w.Write(n[:])
		w.Write(b)
	}
	for _, s := range []string{e.Actor, e.Entity, e.EntityID, e.Action} {
		field(true, []byte(s))
	}
	for _, name := range []string{"before", "after"} {
		raw := e.Before
		if name == "after" {
			raw = e.After
		}
		if raw == nil {
			field(false, nil)
			continue
		}
		c, err := canonicalJSON(raw)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrInvalidEntry, name, err)
		}
		field(true, c)
	}
	field(true, []byte(e.PrevHash))
	return nil
}

// canonicalJSON is raw with objects' keys sorted and insignificant space
// removed; numbers keep their literal text and HTML characters are not
// escaped.
func canonicalJSON(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("more than one JSON value")
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil { // maps are written with sorted keys
		return nil, err
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n")), nil
}

// Chain appends entries. It holds only the head (last Seq and Hash), so the
// caller stores what Append returns; with several replicas, take the head
// from the database inside the transaction that inserts (Resume). A Chain is
// safe for concurrent use.
type Chain struct {
	mu   sync.Mutex
	seq  uint64
	head string
	now  func() time.Time
}

// NewChain is an empty chain. now stamps entries appended without At; nil
// means time.Now.
func NewChain(now func() time.Time) *Chain {
	if now == nil {
		now = time.Now
	}
	return &Chain{head: Genesis, now: now}
}

// Resume continues a chain after its last stored entry, whose hash is
// checked first.
func Resume(last Entry, now func() time.Time) (*Chain, error) {
	h, err := Hash(last)
	if err != nil {
		return nil, err
	}
	if h != last.Hash {
		return nil, &VerifyError{Seq: last.Seq, Reason: ReasonEdited, Detail: "the last entry's hash does not match its content"}
	}
	c := NewChain(now)
	c.seq, c.head = last.Seq, last.Hash
	return c, nil
}

// Head is the last entry's Seq and Hash (0 and Genesis when empty).
func (c *Chain) Head() (uint64, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seq, c.head
}

// Append seals e as the next entry: it sets Seq, PrevHash and Hash, stamps
// At (UTC, from the clock when zero) and stores Before and After in
// canonical form. Seq, PrevHash and Hash given in e are ignored.
func (c *Chain) Append(e Entry) (Entry, error) {
	if e.Actor == "" || e.Entity == "" || e.EntityID == "" || e.Action == "" {
		return Entry{}, fmt.Errorf("%w: actor, entity, entity id and action are required", ErrInvalidEntry)
	}
	for _, raw := range []*json.RawMessage{&e.Before, &e.After} {
		if *raw == nil {
			continue
		}
		canon, err := canonicalJSON(*raw)
		if err != nil {
			return Entry{}, fmt.Errorf("%w: before/after: %w", ErrInvalidEntry, err)
		}
		*raw = canon
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.At.IsZero() {
		e.At = c.now()
	}
	e.At = e.At.UTC().Round(0)
	e.Seq = c.seq + 1
	e.PrevHash = c.head
	h, err := Hash(e)
	if err != nil {
		return Entry{}, err
	}
	e.Hash = h
	c.seq, c.head = e.Seq, h
	return e, nil
}

// Reason says how a chain is broken.
type Reason string

// Reasons.
const (
	ReasonEdited    Reason = "edited"      // the row's content does not match its hash
	ReasonLink      Reason = "broken_link" // the row's PrevHash is not the hash of the row before
	ReasonMissing   Reason = "missing"     // a Seq is absent: a row was deleted
	ReasonReordered Reason = "reordered"   // rows are out of order (the missing Seq comes later)
	ReasonDuplicate Reason = "duplicate"   // a Seq already seen appears where the next was expected
)

// VerifyError is the first place a chain is broken.
type VerifyError struct {
	Seq    uint64 // the first Seq that does not verify (for a gap: the missing one)
	Reason Reason
	Detail string
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("audit: chain broken at seq %d: %s: %s", e.Seq, e.Reason, e.Detail)
}

// Is makes errors.Is(err, ErrTampered) true.
func (e *VerifyError) Is(target error) bool { return target == ErrTampered }

// Verifier checks a chain one entry at a time, in Seq order, as they come
// from the store.
type Verifier struct {
	seq  uint64
	head string
}

// NewVerifier checks a chain from its first entry.
func NewVerifier() *Verifier { return &Verifier{head: Genesis} }

// VerifierFrom checks the entries after a trusted head (a checkpoint).
func VerifierFrom(seq uint64, hash string) *Verifier { return &Verifier{seq: seq, head: hash} }

// Head is the last verified Seq and Hash.
func (v *Verifier) Head() (uint64, string) { return v.seq, v.head }

// Next checks e, the entry after the last one checked. After an error the
// verifier stays at the last good entry.
func (v *Verifier) Next(e Entry) error {
	want := v.seq + 1
	switch {
	case e.Seq > want:
		return &VerifyError{Seq: want, Reason: ReasonMissing, Detail: fmt.Sprintf("expected seq %d, found %d", want, e.Seq)}
	case e.Seq < want:
		return &VerifyError{Seq: want, Reason: ReasonDuplicate, Detail: fmt.Sprintf("expected seq %d, found %d again", want, e.Seq)}
	}
	h, err := Hash(e)
	if err != nil {
		return &VerifyError{Seq: e.Seq, Reason: ReasonEdited, Detail: err.Error()}
	}
	if h != e.Hash {
		return &VerifyError{Seq: e.Seq, Reason: ReasonEdited, Detail: fmt.Sprintf("content hashes to %s, row says %s", short(h), short(e.Hash))}
	}
	if e.PrevHash != v.head {
		return &VerifyError{Seq: e.Seq, Reason: ReasonLink, Detail: fmt.Sprintf("prev_hash %s is not the hash of seq %d (%s)", short(e.PrevHash), v.seq, short(v.head))}
	}
	v.seq, v.head = e.Seq, e.Hash
	return nil
}

// Verify checks a whole chain from Seq 1 and returns the first break as a
// *VerifyError (errors.Is ErrTampered), or nil. A missing Seq that appears
// later in entries is reported as reordered, otherwise as missing.
func Verify(entries iter.Seq[Entry]) error {
	v := NewVerifier()
	var broken *VerifyError
	for e := range entries {
		if broken != nil {
			// Look ahead only to tell a reordering from a deletion.
			if e.Seq == broken.Seq {
				broken.Reason = ReasonReordered
				broken.Detail += fmt.Sprintf("; seq %d comes later", e.Seq)
				break
			}
			continue
		}
		if err := v.Next(e); err != nil {
			var ve *VerifyError
			if errors.As(err, &ve) && ve.Reason == ReasonMissing {
				broken = ve
				continue
			}
			return err
		}
	}
	if broken != nil {
		return broken
	}
	return nil
}

// VerifySlice is Verify over a slice.
func VerifySlice(entries []Entry) error { return Verify(slices.Values(entries)) }

// VerifyUpTo is Verify, and also checks that the chain reaches a head
// recorded elsewhere (seq and hash), so that deleting the newest rows, or
// rewriting every row after an edit, is detected too. Rows after the head
// are verified as well.
func VerifyUpTo(entries iter.Seq[Entry], seq uint64, hash string) error {
	var last uint64
	var atHead string
	err := Verify(func(yield func(Entry) bool) {
		for e := range entries {
			last = e.Seq
			if e.Seq == seq {
				atHead = e.Hash
			}
			if !yield(e) {
				return
			}
		}
	})
	switch {
	case err != nil:
		return err
	case last < seq:
		return &VerifyError{Seq: last + 1, Reason: ReasonMissing, Detail: fmt.Sprintf("the chain ends at seq %d, before the recorded head %d", last, seq)}
	case atHead != hash:
		return &VerifyError{Seq: seq, Reason: ReasonEdited, Detail: fmt.Sprintf("hash %s is not the recorded head %s: the chain was rewritten", short(atHead), short(hash))}
	}
	return nil
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12] + "…"
	}
	if strings.TrimSpace(h) == "" {
		return `""`
	}
	return h
}
