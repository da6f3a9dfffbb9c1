-- Parts of clips too large for one MQTT message. A clip is stored as
-- evidence, and its parts deleted, in the transaction of its last part.
CREATE TABLE evidence_parts (
    alert_id    TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    idx         INTEGER NOT NULL,
    parts       INTEGER NOT NULL,
    data        BLOB    NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (alert_id, kind, parts, idx)
);
