-- The audit log is append-only (security review): an UPDATE of audit_events is refused. DELETE
-- stays possible: retention purges (`lisguard purge`) remove old events. Whoever can write the
-- database file can drop this trigger, or rewrite the file: against them the keyed hashes and
-- the signed anchors kept outside the database are what detect a change
-- (lisguard.domain.audit). Keep in step with sql/postgres/0008_audit_append_only.sql.
CREATE TRIGGER audit_events_append_only BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only: UPDATE refused');
END;
