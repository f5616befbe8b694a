-- Audit kinds are compared in binary order (COLLATE "C"), as in SQLite and the memory store: an
-- event family such as 'alert.' is then the range 'alert.' <= kind < 'alert/', exactly the kinds
-- that start with it. This index serves that range and exact kinds whatever the database's
-- collation, also in a prepared statement's generic plan; the LIKE it replaces could use an
-- index only under a C collation with the pattern known, and read '_' and '%' as wildcards.
DROP INDEX audit_events_kind_idx;
CREATE INDEX audit_events_kind_idx ON audit_events ((kind COLLATE "C"), seq)
    WHERE kind <> 'message.received';
