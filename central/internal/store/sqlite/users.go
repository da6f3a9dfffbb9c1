package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/xueliang/xl/central/internal/store"
)

// CreateUser stores a new user; ErrConflict when the username is taken.
func (s *Store) CreateUser(ctx context.Context, u store.User) error {
	res, err := s.db.ExecContext(ctx, `INSERT INTO users (username, role, agency_id, display_name, password_hash, created_at, disabled)
		VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (username) DO NOTHING`,
		u.Username, u.Role, u.AgencyID, u.DisplayName, u.PasswordHash, u.CreatedAt.UnixNano(), u.Disabled)
	if err != nil {
		return fmt.Errorf("sqlite: create user: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("user %s: %w", u.Username, store.ErrConflict)
	}
	return nil
}

// SetPassword replaces a user's password hash.
func (s *Store) SetPassword(ctx context.Context, username, hash string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE users SET password_hash = ? WHERE username = ?`, hash, username)
	if err != nil {
		return fmt.Errorf("sqlite: set password: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("user %s: %w", username, store.ErrNotFound)
	}
	return nil
}

const userCols = `username, role, agency_id, display_name, password_hash, created_at, disabled`

func scanUser(sc interface{ Scan(...any) error }) (store.User, error) {
	var u store.User
	var created int64
	err := sc.Scan(&u.Username, &u.Role, &u.AgencyID, &u.DisplayName, &u.PasswordHash, &created, &u.Disabled)
	u.CreatedAt = time.Unix(0, created).UTC()
	return u, err
}

// GetUser returns one user.
func (s *Store) GetUser(ctx context.Context, username string) (store.User, error) {
	u, err := scanUser(s.db.QueryRowContext(ctx, `SELECT `+userCols+` FROM users WHERE username = ?`, username))
	if errors.Is(err, sql.ErrNoRows) {
		return u, fmt.Errorf("user %s: %w", username, store.ErrNotFound)
	}
	if err != nil {
		return u, fmt.Errorf("sqlite: get user: %w", err)
	}
	return u, nil
}

// ListUsers lists every user by name.
func (s *Store) ListUsers(ctx context.Context) ([]store.User, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+userCols+` FROM users ORDER BY username`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list users: %w", err)
	}
	defer rows.Close()
	out := []store.User{}
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list users: %w", err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// CreateSession stores a session.
func (s *Store) CreateSession(ctx context.Context, se store.Session) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO sessions (id_hash, username, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`,
		se.IDHash, se.Username, se.CSRF, se.CreatedAt.UnixNano(), se.ExpiresAt.UnixNano())
	if err != nil {
		return fmt.Errorf("sqlite: create session: %w", err)
	}
	return nil
}

// GetSession returns the session with that hash if it has not expired at now.
func (s *Store) GetSession(ctx context.Context, idHash string, now time.Time) (store.Session, error) {
	var se store.Session
	var created, expires int64
	err := s.db.QueryRowContext(ctx, `SELECT id_hash, username, csrf, created_at, expires_at FROM sessions WHERE id_hash = ? AND expires_at > ?`,
		idHash, now.UnixNano()).Scan(&se.IDHash, &se.Username, &se.CSRF, &created, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return se, fmt.Errorf("session: %w", store.ErrNotFound)
	}
	if err != nil {
		return se, fmt.Errorf("sqlite: get session: %w", err)
	}
	se.CreatedAt, se.ExpiresAt = time.Unix(0, created).UTC(), time.Unix(0, expires).UTC()
	return se, nil
}

// DeleteSession ends a session (signing out); expired ones go too.
func (s *Store) DeleteSession(ctx context.Context, idHash string, now time.Time) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE id_hash = ? OR expires_at <= ?`, idHash, now.UnixNano())
	if err != nil {
		return fmt.Errorf("sqlite: delete session: %w", err)
	}
	return nil
}

// CreateToken stores an API token (its hash).
func (s *Store) CreateToken(ctx context.Context, t store.APIToken) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO api_tokens (id, name, username, hash, created_at) VALUES (?, ?, ?, ?, ?)`,
		t.ID, t.Name, t.Username, t.Hash, t.CreatedAt.UnixNano())
	if err != nil {
		return fmt.Errorf("sqlite: create token: %w", err)
	}
	return nil
}

// TokenByHash finds the API token whose SHA-256 is hash.
func (s *Store) TokenByHash(ctx context.Context, hash string) (store.APIToken, error) {
	var t store.APIToken
	var created int64
	err := s.db.QueryRowContext(ctx, `SELECT id, name, username, hash, created_at FROM api_tokens WHERE hash = ?`, hash).
		Scan(&t.ID, &t.Name, &t.Username, &t.Hash, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return t, fmt.Errorf("token: %w", store.ErrNotFound)
	}
	if err != nil {
		return t, fmt.Errorf("sqlite: token: %w", err)
	}
	t.CreatedAt = time.Unix(0, created).UTC()
	return t, nil
}

// AddOrderPhoto stores a photo of an order and returns its ID.
func (s *Store) AddOrderPhoto(ctx context.Context, p store.OrderPhoto) (int64, error) {
	res, err := s.db.ExecContext(ctx, `INSERT INTO order_photos (order_id, content_type, sha256, size, uploaded_by, note, created_at, data)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, p.OrderID, p.ContentType, p.SHA256, len(p.Data), p.UploadedBy, p.Note, p.CreatedAt.UnixNano(), p.Data)
	if err != nil {
		return 0, fmt.Errorf("sqlite: add order photo: %w", err)
	}
	return res.LastInsertId()
}

// OrderPhotos lists an order's photos (without their bytes), oldest first.
func (s *Store) OrderPhotos(ctx context.Context, orderID string) ([]store.OrderPhoto, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, order_id, content_type, sha256, size, uploaded_by, note, created_at
		FROM order_photos WHERE order_id = ? ORDER BY id`, orderID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: order photos: %w", err)
	}
	defer rows.Close()
	out := []store.OrderPhoto{}
	for rows.Next() {
		var p store.OrderPhoto
		var created int64
		if err := rows.Scan(&p.ID, &p.OrderID, &p.ContentType, &p.SHA256, &p.Size, &p.UploadedBy, &p.Note, &created); err != nil {
			return nil, fmt.Errorf("sqlite: order photos: %w", err)
		}
		p.CreatedAt = time.Unix(0, created).UTC()
		out = append(out, p)
	}
	return out, rows.Err()
}

// OrderPhoto returns one photo of an order with its bytes.
func (s *Store) OrderPhoto(ctx context.Context, orderID string, id int64) (store.OrderPhoto, error) {
	var p store.OrderPhoto
	var created int64
	err := s.db.QueryRowContext(ctx, `SELECT id, order_id, content_type, sha256, size, uploaded_by, note, created_at, data
		FROM order_photos WHERE order_id = ? AND id = ?`, orderID, id).
		Scan(&p.ID, &p.OrderID, &p.ContentType, &p.SHA256, &p.Size, &p.UploadedBy, &p.Note, &created, &p.Data)
	if errors.Is(err, sql.ErrNoRows) {
		return p, fmt.Errorf("photo %d: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return p, fmt.Errorf("sqlite: order photo: %w", err)
	}
	p.CreatedAt = time.Unix(0, created).UTC()
	return p, nil
}
