// Package pgtest gives tests a PostgreSQL schema of their own.
//
// Tests connect to DefaultDSN, which deploy/scripts/postgres.sh (run by
// `make deps`) makes work on a Debian machine, or to $XL_TEST_PG_DSN. Each
// call of Schema creates a uniquely named schema and drops it when the test
// ends, so tests run in parallel and leave nothing behind.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultDSN is the role and database deploy/scripts/postgres.sh creates.
const DefaultDSN = "postgres://xl_test:xl_test@127.0.0.1:5432/xl_test?sslmode=disable" // #nosec G101 -- the throw-away local test database

// DSN is $XL_TEST_PG_DSN, or DefaultDSN.
func DSN() string {
	if d := os.Getenv("XL_TEST_PG_DSN"); d != "" {
		return d
	}
	return DefaultDSN
}

var unsafe = regexp.MustCompile(`[^a-z0-9]+`)

// Schema creates a new, empty schema, drops it (with everything in it) when
// the test ends, and returns the DSN whose search_path selects it. When the
// server cannot be reached the test is skipped — except in CI (CI=true),
// where that is a failure: `make deps` starts PostgreSQL.
func Schema(tb testing.TB) string {
	tb.Helper()
	base := DSN()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		msg := fmt.Sprintf("pgtest: PostgreSQL not reachable (%v); run deploy/scripts/postgres.sh as root, or set XL_TEST_PG_DSN", err)
		if os.Getenv("CI") != "" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	defer conn.Close(context.Background())
	var b [4]byte
	_, _ = rand.Read(b[:])
	label := strings.Trim(unsafe.ReplaceAllString(strings.ToLower(tb.Name()), "_"), "_")
	if len(label) > 40 {
		label = label[len(label)-40:]
	}
	name := "xlt_" + label + "_" + hex.EncodeToString(b[:])
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+ident); err != nil {
		tb.Fatalf("pgtest: create schema %s: %v", name, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			tb.Errorf("pgtest: drop schema %s: %v", name, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, "DROP SCHEMA "+ident+" CASCADE"); err != nil {
			tb.Errorf("pgtest: drop schema %s: %v", name, err)
		}
	})
	return WithSearchPath(tb, base, name)
}

// WithSearchPath returns dsn (a URL or key=value string) connecting with
// search_path set to schema.
func WithSearchPath(tb testing.TB, dsn, schema string) string {
	tb.Helper()
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			tb.Fatalf("pgtest: dsn: %v", err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " search_path=" + schema
}
