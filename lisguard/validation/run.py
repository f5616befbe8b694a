"""`lisguard validate FEED... --out DIR`: the I/O around the pure parts. Expands directories,
runs the files through `lisguard check`'s loop (app.screen_files: the same reading, rules and
duplicate handling) with the site's settings, watches it with a Collector, hashes what was
validated, and writes DIR/report.json and DIR/report.html."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

from lisguard import app
from lisguard.domain.kb_loader import BASE_FILES
from lisguard.domain.knowledge import DEFAULT_KNOWLEDGE_DIR
from lisguard.domain.knowledge_holder import knowledge_fingerprint
from lisguard.intake import Reading
from lisguard.screening import Screened, Screening
from lisguard.settings import Settings
from lisguard.validation.collect import Collector
from lisguard.validation.figures import figures
from lisguard.validation.page import render_page

_STARTS = (b"MSH", b"FHS", b"BHS")
_SNIFF = 4096


def validate(
    feeds: Sequence[Path],
    out_dir: Path,
    settings: Settings,
    *,
    config: Path | None = None,
    sample: int = 20,
    seed: int = 0,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    command: str = "",
) -> int:
    """Exit status as check's: 0, or 1 when a feed file cannot be read (the report is written
    either way; an unreadable file is in it)."""
    if sample < 0:
        raise app.ConfigError("--sample must be 0 or more")
    files, skipped = feed_files(feeds)
    if not files:
        raise app.ConfigError("no feed file found in " + ", ".join(map(str, feeds)))
    site_files = list(settings.knowledge.files)
    kb = app.load_knowledge(site_files, settings.knowledge.base_dir)
    collector = Collector(kb, sample_size=sample, seed=seed)
    progress = Progress(err, sum(_size(f) for f in files))
    screening = Screening(kb, app.ingest_policy(settings))
    status = app.screen_files(files, screening, _Watched(collector, progress))
    progress.finish()
    report: dict[str, Any] = {
        "report": "lisguard validation",
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "lisguard_version": _version(),
        **figures(collector),
        "inputs": {
            "files": [
                {"path": str(f), "bytes": _size(f), "messages": collector.per_file.get(str(f), 0),
                 "sha256": _sha256(f)}
                for f in files
            ],
            "skipped": [str(s) for s in skipped],
            # bounded memory: resends are recognised among the newest keys only (screening)
            "resend_memory": {"keys": screening.resend_memory, "forgotten": screening.forgotten},
        },
    }
    report["sign_off"] = {
        "lisguard_version": report["lisguard_version"],
        "knowledge_base": _knowledge(settings, site_files, knowledge_fingerprint(kb)),
        "configuration": {
            "file": str(config) if config is not None else "",
            "file_sha256": _sha256(config) if config is not None else "",
            "effective_sha256": _digest(json.dumps(settings.redacted(), sort_keys=True,
                                                   default=str).encode()),
        },
        "command": command,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    _write(out_dir / "report.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    _write(out_dir / "report.html", render_page(report))
    unmapped = len(report["unmapped"]["tests"]) + len(report["unmapped"]["drugs"])
    out.write(
        f"{out_dir / 'report.html'}: {collector.messages:,} messages, "
        f"{report['alerts']['total']:,} alerts, {unmapped:,} unmapped candidates\n"
    )
    return status


def feed_files(paths: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """The files to read, in order: a named file as it is (check reads any file, a pipe too);
    a directory's files below it, by name, without hidden ones, and only those that start
    with MSH, FHS or BHS (after a BOM, blanks or an MLLP start byte): a README, an expected
    results file, is skipped and listed as such."""
    files: list[Path] = []
    skipped: list[Path] = []
    for path in paths:
        if not path.is_dir():
            files.append(path)
            continue
        for found in sorted(p for p in path.rglob("*") if p.is_file()):
            if any(part.startswith(".") for part in found.relative_to(path).parts):
                continue
            (files if _looks_like_hl7(found) else skipped).append(found)
    return files, skipped


def _looks_like_hl7(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(_SNIFF)
    except OSError:
        return True  # let the reader report why it cannot be read
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True  # UTF-16: the reader decides
    head = head.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n\x0b\x1c")
    return head.startswith(_STARTS)


class Progress:
    """A progress bar on stderr when it is a terminal; otherwise a plain line every 30 seconds
    (a cron job's log), nothing for a short run."""

    def __init__(self, stream: TextIO, total_bytes: int, *, every: float = 30.0) -> None:
        self.stream, self.total = stream, max(total_bytes, 1)
        self.tty = stream.isatty()
        self.every = 0.25 if self.tty else every
        self.start = self._last = time.monotonic()
        self.done_bytes = self.file_bytes = self.messages = 0
        self._in_file = 0
        self.path = ""
        self._shown = False

    def message(self, path: Path, reading: Reading) -> None:
        name = str(path)
        if name != self.path:
            self.done_bytes += self.file_bytes
            self.path, self.file_bytes = name, _size(path)
            self._in_file = 0
        self.messages += 1
        msg = reading.message
        if msg is not None and self.messages % 64 == 0:  # a sample is enough for a bar
            self._in_file += 64 * sum(len(s.raw) + 1 for s in msg.segments)
        if self.messages % 512 == 0:
            now = time.monotonic()
            if now - self._last >= self.every:
                self._last = now
                self._show(now)

    def _show(self, now: float) -> None:
        at = min(self.done_bytes + min(self._in_file, self.file_bytes), self.total)
        share = at / self.total
        rate = self.messages / max(now - self.start, 1e-6)
        eta = (now - self.start) * (1 - share) / share if share > 0 else 0.0
        text = (
            f"{share:6.1%} {self.messages:,} messages, {rate:,.0f}/s, "
            f"about {_duration(eta)} left ({Path(self.path).name})"
        )
        if self.tty:
            filled = int(share * 30)
            self.stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {text}\x1b[K")
        else:
            self.stream.write(f"validate: {text}\n")
        self.stream.flush()
        self._shown = True

    def finish(self) -> None:
        if self.tty and self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


class _Watched:
    """The collector and the progress bar as one observer of check's loop."""

    def __init__(self, collector: Collector, progress: Progress) -> None:
        self.collector, self.progress = collector, progress

    def message(self, path: Path, index: int, reading: Reading, result: Screened) -> None:
        self.collector.message(path, index, reading, result)
        self.progress.message(path, reading)

    def file_problem(self, path: Path, error: str) -> None:
        self.collector.file_problem(path, error)


def _knowledge(settings: Settings, site_files: list[Path], fingerprint: str) -> dict[str, Any]:
    """The knowledge base validated: its version as the running service shows it (a digest of
    every fact loaded: GET /api/knowledge, the printed slip), and its files' hashes."""
    base = settings.knowledge.base_dir or DEFAULT_KNOWLEDGE_DIR
    files = [{"path": str(base / n), "sha256": _sha256(base / n)} for n in BASE_FILES]
    files += [{"path": str(p), "sha256": _sha256(p)} for p in site_files]
    combined = _digest("".join(f"{Path(f['path']).name}\0{f['sha256']}\n" for f in files).encode())
    sites = f" + {len(site_files)} site file(s)" if site_files else ", no site file"
    return {
        "version": fingerprint,
        "description": f"lisguard {_version()} knowledge base ({base}){sites}",
        "sha256": combined,
        "files": files,
    }


def _version() -> str:
    try:
        return metadata.version("lisguard")
    except metadata.PackageNotFoundError:
        return "unknown"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size if path.is_file() else 0
    except OSError:
        return 0


def _sha256(path: Path) -> str:
    """The file's SHA-256; "" for what is not a regular file (a pipe is read once, by check)."""
    if not path.is_file():
        return ""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return ""
    return digest.hexdigest()


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _write(path: Path, text: str) -> None:
    """Written whole or not at all: a report is never left half written."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
