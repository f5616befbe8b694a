-- PostgreSQL's 0012 lets the alert desk's routing ride on the unit's writes (fewer round
-- trips to the server). SQLite runs in-process: nothing to add; the numbers stay alike.
SELECT 1;
