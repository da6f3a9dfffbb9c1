package storetest_test

import (
	"reflect"
	"slices"
	"testing"

	"github.com/xueliang/xl/central/internal/dispatch"
	"github.com/xueliang/xl/central/internal/intake"
	"github.com/xueliang/xl/central/internal/store/postgres"
	"github.com/xueliang/xl/central/internal/store/sqlite"
	"github.com/xueliang/xl/central/internal/store/storetest"
	"github.com/xueliang/xl/central/internal/web"
)

// Both stores satisfy every consumer's interface (checked at compile time).
var (
	_ storetest.Central = (*sqlite.Store)(nil)
	_ storetest.Central = (*postgres.Store)(nil)
	_ intake.Store      = (*sqlite.Store)(nil)
	_ intake.Store      = (*postgres.Store)(nil)
	_ dispatch.Store    = (*sqlite.Store)(nil)
	_ dispatch.Store    = (*postgres.Store)(nil)
	_ web.Reader        = (*sqlite.Store)(nil)
	_ web.Reader        = (*postgres.Store)(nil)
	_ web.Incidents     = (*sqlite.Store)(nil)
	_ web.Incidents     = (*postgres.Store)(nil)
)

func methods(v any) []string {
	t := reflect.TypeOf(v)
	var out []string
	for i := range t.NumMethod() {
		m := t.Method(i)
		out = append(out, m.Name+" "+m.Type.String()[len("func("+t.String()):])
	}
	return out
}

// The stores are interchangeable: the same exported methods with the same
// signatures, so central can hold either.
func TestStoresHaveTheSameMethods(t *testing.T) {
	lite, pg := methods((*sqlite.Store)(nil)), methods((*postgres.Store)(nil))
	if !slices.Equal(lite, pg) {
		t.Fatalf("method sets differ:\nsqlite:   %v\npostgres: %v", lite, pg)
	}
	if len(lite) < 20 {
		t.Fatalf("only %d methods: %v", len(lite), lite)
	}
}
