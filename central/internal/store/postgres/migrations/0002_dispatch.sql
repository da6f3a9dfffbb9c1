-- Incidents: alerts of one (camera, type, zone) grouped in time.
CREATE TABLE incidents (
    id             text     COLLATE "C" PRIMARY KEY,          -- ULID
    camera_id      text     COLLATE "C" NOT NULL,
    type           text     COLLATE "C" NOT NULL,
    zone           text     COLLATE "C" NOT NULL DEFAULT '',
    grid           text     NOT NULL DEFAULT '',
    state          text     NOT NULL,                         -- order.IncidentState, rolled up from the orders
    severity       smallint NOT NULL,                         -- most urgent of its alerts (1 … 4)
    first_alert_at bigint   NOT NULL,                         -- detected_at, Unix nanoseconds
    last_alert_at  bigint   NOT NULL,
    alert_count    integer  NOT NULL,
    recurrence_of  text     COLLATE "C" REFERENCES incidents (id),
    rule           text     NOT NULL DEFAULT '',              -- the routing rule that matched ('': the officer decides)
    sla_profile    text     NOT NULL DEFAULT '',
    why            text     NOT NULL DEFAULT '[]',            -- the routing trace, JSON array of strings
    created_at     bigint   NOT NULL,
    updated_at     bigint   NOT NULL,
    version        bigint   NOT NULL
);
CREATE INDEX incidents_by_key     ON incidents (camera_id, type, zone, created_at DESC, id DESC);
CREATE INDEX incidents_by_time    ON incidents (last_alert_at DESC, id DESC);
CREATE INDEX incidents_recurrence ON incidents (recurrence_of) WHERE recurrence_of IS NOT NULL;

-- Which alerts make up an incident; alert_id is unique, which makes
-- dispatching an alert idempotent.
CREATE TABLE incident_alerts (
    alert_id    text   COLLATE "C" PRIMARY KEY,
    incident_id text   COLLATE "C" NOT NULL REFERENCES incidents (id),
    detected_at bigint NOT NULL
);
CREATE INDEX incident_alerts_by_incident ON incident_alerts (incident_id, detected_at, alert_id);

-- Disposal orders, one per agency and incident.
CREATE TABLE orders (
    id               text   COLLATE "C" PRIMARY KEY,          -- ULID
    incident_id      text   COLLATE "C" NOT NULL REFERENCES incidents (id),
    agency_id        text   COLLATE "C" NOT NULL,
    role             text   NOT NULL CHECK (role IN ('lead', 'support')),
    state            text   NOT NULL,
    version          bigint NOT NULL,
    data             text   NOT NULL,                         -- the order.Order, JSON
    sla_profile      text   NOT NULL DEFAULT '',
    auto_dispatch_at bigint,                                  -- pending orders sent anyway at this time
    next_timer_at    bigint,                                  -- the next SLA card change or auto-dispatch; NULL: none
    UNIQUE (incident_id, agency_id)
);
CREATE INDEX orders_by_agency ON orders (agency_id, id DESC);
CREATE INDEX orders_by_timer  ON orders (next_timer_at) WHERE next_timer_at IS NOT NULL;

-- The append-only, hash-chained audit log (see package audit). Appends are
-- serialised by an advisory lock, so seq stays gapless and the chain linear
-- with several central replicas. Before and after are text, not jsonb:
-- jsonb may rewrite numbers.
CREATE TABLE audit (
    seq       bigint PRIMARY KEY,
    at        bigint NOT NULL,                                -- Unix nanoseconds
    actor     text   NOT NULL,
    entity    text   COLLATE "C" NOT NULL,
    entity_id text   COLLATE "C" NOT NULL,
    action    text   NOT NULL,
    before    text,                                           -- JSON; NULL: did not exist
    after     text,                                           -- JSON; NULL: removed
    prev_hash text   NOT NULL,
    hash      text   NOT NULL
);
CREATE INDEX audit_by_entity ON audit (entity, entity_id, seq);

-- Alerts wait here until the dispatcher has put them into incidents (the
-- SQLite store's alerts.dispatched = 0). A replica claims a batch for a
-- while (claimed_until, by the database's clock), so replicas drain
-- different alerts; a claim that lapses (its replica died) is taken again.
-- Dispatching twice would change nothing anyway: it is idempotent per alert.
CREATE TABLE dispatch_queue (
    seq           bigint PRIMARY KEY,                         -- the alert's seq: arrival order
    alert_id      text   COLLATE "C" NOT NULL UNIQUE,
    claimed_until timestamptz,
    claimed_by    text
);
