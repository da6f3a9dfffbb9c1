-- Console and API users, their browser sessions and API tokens (hashes
-- only), and photos field units attach to orders.
CREATE TABLE users (
    username      text COLLATE "C" PRIMARY KEY,
    role          text    NOT NULL,          -- officer | agency | ops | admin
    agency_id     text    NOT NULL DEFAULT '',
    display_name  text    NOT NULL DEFAULT '',
    password_hash text    NOT NULL DEFAULT '',
    created_at    bigint  NOT NULL,
    disabled      boolean NOT NULL DEFAULT false
);
CREATE TABLE sessions (
    id_hash    text COLLATE "C" PRIMARY KEY,
    username   text COLLATE "C" NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    csrf       text    NOT NULL,
    created_at bigint  NOT NULL,
    expires_at bigint  NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expires_at);
CREATE TABLE api_tokens (
    id         text COLLATE "C" PRIMARY KEY,
    name       text    NOT NULL,
    username   text COLLATE "C" NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    hash       text COLLATE "C" NOT NULL UNIQUE,
    created_at bigint  NOT NULL
);
CREATE TABLE order_photos (
    id           bigserial PRIMARY KEY,
    order_id     text COLLATE "C" NOT NULL,
    content_type text    NOT NULL,
    sha256       text    NOT NULL,
    size         integer NOT NULL,
    uploaded_by  text    NOT NULL,
    note         text    NOT NULL DEFAULT '',
    created_at   bigint  NOT NULL,
    data         bytea   NOT NULL
);
CREATE INDEX order_photos_order ON order_photos (order_id, id);
