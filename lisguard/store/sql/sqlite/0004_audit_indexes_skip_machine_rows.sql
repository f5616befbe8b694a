-- Every message writes one 'message.received' event by 'system': most rows of the table. Its
-- index entries cost a B-tree insert and a page write per message, and searches never need them:
-- a search for those rows is answered by walking seq backwards (most rows match, LIMIT stops
-- it early). The kind and actor indexes now leave those rows out; searches for other kinds or
-- for a person add the matching condition so the planner may use them (lisguard.store.access).
DROP INDEX audit_events_kind_idx;
CREATE INDEX audit_events_kind_idx ON audit_events (kind, seq) WHERE kind <> 'message.received';
DROP INDEX audit_events_actor_idx;
CREATE INDEX audit_events_actor_idx ON audit_events (actor, seq) WHERE actor <> 'system';
-- No query could use (subject, seq): the patient search is 'subject = ? OR detail patient = ?',
-- which no single index serves.
DROP INDEX audit_events_subject_idx;
