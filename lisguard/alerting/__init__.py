"""Alerts after the rules: suppression and collapse on ingest, delivery through the outbox, and
the patient summary the technologist page shows. Sits between services and the store."""
