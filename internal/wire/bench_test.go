package wire

import "testing"

func BenchmarkDecodeAlert(b *testing.B) {
	msg := readFile(b, "alert_full.json")
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := dec.DecodeAlert(msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshalAlert(b *testing.B) {
	a, err := dec.DecodeAlert(readFile(b, "alert_full.json"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Marshal(a); err != nil {
			b.Fatal(err)
		}
	}
}
