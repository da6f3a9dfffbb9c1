-- Alerts wait here until the dispatcher has put them into incidents: intake
-- stores and acknowledges alerts at full speed, the dispatcher drains this
-- queue in batches, and a crash in between loses nothing (dispatching is
-- idempotent per alert). Alerts stored before this migration count as done.
ALTER TABLE alerts ADD COLUMN dispatched INTEGER NOT NULL DEFAULT 0;
UPDATE alerts SET dispatched = 1;
CREATE INDEX alerts_undispatched ON alerts (seq) WHERE dispatched = 0;
