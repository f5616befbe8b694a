"""Command line: serve, check, send, check-config."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError

from lisguard import app
from lisguard.settings import Settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lisguard", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p_serve = sub.add_parser("serve", help="run the MLLP and HTTP service")
    p_serve.add_argument("--config", type=Path, help="YAML settings file")

    p_check = sub.add_parser(
        "check", help="run the rules over HL7 files; print one JSON alert per line"
    )
    p_check.add_argument("--config", type=Path, help="YAML settings file (knowledge files)")
    p_check.add_argument(
        "--knowledge", type=Path, action="append", default=[], help="site knowledge file"
    )
    p_check.add_argument("files", type=Path, nargs="+")

    p_cfg = sub.add_parser("check-config", help="validate settings; print them without secrets")
    p_cfg.add_argument("--config", type=Path)

    p_send = sub.add_parser("send", help="send HL7 files to an MLLP listener; print the ACKs")
    p_send.add_argument("--host", default="127.0.0.1")
    p_send.add_argument("--port", type=int, default=2575)
    p_send.add_argument("--timeout", type=float, default=30.0)
    p_send.add_argument("--tls", action="store_true", help="connect with TLS")
    p_send.add_argument("--ca-file", type=Path, help="CA to verify the server with")
    p_send.add_argument("files", type=Path, nargs="+")

    args = parser.parse_args(argv)
    try:
        if args.command == "check-config":
            return _check_config(args.config)
        settings = Settings.load(getattr(args, "config", None))
        if args.command == "serve":
            return asyncio.run(app.serve(settings))
        if args.command == "check":
            files = [*settings.knowledge.files, *args.knowledge]
            return asyncio.run(app.check(args.files, files, sys.stdout, sys.stderr))
        if args.command == "send":
            return asyncio.run(
                app.send(args.files, args.host, args.port, args.timeout, args.tls, args.ca_file)
            )
    except (FileNotFoundError, ValidationError, app.ConfigError) as exc:
        _fail(sys.stderr, str(exc))
        return 2
    except (OSError, TimeoutError) as exc:  # send: nobody listening, no ACK in time
        _fail(sys.stderr, f"{type(exc).__name__}: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    return 2


def _check_config(path: Path | None) -> int:
    try:
        settings = Settings.load(path)
        app.load_knowledge(settings.knowledge.files)
    except (FileNotFoundError, ValidationError, app.ConfigError) as exc:
        _fail(sys.stderr, str(exc))
        return 2
    print(json.dumps(settings.redacted(), indent=2, default=str))
    return 0


def _fail(stream: TextIO, reason: str) -> None:
    stream.write(json.dumps({"error": reason}) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
