"""Administration commands: API tokens, audit chain verification and anchors, retention purge,
PostgreSQL grants."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from lisguard.domain.audit_anchor import AnchorError, AuditKeys, anchor_line
from lisguard.keys import InstallKey, InstallKeyError, load_install_key, write_key_file
from lisguard.settings import Settings, redact_url
from lisguard.store import open_store
from lisguard.store.access import ROLES
from lisguard.store.audit_chain import AnchorFile, AnchorRefused, anchor_now, verify_audit_log
from lisguard.store.base import Store, StoreError
from lisguard.web.auth import new_token, token_hash


def key_create(settings: Settings, out: TextIO) -> int:
    """`lisguard key create`: a new install key file; an existing one is never replaced."""
    path = settings.security.key_file
    try:
        key = InstallKey(write_key_file(path), str(path))
    except OSError as exc:
        raise InstallKeyError(f"cannot write {path}: {exc.strerror or exc}") from exc
    out.write(f"install key written to {path} (key id {key.key_id}): back it up now\n")
    return 0


def audit_keys(settings: Settings, *, create: bool = True) -> AuditKeys:
    """The install key's audit sub-keys. `create=False` for the commands that check the log:
    a key made now could verify nothing written before."""
    return AuditKeys.of(load_install_key(settings.security, create=create))


def require_database(settings: Settings, url: str | None = None) -> str:
    """The store URL an admin command opens (`url`, else store.url), once its SQLite file is
    known to exist. These commands administer an installation: opening a missing SQLite file
    would create a new, empty database (and an install key) wherever the command happens to
    run, since a relative path is taken from the current directory. Only `lisguard serve`
    creates the database. PostgreSQL databases are never created by opening them."""
    setting = "store.url" if url is None else "retention.store_url"
    url = url or settings.store.url.get_secret_value()
    from lisguard.store.sqlite import SqliteStore

    try:
        store = open_store(url)  # not opened: only reads the URL
    except ValueError as exc:
        raise StoreError(f"{setting}: {exc}") from exc
    if not isinstance(store, SqliteStore) or store.path.is_file():
        return url
    looked_at = Path(os.path.abspath(store.path))
    if store.path.is_absolute():
        where = f"{setting} {redact_url(url)} names it"
    else:
        where = (
            f"{setting} {redact_url(url)} is a relative path, taken from the current directory"
            f" ({Path.cwd()}), not from where the settings file is"
        )
    raise StoreError(
        f"no lisguard database at {looked_at} ({where}). This command administers an"
        " existing installation and does not create one: run it from the installation's"
        " directory, or pass --config with the installation's settings file (or set"
        " LISGUARD_STORE__URL=sqlite:////absolute/path/to/lisguard.db); for a new"
        " installation, start `lisguard serve` once, which creates the database"
    )


async def _opened(settings: Settings, url: str | None = None, *, create_key: bool = True) -> Store:
    url = require_database(settings, url)  # before the key: nothing is created for nothing
    # every store that may write an audit event is keyed: a plain event after keyed ones
    # would break the chain
    keys = audit_keys(settings, create=create_key)
    store = open_store(url, audit_key=keys.chain)
    await store.open()
    return store


async def token_create(settings: Settings, role: str, name: str, out: TextIO) -> int:
    """Create a token; print it once. Only its hash is stored."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    token = new_token()
    store = await _opened(settings)
    try:
        record = await store.access.add_token(
            name, role, token_hash(token), by="cli", at=datetime.now(UTC)
        )
    finally:
        await store.close()
    out.write(f"{token}\n")
    out.write(f"# token {record.id} for {name!r} ({role}): shown once, store it now\n")
    return 0


async def token_list(settings: Settings, out: TextIO) -> int:
    store = await _opened(settings)
    try:
        for t in await store.access.list_tokens():
            state = f"revoked {t.revoked_at.isoformat()}" if t.revoked_at else "active"
            out.write(f"{t.id}\t{t.role}\t{t.name}\t{t.created_at.isoformat()}\t{state}\n")
    finally:
        await store.close()
    return 0


async def token_revoke(settings: Settings, token_id: int, out: TextIO) -> int:
    store = await _opened(settings)
    try:
        done = await store.access.revoke_token(token_id, by="cli", at=datetime.now(UTC))
    finally:
        await store.close()
    out.write(f"token {token_id} {'revoked' if done else 'not found or already revoked'}\n")
    return 0 if done else 1


