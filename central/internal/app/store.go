package app

import (
	"context"
	"fmt"
	"net/url"
	"os"

	"github.com/xueliang/xl/central/internal/dispatch"
	"github.com/xueliang/xl/central/internal/egress"
	"github.com/xueliang/xl/central/internal/intake"
	"github.com/xueliang/xl/central/internal/store/postgres"
	"github.com/xueliang/xl/central/internal/store/sqlite"
	"github.com/xueliang/xl/central/internal/web"
)

// Store is what central's components and commands ask of its store:
// SQLite (embedded) or PostgreSQL (production, replicas).
type Store interface {
	intake.Store
	dispatch.Store
	egress.Store
	web.Reader
	web.Incidents
	web.Egress
	web.Users
	web.Photos
	SetPassword(ctx context.Context, username, hash string) error
	Ping(ctx context.Context) error
	Close() error
	MarkAllOffline(ctx context.Context) error
	VerifyAudit(ctx context.Context) (n uint64, head string, err error)
	StatsReader
}

var (
	_ Store = (*sqlite.Store)(nil)
	_ Store = (*postgres.Store)(nil)
)

// openStore opens the configured store; mustExist refuses to create an
// SQLite file (for commands that inspect one).
func openStore(ctx context.Context, cfg StoreConfig, mustExist bool) (Store, error) {
	switch cfg.Driver {
	case "postgres":
		st, err := postgres.Open(ctx, cfg.DSN)
		if err != nil {
			return nil, fmt.Errorf("store %s: %w", redact(cfg.DSN), err)
		}
		return st, nil
	default:
		if mustExist {
			if _, err := os.Stat(cfg.Path); err != nil {
				return nil, fmt.Errorf("store %s: %w", cfg.Path, err)
			}
		}
		return sqlite.Open(ctx, cfg.Path)
	}
}

// redact hides a DSN's password for logs and errors.
func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable DSN)"
	}
	return u.Redacted()
}

// storeName is where the store is, for logs.
func storeName(cfg StoreConfig) string {
	if cfg.Driver == "postgres" {
		return redact(cfg.DSN)
	}
	return cfg.Path
}
