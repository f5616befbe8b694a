-- PostgreSQL's 0011 adds server-side functions that cut a message's round trips to the
-- server. SQLite runs in-process (no round trips): nothing to add; the file keeps the two
-- dialects' migrations numbered alike.
SELECT 1;
