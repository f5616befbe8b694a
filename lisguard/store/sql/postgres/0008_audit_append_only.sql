-- The audit log is append-only (security review): UPDATE and TRUNCATE of audit_events are
-- refused always, DELETE unless the current role is a member of a retention role named in
-- audit_retention_roles (`lisguard db grants` fills it; `lisguard purge` runs as that role).
-- While none is named, only members of the table's owner role may delete, as before.
--
-- What this does not stop: the table's owner and superusers can drop or disable the trigger
-- (and superusers are members of every role). Against them the keyed hashes and the signed
-- anchors outside the database are what detect a change (lisguard.domain.audit). Hence: the
-- application role must not own the tables (`lisguard db grants` refuses an owner).
-- Keep in step with sql/sqlite/0008_audit_append_only.sql.
CREATE TABLE audit_retention_roles (
    role_name text PRIMARY KEY
);

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    allowed boolean;
BEGIN
    IF TG_OP = 'DELETE' THEN
        -- the schema of the table, not the caller's search_path
        EXECUTE format(
            'SELECT CASE WHEN EXISTS (SELECT 1 FROM %1$I.audit_retention_roles)'
            ' THEN EXISTS (SELECT 1 FROM %1$I.audit_retention_roles r'
            ' JOIN pg_roles p ON p.rolname = r.role_name'
            ' WHERE pg_has_role(current_user, p.oid, ''MEMBER''))'
            ' ELSE pg_has_role(current_user, (SELECT c.relowner FROM pg_class c'
            ' WHERE c.oid = $1), ''MEMBER'') END',
            TG_TABLE_SCHEMA
        ) INTO allowed USING TG_RELID;
        IF allowed THEN
            RETURN NULL;
        END IF;
    END IF;
    RAISE EXCEPTION 'audit_events is append-only: % refused for role %', TG_OP, current_user
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'retention purges run as the retention role (lisguard db grants)';
END;
$$;

-- per statement: a purge of a million rows checks once
CREATE TRIGGER audit_events_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
-- fires in session_replication_role = replica too (a superuser's way around ordinary triggers)
ALTER TABLE audit_events ENABLE ALWAYS TRIGGER audit_events_append_only;
