package storetest

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/xueliang/xl/central/internal/store"
)

// Users is what the console's authentication asks of a store.
type Users interface {
	CreateUser(ctx context.Context, u store.User) error
	SetPassword(ctx context.Context, username, hash string) error
	GetUser(ctx context.Context, username string) (store.User, error)
	ListUsers(ctx context.Context) ([]store.User, error)
	CreateSession(ctx context.Context, s store.Session) error
	GetSession(ctx context.Context, idHash string, now time.Time) (store.Session, error)
	DeleteSession(ctx context.Context, idHash string, now time.Time) error
	CreateToken(ctx context.Context, t store.APIToken) error
	TokenByHash(ctx context.Context, hash string) (store.APIToken, error)
	AddOrderPhoto(ctx context.Context, p store.OrderPhoto) (int64, error)
	OrderPhotos(ctx context.Context, orderID string) ([]store.OrderPhoto, error)
	OrderPhoto(ctx context.Context, orderID string, id int64) (store.OrderPhoto, error)
}

// Users, sessions (expiry, sign-out), API tokens by hash, and order photos.
func testUsers(t *testing.T, open func(*testing.T) Store) {
	s := open(t)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 22, 8, 0, 0, 5, time.UTC)
	u := store.User{Username: "li.wei", Role: store.RoleAgency, AgencyID: "river-police", DisplayName: "李伟",
		PasswordHash: "$2a$10$x", CreatedAt: t0}
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(ctx, u); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second user with the same name: %v, want ErrConflict", err)
	}
	got, err := s.GetUser(ctx, "li.wei")
	if err != nil || got != u {
		t.Fatalf("GetUser = %+v, %v; want %+v", got, err, u)
	}
	if _, err := s.GetUser(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown user: %v", err)
	}
	if err := s.SetPassword(ctx, "li.wei", "$2a$10$y"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetUser(ctx, "li.wei"); got.PasswordHash != "$2a$10$y" {
		t.Fatalf("password hash after SetPassword: %q", got.PasswordHash)
	}
	if err := s.SetPassword(ctx, "nobody", "h"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("SetPassword of an unknown user: %v", err)
	}
	if err := s.CreateUser(ctx, store.User{Username: "admin", Role: store.RoleAdmin, CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	list, err := s.ListUsers(ctx)
	if err != nil || len(list) != 2 || list[0].Username != "admin" || list[1].Username != "li.wei" {
		t.Fatalf("ListUsers = %+v, %v", list, err)
	}

	se := store.Session{IDHash: "h1", Username: "li.wei", CSRF: "c1", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	if err := s.CreateSession(ctx, se); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSession(ctx, store.Session{IDHash: "h2", Username: "admin", CSRF: "c2", CreatedAt: t0, ExpiresAt: t0.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetSession(ctx, "h1", t0.Add(time.Minute)); err != nil || got != se {
		t.Fatalf("GetSession = %+v, %v; want %+v", got, err, se)
	}
	if _, err := s.GetSession(ctx, "h1", t0.Add(time.Hour)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("expired session: %v, want ErrNotFound", err)
	}
	// Signing out of h1 also drops the expired h2.
	if err := s.DeleteSession(ctx, "h1", t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"h1", "h2"} {
		if _, err := s.GetSession(ctx, h, t0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("session %s after sign-out: %v", h, err)
		}
	}

	tok := store.APIToken{ID: "t1", Name: "e2e", Username: "admin", Hash: "abc", CreatedAt: t0}
	if err := s.CreateToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if got, err := s.TokenByHash(ctx, "abc"); err != nil || got != tok {
		t.Fatalf("TokenByHash = %+v, %v", got, err)
	}
	if _, err := s.TokenByHash(ctx, "abd"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown token: %v", err)
	}

	data := []byte{0xff, 0xd8, 0, 1, 2}
	id1, err := s.AddOrderPhoto(ctx, store.OrderPhoto{OrderID: "o1", ContentType: "image/jpeg", SHA256: "s1", UploadedBy: "li.wei", Note: "到场", CreatedAt: t0, Data: data})
	if err != nil {
		t.Fatal(err)
	}
	id2, err := s.AddOrderPhoto(ctx, store.OrderPhoto{OrderID: "o1", ContentType: "image/png", SHA256: "s2", UploadedBy: "li.wei", CreatedAt: t0, Data: []byte{1}})
	if err != nil || id2 <= id1 {
		t.Fatalf("second photo: id %d after %d, %v", id2, id1, err)
	}
	photos, err := s.OrderPhotos(ctx, "o1")
	if err != nil || len(photos) != 2 || photos[0].ID != id1 || photos[0].Size != len(data) || photos[0].Note != "到场" || photos[0].Data != nil {
		t.Fatalf("OrderPhotos = %+v, %v", photos, err)
	}
	p, err := s.OrderPhoto(ctx, "o1", id1)
	if err != nil || !bytes.Equal(p.Data, data) || !p.CreatedAt.Equal(t0) {
		t.Fatalf("OrderPhoto = %+v, %v", p, err)
	}
	if _, err := s.OrderPhoto(ctx, "o2", id1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a photo through another order: %v", err)
	}
	if list, err := s.OrderPhotos(ctx, "o2"); err != nil || len(list) != 0 {
		t.Fatalf("photos of an order without any: %v, %v", list, err)
	}
}