async def audit_verify(settings: Settings, out: TextIO, *, anchor_file: Path | None = None) -> int:
    """Exit 0 when the audit chain is intact (keyed hashes, links, and the last anchor in the
    anchor file still holding), 1 with the places where it is not."""
    require_database(settings)
    keys = audit_keys(settings, create=False)
    anchors = AnchorFile(anchor_file or settings.audit.anchor_file)
    store = await _opened(settings, create_key=False)
    try:
        report = await verify_audit_log(store, keys, anchors)
    finally:
        await store.close()
    if report.ok:
        out.write(f"audit chain intact: {report.checked} events, last hash {report.last_hash}\n")
    else:
        out.write(f"audit chain BROKEN ({report.checked} events checked):\n")
        for problem in report.problems:
            out.write(f"  {problem}\n")
    for note in report.notes:
        out.write(f"  note: {note}\n")
    return 0 if report.ok else 1


async def audit_anchor(settings: Settings, out: TextIO, *, to: str | None = None) -> int:
    """Sign the chain's head and append it to `to` (default audit.anchor_file; "-": print it
    instead). Exit 1, anchoring nothing, when the chain since the last anchor is broken."""
    require_database(settings)
    keys = audit_keys(settings, create=False)
    anchors = AnchorFile(settings.audit.anchor_file)
    target = AnchorFile(Path(to)) if to not in (None, "-") else anchors
    store = await _opened(settings, create_key=False)
    try:
        anchor = await anchor_now(store, keys, anchors, write=False)
    except AnchorRefused as exc:
        out.write("audit chain BROKEN, not anchored:\n")
        for problem in exc.problems:
            out.write(f"  {problem}\n")
        return 1
    except AnchorError as exc:
        raise StoreError(str(exc)) from exc
    finally:
        await store.close()
    if to == "-":
        out.write(anchor_line(anchor) + "\n")
        return 0
    try:
        target.append(anchor)
    except OSError as exc:
        raise StoreError(f"cannot write {target.path}: {exc.strerror or exc}") from exc
    out.write(
        f"anchored seq {anchor.seq} ({anchor.events} events, key {anchor.key_id}) in"
        f" {target.path}\n"
    )
    return 0


async def db_grants(
    settings: Settings, out: TextIO, *, app_role: str, retention_role: str, show: bool = False
) -> int:
    """PostgreSQL: the grants that keep the service's role from changing the audit log
    (lisguard.store.postgres.grants), run with the owner's store.url; `show`: print them only."""
    from lisguard.store.postgres import PostgresStore
    from lisguard.store.postgres.grants import apply_grants, grant_statements

    url = settings.store.url.get_secret_value()
    if not url.lower().startswith(("postgresql://", "postgres://")):
        raise StoreError("db grants is for PostgreSQL; SQLite has no roles (see docs/AUDIT.md)")
    if show:
        for statement in grant_statements("<schema>", app_role, retention_role):
            out.write(statement + ";\n")
        return 0
    store = await _opened(settings)  # applies the migrations as the owner
    await store.close()
    if not isinstance(store, PostgresStore):
        raise StoreError(f"not a PostgreSQL store: {store!r}")
    for statement in await apply_grants(store, app_role, retention_role):
        out.write(statement + ";\n")
    out.write(f"# {app_role} may not change audit_events; {retention_role} purges\n")
    return 0


async def purge(
    settings: Settings,
    out: TextIO,
    *,
    raw_days: int | None = None,
    audit_days: int | None = None,
    now: datetime | None = None,
) -> int:
    """Apply the retention settings (or the given days); each purge writes its own audit event."""
    now = now or datetime.now(UTC)
    raw_days = settings.retention.raw_message_days if raw_days is None else raw_days
    audit_days = settings.retention.audit_event_days if audit_days is None else audit_days
    # on PostgreSQL the service's role may not delete audit events: the retention role's URL
    retention_url = settings.retention.store_url
    store = await _opened(settings, retention_url.get_secret_value() if retention_url else None)
    try:
        if raw_days is not None:
            n = await store.access.purge_raw(now - timedelta(days=raw_days), by="cli", at=now)
            out.write(f"raw messages older than {raw_days} days emptied: {n}\n")
        if audit_days is not None:
            n = await store.access.purge_audit(now - timedelta(days=audit_days), by="cli", at=now)
            out.write(f"audit events older than {audit_days} days removed: {n}\n")
    finally:
        await store.close()
    return 0
