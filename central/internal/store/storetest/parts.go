package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/xueliang/xl/central/internal/store"
	"github.com/xueliang/xl/internal/wire"
)

// A clip sent in parts is stored whole, once, when its last part arrives,
// whatever the order of the parts; a repeated part or one arriving after
// the clip changes nothing.
func testEvidenceParts(t *testing.T, open func(*testing.T) Store) {
	s := open(t)
	ctx := context.Background()
	const alert = "01JD3Z8Q6P4X2N7M5K9R1T0VWZ"
	clip := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	copy(clip[4:], "ftyp")
	chunks := [][]byte{clip[:20000], clip[20000:45000], clip[45000:]}
	put := func(i int) bool {
		t.Helper()
		stored, err := s.PutEvidencePart(ctx, store.EvidencePart{AlertID: alert, Kind: wire.EvidenceClip, Index: i, Parts: len(chunks),
			Data: chunks[i], ReceivedAt: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)})
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		return stored
	}
	for _, i := range []int{2, 0, 2} { // out of order, and a repeat
		if put(i) {
			t.Fatalf("stored before every part arrived (part %d)", i)
		}
	}
	if _, err := s.GetEvidence(ctx, alert, wire.EvidenceClip); err == nil {
		t.Fatal("evidence visible before its last part")
	}
	if !put(1) {
		t.Fatal("the last part did not store the clip")
	}
	ev, err := s.GetEvidence(ctx, alert, wire.EvidenceClip)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(clip)
	if !bytes.Equal(ev.Data, clip) || ev.SHA256 != hex.EncodeToString(sum[:]) || ev.Size != len(clip) {
		t.Fatalf("joined clip: %d bytes, sha %s", len(ev.Data), ev.SHA256)
	}
	// A part sent again after the clip (the agent did not get its PUBACK).
	if put(0) {
		t.Fatal("a late repeat stored the clip again")
	}
	if ev2, _ := s.GetEvidence(ctx, alert, wire.EvidenceClip); !bytes.Equal(ev2.Data, clip) {
		t.Fatal("the clip changed")
	}
}
