-- Console and API users, their browser sessions and API tokens (hashes
-- only), and photos field units attach to orders.
CREATE TABLE users (
	username      TEXT PRIMARY KEY,
	role          TEXT    NOT NULL,  -- officer | agency | ops | admin
	agency_id     TEXT    NOT NULL DEFAULT '',
	display_name  TEXT    NOT NULL DEFAULT '',
	password_hash TEXT    NOT NULL DEFAULT '',
	created_at    INTEGER NOT NULL,
	disabled      INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE sessions (
	id_hash    TEXT PRIMARY KEY,
	username   TEXT    NOT NULL REFERENCES users (username) ON DELETE CASCADE,
	csrf       TEXT    NOT NULL,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expires_at);
CREATE TABLE api_tokens (
	id         TEXT PRIMARY KEY,
	name       TEXT    NOT NULL,
	username   TEXT    NOT NULL REFERENCES users (username) ON DELETE CASCADE,
	hash       TEXT    NOT NULL UNIQUE,
	created_at INTEGER NOT NULL
);
CREATE TABLE order_photos (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	order_id     TEXT    NOT NULL,
	content_type TEXT    NOT NULL,
	sha256       TEXT    NOT NULL,
	size         INTEGER NOT NULL,
	uploaded_by  TEXT    NOT NULL,
	note         TEXT    NOT NULL DEFAULT '',
	created_at   INTEGER NOT NULL,
	data         BLOB    NOT NULL
);
CREATE INDEX order_photos_order ON order_photos (order_id, id);
