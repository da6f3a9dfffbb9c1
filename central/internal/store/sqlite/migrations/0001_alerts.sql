-- Alerts as received from agents; alert_id is the idempotency key.
CREATE TABLE alerts (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id        TEXT    NOT NULL UNIQUE,
    event_id        TEXT    NOT NULL,
    phase           TEXT    NOT NULL,
    agent_id        TEXT    NOT NULL,
    camera_id       TEXT    NOT NULL,
    type            TEXT    NOT NULL,
    severity        INTEGER NOT NULL,
    zone            TEXT    NOT NULL DEFAULT '',
    started_at      INTEGER NOT NULL, -- Unix nanoseconds, UTC
    detected_at     INTEGER NOT NULL,
    received_at     INTEGER NOT NULL,
    payload         TEXT    NOT NULL  -- the alert, normalised JSON
);
CREATE INDEX alerts_by_time   ON alerts (detected_at DESC, seq DESC);
CREATE INDEX alerts_by_camera ON alerts (camera_id, detected_at DESC);
CREATE INDEX alerts_by_type   ON alerts (type, detected_at DESC);
CREATE INDEX alerts_by_event  ON alerts (event_id);

-- Evidence may arrive before or after its alert; it is joined on alert_id.
CREATE TABLE evidence (
    alert_id    TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    sha256      TEXT    NOT NULL,
    size        INTEGER NOT NULL,
    data        BLOB    NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (alert_id, kind)
);

-- The last status of every agent.
CREATE TABLE agents (
    agent_id       TEXT    PRIMARY KEY,
    state          TEXT    NOT NULL,
    version        TEXT    NOT NULL DEFAULT '',
    config_version TEXT    NOT NULL DEFAULT '',
    cameras        TEXT    NOT NULL DEFAULT '[]',
    status_at      INTEGER NOT NULL,
    last_seen      INTEGER NOT NULL
);
