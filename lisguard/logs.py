"""Logging: structlog, JSON lines in production, readable on a terminal. No PHI: patient ids only
as a keyed hash (HMAC-SHA256), never names, birth dates or free text."""

from __future__ import annotations

import hashlib
import hmac
import logging
import sys

import structlog

from lisguard.settings import LogSettings

_key = b"lisguard-dev-key"


def patient_hash(patient_key: str) -> str:
    """A stable pseudonym for a patient id: lets a log reader follow one patient, not name them."""
    return hmac.new(_key, patient_key.encode(), hashlib.sha256).hexdigest()[:16]


def _stderr_logger(*_args: object) -> structlog.PrintLogger:
    # sys.stderr looked up per logger, not once: it may be replaced (tests, daemons)
    return structlog.PrintLogger(file=sys.stderr)


def configure_logging(settings: LogSettings, pseudonym_key: bytes | None = None) -> None:
    """`pseudonym_key`: the install key's sub-key for pseudonyms (used unless
    log.patient_hash_key is set)."""
    global _key
    if settings.patient_hash_key is not None:
        _key = settings.patient_hash_key.get_secret_value().encode()
    elif pseudonym_key is not None:
        _key = pseudonym_key
    level = logging.getLevelNamesMapping().get(settings.level.upper(), logging.INFO)
    as_json = settings.format == "json" or (settings.format == "auto" and not sys.stderr.isatty())
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
