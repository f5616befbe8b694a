-- PostgreSQL's 0005 makes its kind index binary-ordered. SQLite compares text in binary order
-- already (and its search uses the same ranges), so there is nothing to change here; the file
-- keeps the two dialects' migrations numbered alike.
SELECT 1;
