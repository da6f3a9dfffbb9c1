-- Messages to agencies (orders, card notifications), one row per delivery
-- target (an MQTT topic or a webhook URL), written in the same transaction
-- as the change they announce.
CREATE TABLE egress (
    id           bigserial PRIMARY KEY,
    channel      text    NOT NULL,           -- mqtt | webhook
    target       text    NOT NULL,           -- topic or URL
    agency_id    text    COLLATE "C" NOT NULL,
    order_id     text    COLLATE "C" NOT NULL,
    event        text    NOT NULL,
    payload      text    NOT NULL,
    created_at   bigint  NOT NULL,
    state        text    NOT NULL,           -- pending | delivered | dead
    attempts     integer NOT NULL DEFAULT 0,
    next_at      bigint,                     -- due time while pending; NULL otherwise
    last_error   text    NOT NULL DEFAULT '',
    delivered_at bigint
);
CREATE INDEX egress_due    ON egress (next_at) WHERE next_at IS NOT NULL;
CREATE INDEX egress_state  ON egress (state, id);
CREATE INDEX egress_order  ON egress (order_id);
CREATE INDEX egress_target ON egress (channel, target, id) WHERE next_at IS NOT NULL;
