-- The `metrics` role (a Prometheus scraper's token: GET /metrics only). Keep in step with
-- sql/sqlite/0009_metrics_role.sql.
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_role_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_role_check
    CHECK (role IN ('technologist', 'manager', 'admin', 'sender', 'metrics'));
