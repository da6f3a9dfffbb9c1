package app

import (
	"context"
	"testing"

	"github.com/xueliang/xl/central/internal/store"
	"github.com/xueliang/xl/central/internal/web"
)

// apiToken creates a user of role and returns an API token acting as it.
func apiToken(t *testing.T, c *Central, role string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := web.NewUser(ctx, c.store, store.User{Username: "test-" + role, Role: role}, ""); err != nil {
		t.Fatal(err)
	}
	tok, _, err := web.NewToken(ctx, c.store, "test-"+role, "test")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
