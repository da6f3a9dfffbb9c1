-- Times are Unix nanoseconds (UTC) in bigint columns, as in the SQLite
-- store: timestamptz keeps microseconds only, and the alert cursor and the
-- audit hashes need the nanoseconds the agents send. In psql:
-- to_timestamp(detected_at / 1e9). Identifiers use the "C" collation, so
-- they sort byte-wise (ULIDs in time order) whatever the database's locale.

-- Alerts as received from agents; alert_id is the idempotency key.
CREATE TABLE alerts (
    seq         bigint   GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- order of arrival
    alert_id    text     COLLATE "C" NOT NULL UNIQUE,
    event_id    text     COLLATE "C" NOT NULL,
    phase       text     NOT NULL,
    agent_id    text     COLLATE "C" NOT NULL,
    camera_id   text     COLLATE "C" NOT NULL,
    type        text     COLLATE "C" NOT NULL,
    severity    smallint NOT NULL,
    zone        text     NOT NULL DEFAULT '',
    started_at  bigint   NOT NULL,
    detected_at bigint   NOT NULL,
    received_at bigint   NOT NULL,
    payload     text     NOT NULL -- the alert, normalised JSON (text: stored as sent)
);
CREATE INDEX alerts_by_time   ON alerts (detected_at DESC, seq DESC);
CREATE INDEX alerts_by_camera ON alerts (camera_id, detected_at DESC, seq DESC);
CREATE INDEX alerts_by_agent  ON alerts (agent_id, detected_at DESC, seq DESC);
CREATE INDEX alerts_by_type   ON alerts (type, detected_at DESC, seq DESC);
CREATE INDEX alerts_by_event  ON alerts (event_id);

-- Evidence may arrive before or after its alert; it is joined on alert_id.
CREATE TABLE evidence (
    alert_id    text    COLLATE "C" NOT NULL,
    kind        text    COLLATE "C" NOT NULL,
    sha256      text    NOT NULL,
    size        integer NOT NULL,
    data        bytea   NOT NULL,
    received_at bigint  NOT NULL,
    PRIMARY KEY (alert_id, kind)
);

-- The last status of every agent.
CREATE TABLE agents (
    agent_id       text   COLLATE "C" PRIMARY KEY,
    state          text   NOT NULL,
    version        text   NOT NULL DEFAULT '',
    config_version text   NOT NULL DEFAULT '',
    cameras        text   NOT NULL DEFAULT '[]', -- JSON array
    status_at      bigint NOT NULL,
    last_seen      bigint NOT NULL
);
