"""What the SQLite and PostgreSQL backends share: the plumbing (parts), schema migrations (the
.sql files in sqlite/ and postgres/ beside this package) and the parts of the store that are not
on the per-message path (access, sessions, desk, outbox, escalation, messages), written once with
placeholders rewritten for PostgreSQL. Imports no backend."""
