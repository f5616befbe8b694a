-- Issue 16: HIGH alerts left open too long escalate (lisguard.alerting.escalation). One row per
-- escalated alert: the primary key is the claim, inserted with ON CONFLICT DO NOTHING, so two
-- replicas never escalate an alert twice. Acknowledging the alert later keeps the row. Keep in
-- step with sql/sqlite/0010_escalations.sql.
CREATE TABLE escalations (
    alert_id     text             PRIMARY KEY REFERENCES alerts (id),
    escalated_at timestamptz      NOT NULL,
    open_minutes double precision NOT NULL,   -- how long the alert had been open by then
    channels     jsonb            NOT NULL DEFAULT '[]'   -- escalation outbox channels queued
);
