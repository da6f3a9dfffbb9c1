package wire

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzDecodeAlert feeds arbitrary bytes to the alert decoder. It must never
// panic, every rejection must carry a reason, and whatever it accepts must
// survive an encode/decode round trip unchanged.
func FuzzDecodeAlert(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := dec.DecodeAlert(b)
		if err != nil {
			if ReasonOf(err) == "" {
				t.Fatalf("rejection without a reason: %v", err)
			}
			return
		}
		out, err := Marshal(a)
		if err != nil {
			t.Fatalf("accepted alert does not encode: %v", err)
		}
		b2, err := dec.DecodeAlert(out)
		if err != nil {
			t.Fatalf("re-encoded alert rejected: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(normalise(a), normalise(b2)) {
			t.Fatalf("round trip changed the alert:\n%#v\n%#v", a, b2)
		}
	})
}
