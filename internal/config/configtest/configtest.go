// Package configtest checks configuration loaders against arbitrary input:
// the property every fuzz target of a configuration type shares.
package configtest

import (
	"bytes"
	"errors"
	"testing"

	"github.com/xueliang/xl/internal/config"
)

// NoEnv is an environment with nothing set.
func NoEnv(string) (string, bool) { return "", false }

// Check loads data into fresh() (which holds the defaults) with no
// environment. The load must either succeed or return a *config.Errors
// listing at least one problem, each with a message. A configuration that
// loads must be written back by config.Marshal, load again without a
// problem, and write back to the same bytes. It returns the loaded
// configuration, or nil when data was rejected.
func Check(t testing.TB, data []byte, fresh func() config.Validator) config.Validator {
	t.Helper()
	c := fresh()
	err := config.LoadBytes("fuzz.yaml", data, c, NoEnv)
	if err != nil {
		var errs *config.Errors
		if !errors.As(err, &errs) {
			t.Fatalf("error %T is not *config.Errors: %v", err, err)
		}
		if len(errs.List) == 0 {
			t.Fatalf("rejected with an empty problem list")
		}
		for _, fe := range errs.List {
			if fe.Msg == "" {
				t.Fatalf("problem without a message: %+v", fe)
			}
		}
		return nil
	}
	out, err := config.Marshal(c)
	if err != nil {
		t.Fatalf("a valid configuration does not encode: %v", err)
	}
	c2 := fresh()
	if err := config.LoadBytes("roundtrip.yaml", out, c2, NoEnv); err != nil {
		t.Fatalf("a valid configuration, written back, does not load:\n%v\n--- input\n%q\n--- written\n%s", err, data, out)
	}
	out2, err := config.Marshal(c2)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, out2) {
		t.Fatalf("round trip changed the configuration:\n--- first\n%s\n--- second\n%s", out, out2)
	}
	return c
}
