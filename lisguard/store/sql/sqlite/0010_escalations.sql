-- Issue 16: HIGH alerts left open too long escalate (lisguard.alerting.escalation). One row per
-- escalated alert: the primary key is the claim, inserted with ON CONFLICT DO NOTHING, so an
-- alert is never escalated twice. Acknowledging the alert later keeps the row. Keep in step
-- with sql/postgres/0010_escalations.sql.
CREATE TABLE escalations (
    alert_id     TEXT PRIMARY KEY REFERENCES alerts (id),
    escalated_at TEXT NOT NULL,
    open_minutes REAL NOT NULL,             -- how long the alert had been open by then
    channels     TEXT NOT NULL DEFAULT '[]' -- escalation outbox channels queued (JSON)
);
