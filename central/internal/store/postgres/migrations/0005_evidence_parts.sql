-- Parts of clips too large for one MQTT message. A clip is stored as
-- evidence, and its parts deleted, in the transaction of its last part.
CREATE TABLE evidence_parts (
    alert_id    text     COLLATE "C" NOT NULL,
    kind        text     NOT NULL,
    idx         smallint NOT NULL,
    parts       smallint NOT NULL,
    data        bytea    NOT NULL,
    received_at bigint   NOT NULL,
    PRIMARY KEY (alert_id, kind, parts, idx)
);
