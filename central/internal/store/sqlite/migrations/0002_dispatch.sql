-- Incidents: alerts of one (camera, type, zone) grouped in time.
CREATE TABLE incidents (
    id             TEXT    PRIMARY KEY,           -- ULID
    camera_id      TEXT    NOT NULL,
    type           TEXT    NOT NULL,
    zone           TEXT    NOT NULL DEFAULT '',
    grid           TEXT    NOT NULL DEFAULT '',
    state          TEXT    NOT NULL,              -- order.IncidentState, rolled up from the orders
    severity       INTEGER NOT NULL,              -- most urgent of its alerts (1 … 4)
    first_alert_at INTEGER NOT NULL,              -- Unix nanoseconds, UTC (detected_at)
    last_alert_at  INTEGER NOT NULL,
    alert_count    INTEGER NOT NULL,
    recurrence_of  TEXT    REFERENCES incidents (id),
    rule           TEXT    NOT NULL DEFAULT '',   -- the routing rule that matched ('' : the officer decides)
    sla_profile    TEXT    NOT NULL DEFAULT '',
    why            TEXT    NOT NULL DEFAULT '[]', -- the routing trace, JSON array of strings
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    version        INTEGER NOT NULL
);
CREATE INDEX incidents_by_key  ON incidents (camera_id, type, zone, last_alert_at DESC);
CREATE INDEX incidents_by_time ON incidents (last_alert_at DESC);

-- Which alerts make up an incident; alert_id is unique, which makes
-- dispatching an alert idempotent.
CREATE TABLE incident_alerts (
    alert_id    TEXT    PRIMARY KEY,
    incident_id TEXT    NOT NULL REFERENCES incidents (id),
    detected_at INTEGER NOT NULL
);
CREATE INDEX incident_alerts_by_incident ON incident_alerts (incident_id, detected_at);

-- Disposal orders, one per agency and incident.
CREATE TABLE orders (
    id            TEXT    PRIMARY KEY,            -- ULID
    incident_id   TEXT    NOT NULL REFERENCES incidents (id),
    agency_id     TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('lead', 'support')),
    state         TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    data          TEXT    NOT NULL,               -- the order.Order, JSON
    sla_profile   TEXT    NOT NULL DEFAULT '',
    auto_dispatch_at INTEGER,                     -- pending orders sent anyway at this time (manual dispatch fallback)
    next_timer_at INTEGER,                        -- the next SLA card change or auto-dispatch; NULL: none
    UNIQUE (incident_id, agency_id)
);
CREATE INDEX orders_by_agency ON orders (agency_id, state);
CREATE INDEX orders_by_timer  ON orders (next_timer_at) WHERE next_timer_at IS NOT NULL;

-- The append-only, hash-chained audit log (see package audit).
CREATE TABLE audit (
    seq       INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,                   -- Unix nanoseconds, UTC
    actor     TEXT    NOT NULL,
    entity    TEXT    NOT NULL,
    entity_id TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    before    TEXT,                               -- JSON; NULL: did not exist
    after     TEXT,                               -- JSON; NULL: removed
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL
);
CREATE INDEX audit_by_entity ON audit (entity, entity_id, seq);
