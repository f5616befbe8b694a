"""Command line: serve, check, validate, check-config, send, token, key, audit, db, purge,
replay."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError

from lisguard import admin, app, replay_cli
from lisguard.keys import InstallKeyError
from lisguard.settings import Settings
from lisguard.store.access import ROLES
from lisguard.store.base import StoreError
from lisguard.validation import run as validation


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lisguard", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p_serve = sub.add_parser("serve", help="run the MLLP and HTTP service")
    p_serve.add_argument("--config", type=Path, help="YAML settings file")

    p_check = sub.add_parser(
        "check", help="run the rules over HL7 files; print one JSON alert per line"
    )
    p_check.add_argument("--config", type=Path, help="YAML settings file (knowledge, ingest)")
    p_check.add_argument(
        "--knowledge", type=Path, action="append", default=[], help="site knowledge file"
    )
    p_check.add_argument("files", type=Path, nargs="+")

    p_val = sub.add_parser(
        "validate",
        help="run a site's historical feed through check; write a report to review and sign",
    )
    p_val.add_argument("--config", type=Path, help="YAML settings file (knowledge, ingest)")
    p_val.add_argument("--out", type=Path, required=True, help="directory for report.html/json")
    p_val.add_argument("--sample", type=int, default=20, help="alerts per rule to review (20)")
    p_val.add_argument("--seed", type=int, default=0, help="seed of the random sample (0)")
    p_val.add_argument("feeds", type=Path, nargs="+", help="feed files or directories")

    p_cfg = sub.add_parser("check-config", help="validate settings; print them without secrets")
    p_cfg.add_argument("--config", type=Path)

    p_send = sub.add_parser("send", help="send HL7 files to an MLLP listener; print the ACKs")
    p_send.add_argument(
        "--config", type=Path, help="YAML settings file: send to its mllp.host/mllp.port"
    )
    p_send.add_argument(
        "--host", help="default: mllp.host from the settings (all interfaces: this machine)"
    )
    p_send.add_argument("--port", type=int, help="default: mllp.port from the settings (2575)")
    p_send.add_argument("--timeout", type=float, default=30.0)
    p_send.add_argument("--tls", action="store_true", help="connect with TLS")
    p_send.add_argument("--ca-file", type=Path, help="CA to verify the server with")
    p_send.add_argument("files", type=Path, nargs="+")

    p_token = sub.add_parser("token", help="API tokens: create, list, revoke")
    token_sub = p_token.add_subparsers(dest="token_command", required=True)
    p_tc = token_sub.add_parser("create", help="create a token and print it once")
    p_tc.add_argument("--role", required=True, choices=ROLES)
    p_tc.add_argument("--name", required=True, help="who or what uses it (shown in the audit)")
    p_tl = token_sub.add_parser("list", help="list tokens (never the tokens themselves)")
    p_tr = token_sub.add_parser("revoke", help="revoke a token by id")
    p_tr.add_argument("id", type=int)
    for p in (p_tc, p_tl, p_tr):
        p.add_argument("--config", type=Path, help="YAML settings file (store)")

    p_key = sub.add_parser("key", help="the install key: audit chain, anchors, log pseudonyms")
    key_sub = p_key.add_subparsers(dest="key_command", required=True)
    p_kc = key_sub.add_parser("create", help="write a new key to security.key_file (never over)")
    p_kc.add_argument("--config", type=Path, help="YAML settings file (security.key_file)")

    p_audit = sub.add_parser("audit", help="audit log: verify the keyed chain, sign its head")
    audit_sub = p_audit.add_subparsers(dest="audit_command", required=True)
    p_av = audit_sub.add_parser("verify", help="detect any edit, deletion or reordering")
    p_av.add_argument("--config", type=Path, help="YAML settings file (store)")
    p_av.add_argument("--anchor-file", type=Path, help="anchors to check against")
    p_aa = audit_sub.add_parser("anchor", help="sign the chain's head; append it to a file")
    p_aa.add_argument("--config", type=Path, help="YAML settings file (store, audit)")
    p_aa.add_argument("--out", help="file to append to (default audit.anchor_file); - prints")

    p_db = sub.add_parser("db", help="PostgreSQL: roles that cannot change the audit log")
    db_sub = p_db.add_subparsers(dest="db_command", required=True)
    p_dg = db_sub.add_parser("grants", help="grant app and retention roles (run as the owner)")
    p_dg.add_argument("--config", type=Path, help="YAML settings file (the owner's store.url)")
    p_dg.add_argument("--app-role", required=True, help="the role `lisguard serve` logs in as")
    p_dg.add_argument("--retention-role", required=True, help="the role `lisguard purge` uses")
    p_dg.add_argument("--show", action="store_true", help="print the statements, run nothing")

    p_purge = sub.add_parser("purge", help="apply retention: empty old raw messages, old audit")
    p_purge.add_argument("--config", type=Path, help="YAML settings file (store, retention)")
    p_purge.add_argument("--raw-days", type=int, help="override retention.raw_message_days")
    p_purge.add_argument("--audit-days", type=int, help="override retention.audit_event_days")

    p_replay = sub.add_parser(
        "replay", help="replay stored messages (dead letters after a fix) through ingest"
    )
    p_replay.add_argument("--config", type=Path, help="YAML settings file (store, knowledge)")
    p_replay.add_argument("ids", type=int, nargs="*", help="message ids (the message browser's)")
    p_replay.add_argument("--dead-letters", action="store_true", help="every dead letter")
    p_replay.add_argument(
        "--since", type=replay_cli.since_arg, help="with --dead-letters: received since then"
    )
    p_replay.add_argument("--reason", required=True, help="why (the fix made): kept in the audit")
    p_replay.add_argument(
        "--reevaluate",
        action="store_true",
        help="process accepted messages again with the knowledge in force (new alerts only)",
    )
    p_replay.add_argument("--dry-run", action="store_true", help="say what would happen only")

    args = parser.parse_args(argv)
    if args.command == "replay" and not (args.ids or args.dead_letters):
        p_replay.error("name message ids, or --dead-letters")
    if args.command == "replay" and args.since and not args.dead_letters:
        p_replay.error("--since goes with --dead-letters")
    try:
        if args.command == "check-config":
            return _check_config(args.config)
        settings = Settings.load(getattr(args, "config", None))
        if args.command == "serve":
            return asyncio.run(app.serve(settings, args.config))
        if args.command == "check":
            files = [*settings.knowledge.files, *args.knowledge]
            return app.check(
                args.files,
                files,
                sys.stdout,
                sys.stderr,
                knowledge_dir=settings.knowledge.base_dir,
                policy=app.ingest_policy(settings),  # as serve takes them, T/D included
            )
        if args.command == "validate":
            return validation.validate(
                args.feeds,
                args.out,
                settings,
                config=args.config,
                sample=args.sample,
                seed=args.seed,
                command=" ".join(["lisguard", *(argv if argv is not None else sys.argv[1:])]),
            )
        if args.command == "token":
            if args.token_command == "create":
                return asyncio.run(admin.token_create(settings, args.role, args.name, sys.stdout))
            if args.token_command == "list":
                return asyncio.run(admin.token_list(settings, sys.stdout))
            return asyncio.run(admin.token_revoke(settings, args.id, sys.stdout))
        if args.command == "key":
            return admin.key_create(settings, sys.stdout)
        if args.command == "audit":
            if args.audit_command == "anchor":
                return asyncio.run(admin.audit_anchor(settings, sys.stdout, to=args.out))
            return asyncio.run(
                admin.audit_verify(settings, sys.stdout, anchor_file=args.anchor_file)
            )
        if args.command == "db":
            return asyncio.run(
                admin.db_grants(
                    settings,
                    sys.stdout,
                    app_role=args.app_role,
                    retention_role=args.retention_role,
                    show=args.show,
                )
            )
        if args.command == "purge":
            return asyncio.run(
                admin.purge(
                    settings, sys.stdout, raw_days=args.raw_days, audit_days=args.audit_days
                )
            )
        if args.command == "replay":
            return asyncio.run(
                replay_cli.replay_command(
                    settings,
                    sys.stdout,
                    ids=args.ids,
                    dead=args.dead_letters,
                    since=args.since,
                    reason=args.reason,
                    reevaluate=args.reevaluate,
                    dry_run=args.dry_run,
                )
            )
        if args.command == "send":
            # the listener the settings configure (file, then LISGUARD_MLLP__*), unless told
            host = _connect_host(settings.mllp.host) if args.host is None else args.host
            port = settings.mllp.port if args.port is None else args.port
            return asyncio.run(
                app.send(args.files, host, port, args.timeout, args.tls, args.ca_file)
            )
    except (
        FileNotFoundError,
        ValidationError,
        app.ConfigError,
        StoreError,
        InstallKeyError,
    ) as exc:
        _fail(sys.stderr, str(exc))
        return 2
    except (OSError, TimeoutError) as exc:  # send: nobody listening, no ACK in time
        _fail(sys.stderr, f"{type(exc).__name__}: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    return 2


def _connect_host(listen_host: str) -> str:
    """Where to reach a listener bound to `listen_host`: a wildcard (all interfaces) is
    reached on this machine's loopback."""
    if listen_host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if listen_host == "::":
        return "::1"
    return listen_host


def _check_config(path: Path | None) -> int:
    try:
        settings = Settings.load(path)
        app.load_knowledge(settings.knowledge.files, settings.knowledge.base_dir)
        if settings.security.production:  # serve would refuse to start without it
            app.install_key(settings, create=False)
    except (FileNotFoundError, ValidationError, app.ConfigError) as exc:
        _fail(sys.stderr, str(exc))
        return 2
    print(json.dumps(settings.redacted(), indent=2, default=str))
    return 0


def _fail(stream: TextIO, reason: str) -> None:
    stream.write(json.dumps({"error": reason}) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
