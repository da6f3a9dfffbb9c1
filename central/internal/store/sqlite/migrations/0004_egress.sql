-- Messages to agencies (orders, card notifications), one row per delivery
-- target (an MQTT topic or a webhook URL). They are written in the same
-- transaction as the change they announce (a transactional outbox) and
-- removed from the due index once delivered or dead.
CREATE TABLE egress (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	channel      TEXT    NOT NULL,  -- mqtt | webhook
	target       TEXT    NOT NULL,  -- topic or URL
	agency_id    TEXT    NOT NULL,
	order_id     TEXT    NOT NULL,
	event        TEXT    NOT NULL,  -- dispatched, cancelled, card, ...
	payload      TEXT    NOT NULL,
	created_at   INTEGER NOT NULL,
	state        TEXT    NOT NULL,  -- pending | delivered | dead
	attempts     INTEGER NOT NULL DEFAULT 0,
	next_at      INTEGER,           -- due time while pending; NULL otherwise
	last_error   TEXT    NOT NULL DEFAULT '',
	delivered_at INTEGER
);
CREATE INDEX egress_due ON egress (next_at) WHERE next_at IS NOT NULL;
CREATE INDEX egress_state ON egress (state, id);
CREATE INDEX egress_order ON egress (order_id);
CREATE INDEX egress_target ON egress (channel, target, id) WHERE next_at IS NOT NULL;
