"""Composition root: settings -> store, knowledge, ingest service, servers. No import-time work."""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
from collections.abc import Iterator, Sequence
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Protocol, TextIO

import structlog
from aiohttp import web

from lisguard.alerting.escalation import EscalationPolicy, EscalationWorker
from lisguard.domain.audit_anchor import AnchorError, AuditKeys, anchor_line
from lisguard.domain.knowledge import KnowledgeBase, KnowledgeBaseError, load_knowledge_base
from lisguard.domain.knowledge_holder import KnowledgeHolder
from lisguard.hl7v2.files import read_messages
from lisguard.intake import Reading
from lisguard.keys import InstallKey, InstallKeyError, load_install_key
from lisguard.logs import configure_logging
from lisguard.reload import Reloader, ReloadRefused
from lisguard.reload import ingest_policy as ingest_policy  # re-exported: cli, validate
from lisguard.screening import Screened, Screening
from lisguard.services import Ingestor, IngestPolicy
from lisguard.settings import Settings, TlsSettings
from lisguard.store import StoreError, open_store
from lisguard.store.audit_chain import AnchorFile, AnchorRefused, anchor_now, verify_audit_log
from lisguard.transport.delivery import Delivery
from lisguard.transport.http import start_http
from lisguard.transport.metrics import Metrics
from lisguard.transport.mllp import MllpServer, msa_code, send_files
from lisguard.web import api as alert_api
from lisguard.web import audit_api, auth, escalation_api, messages_api, routes
from lisguard.web import queue as desk_queue

log = structlog.get_logger("lisguard")


class ConfigError(Exception):
    """A configuration or knowledge-base file is wrong; the message says which and where."""


def load_knowledge(files: Sequence[Path], base_dir: Path | None = None) -> KnowledgeBase:
    try:
        return load_knowledge_base(list(files), base_dir=base_dir)
    except KnowledgeBaseError as exc:
        raise ConfigError(str(exc)) from exc


PSEUDONYM_PURPOSE = "log-pseudonym"  # the install key's sub-key for patient ids in logs


def install_key(settings: Settings, *, create: bool = True) -> InstallKey:
    """The install key (lisguard.keys); its absence or a bad key file is a ConfigError."""
    try:
        return load_install_key(settings.security, create=create)
    except InstallKeyError as exc:
        raise ConfigError(str(exc)) from exc


def check(
    files: Sequence[Path],
    knowledge: Sequence[Path],
    out: TextIO,
    err: TextIO,
    *,
    knowledge_dir: Path | None = None,
    policy: IngestPolicy | None = None,
) -> int:
    """`lisguard check`: the alerts `serve` would raise on these files, in order, as JSON lines
    on `out`; unreadable or refused messages on `err`. Exit status 1 when a file cannot be read."""
    kb = load_knowledge(knowledge, knowledge_dir)
    return screen_files(files, Screening(kb, policy), _CheckPrinter(out, err))


class FeedObserver(Protocol):
    """What `screen_files` tells as it goes: each message (its reading and what screening made
    of it, alerts included) and each file it could not read a message from."""

    def message(self, path: Path, index: int, reading: Reading, result: Screened) -> None: ...

    def file_problem(self, path: Path, error: str) -> None: ...


def screen_files(files: Sequence[Path], screening: Screening, observer: FeedObserver) -> int:
    """The loop of `lisguard check` (and of `lisguard validate`, which watches it): every
    message of every file, in order, through one screening. 1 when a file cannot be read."""
    status = 0
    for path in files:
        index = 0
        try:
            for index, text in enumerate(_file_messages(path), 1):
                reading = screening.read(text)
                observer.message(path, index, reading, screening.screen_reading(reading))
        except OSError as exc:
            observer.file_problem(path, f"cannot read: {exc.strerror or exc}")
            status = 1
            continue
        if index == 0:
            observer.file_problem(path, "no HL7 message found")
    return status


class _CheckPrinter:
    """check's output: one JSON alert per line on `out`, problems as JSON lines on `err`."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out, self.err = out, err

    def message(self, path: Path, index: int, reading: Reading, result: Screened) -> None:
        if result.error:
            problem = {
                "file": str(path),
                "index": index,
                "message": result.control_id,
                "outcome": result.outcome,
                "error": result.error,
            }
            self.err.write(json.dumps(problem) + "\n")
        for alert in result.alerts:
            self.out.write(json.dumps(alert.to_json_dict()) + "\n")

    def file_problem(self, path: Path, error: str) -> None:
        self.err.write(json.dumps({"file": str(path), "error": error}) + "\n")


CHECK_CHUNK = 1 << 20  # bytes read at a time: a file of any size is checked in bounded memory


def _file_messages(path: Path) -> Iterator[str]:
    """The messages of a file, read a chunk at a time, twice (see lisguard.hl7v2.files). A pipe
    or a device (`lisguard check <(zcat day.hl7.gz)`, /dev/stdin) can be read only once: it is
    read whole."""
    if not path.is_file():
        data = path.read_bytes()
        yield from read_messages(lambda: (data,))
        return

    def chunks() -> Iterator[bytes]:
        with path.open("rb") as file:
            yield from iter(partial(file.read, CHECK_CHUNK), b"")

    yield from read_messages(chunks)


def server_ssl(tls: TlsSettings) -> ssl.SSLContext | None:
    if tls.cert_file is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.client_ca_file is not None:
        ctx.load_verify_locations(tls.client_ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_OPTIONAL
    return ctx


class Service:
    """The running service: store, ingest, MLLP and HTTP listeners. `start` then `stop`."""

    def __init__(
        self, settings: Settings, key: InstallKey | None = None, config_path: Path | None = None
    ) -> None:
        self.settings = settings
        # the one holder every reader asks (ingest, pages, CDS Hooks, FHIR): a reload swaps it
        self.knowledge = KnowledgeHolder(
            load_knowledge(settings.knowledge.files, settings.knowledge.base_dir)
        )
        # the audit chain is keyed with a secret the database does not hold; anchors of its
        # head go to a file outside it (lisguard.store.audit_chain)
        self.audit_keys = AuditKeys.of(key or install_key(settings))
        self.anchors = AnchorFile(settings.audit.anchor_file)
        self.store = open_store(
            settings.store.url.get_secret_value(), audit_key=self.audit_keys.chain
        )
        self.metrics = Metrics()
        try:  # outbox channels (webhook, HL7) and the snooze/collapse routing of new alerts
            self.delivery = Delivery(
                self.store, settings.delivery, self.metrics, escalation=settings.escalation
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        self.ingestor = Ingestor(
            self.store, self.knowledge, ingest_policy(settings), routing=self.delivery.routing
        )
        self.ingestor.listeners.append(self.delivery.on_alerts)
        # SIGHUP and the admin API: the settings file's knowledge and ingest sections again
        self.reloader = Reloader(self.ingestor, settings, config_path)
        self.mllp: MllpServer | None = None
        self.http: web.AppRunner | None = None
        self.mllp_port: int | None = None
        self.http_port: int | None = None
        self._anchoring: asyncio.Task[None] | None = None
        # HIGH alerts left open too long escalate, once, whichever replica sees it first
        self.escalation = EscalationWorker(
            self.store,
            EscalationPolicy(
                timedelta(minutes=settings.escalation.after_minutes),
                routes=self.delivery.escalation_routes,
            ),
            check_seconds=settings.escalation.check_seconds,
        )

    @property
    def kb(self) -> KnowledgeBase:
        return self.knowledge.kb

    async def start(self) -> None:
        s = self.settings
        await self.store.open()
        if s.audit.anchor_interval_minutes > 0:
            self._anchoring = asyncio.create_task(
                self._anchor_every(s.audit.anchor_interval_minutes * 60)
            )
        if s.mllp.enabled:
            self.mllp = MllpServer(
                self.ingestor, s.mllp, metrics=self.metrics, ssl_context=server_ssl(s.mllp.tls)
            )
            await self.mllp.start()
            self.mllp_port = self.mllp.port
        if s.http.enabled:
            # FHIR models and JWT crypto take 0.3 s to import: `serve` only, not `lisguard check`
            from lisguard.web import cds_hooks, fhir_api

            self.http = await start_http(
                self.ingestor,
                s.http,
                metrics=self.metrics,
                ssl_context=server_ssl(s.http.tls),
                extensions=[
                    partial(
                        auth.install,
                        store=self.store,
                        http=s.http,  # tokens, sessions, cross-site checks, security headers
                        public_url=s.delivery.public_url,
                    ),
                    partial(
                        audit_api.install,
                        store=self.store,
                        verifier=partial(
                            verify_audit_log, self.store, self.audit_keys, self.anchors
                        ),
                    ),
                    partial(routes.install, ingestor=self.ingestor),  # technologist page
                    partial(  # message browser, replay, knowledge reload
                        messages_api.install, ingestor=self.ingestor, reloader=self.reloader
                    ),
                    partial(  # the escalation banner's data (every page)
                        escalation_api.install, store=self.store, settings=s.escalation
                    ),
                    partial(desk_queue.install, desk=s.desk),  # the queue's site settings
                    partial(  # CDS Hooks cards at order entry (the EHR's JWT)
                        cds_hooks.install,
                        ingestor=self.ingestor,
                        settings=s.cds,
                        public_url=s.delivery.public_url,
                    ),
                    partial(  # alerts as FHIR DetectedIssue
                        fhir_api.install, ingestor=self.ingestor, public_url=s.delivery.public_url
                    ),
                ],
            )
            self.http_port = _bound_port(self.http)
        live = self.http.app.get(alert_api.LIVE) if self.http is not None else None
        self.delivery.start([live.changed] if live is not None else [])
        if s.escalation.enabled:
            if live is not None:
                self.escalation.listeners.append(partial(escalation_api.announce, live))
            self.escalation.listeners.append(self.delivery.on_alerts)  # wake the workers
            self.escalation.start()
        log.info(
            "started",
            mllp_port=self.mllp_port,
            http_port=self.http_port,
            store=type(self.store).__name__,
        )

    async def stop(self) -> None:
        """Stop accepting, finish in-flight messages, close the store."""
        if self.mllp is not None:
            await self.mllp.stop()
        await self.escalation.stop()  # before delivery: its outbox rows get the last try too
        await self.delivery.stop()  # one last try of pending deliveries, then the workers end
        if self.http is not None:
            await self.http.cleanup()
        if self._anchoring is not None:
            self._anchoring.cancel()
            await asyncio.gather(self._anchoring, return_exceptions=True)
        await self.store.close()
        log.info("stopped")

    async def _anchor_every(self, seconds: float) -> None:
        """Anchor the audit chain's head periodically: deleting the newest events is
        detectable back to the last anchor only. A refusal is an alarm, not a crash."""
        while True:
            await asyncio.sleep(seconds)
            try:
                anchor = await anchor_now(self.store, self.audit_keys, self.anchors)
            except AnchorRefused as exc:
                log.error("audit_anchor_refused", problems=exc.problems)
            except (StoreError, AnchorError, OSError) as exc:
                log.error("audit_anchor_failed", error=str(exc))
            else:
                # the signed line in the log too: a log server is a second copy the database's
                # administrators do not write (`lisguard audit verify --anchor-file` reads it)
                log.info(
                    "audit_anchored",
                    seq=anchor.seq,
                    events=anchor.events,
                    anchor=anchor_line(anchor),
                )


def _bound_port(runner: web.AppRunner) -> int | None:
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    return None


async def serve(settings: Settings, config_path: Path | None = None) -> int:
    """`lisguard serve`: run until SIGTERM/SIGINT, then stop accepting and finish in-flight work.
    SIGHUP reloads the knowledge base and the ingest settings (lisguard.reload)."""
    key = install_key(settings)
    configure_logging(settings.log, key.derive(PSEUDONYM_PURPOSE))
    if key.generated:
        log.warning(
            "install_key_generated",
            path=key.source,
            advice="back this file up: the audit chain cannot be verified without it",
        )
    service = Service(settings, key, config_path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task[None]] = set()  # held until done: the loop keeps weak references

    def hangup() -> None:
        task = asyncio.create_task(_reload_on_signal(service.reloader))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, hangup)
    try:
        await service.start()
        await stop.wait()
        log.info("stopping")
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        await asyncio.gather(*reloads, return_exceptions=True)
        await service.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return 0


async def _reload_on_signal(reloader: Reloader) -> None:
    """SIGHUP: reload; a refusal is logged by the reloader (the old knowledge stays)."""
    try:
        await reloader.reload(by="SIGHUP")
    except ReloadRefused:
        pass
    except StoreError as exc:  # reloaded, but its audit event could not be written
        log.error("reload_not_audited", error=str(exc))


async def send(
    files: Sequence[Path],
    host: str,
    port: int,
    ack_timeout: float,
    use_tls: bool = False,
    ca_file: Path | None = None,
) -> int:
    """`lisguard send`: each message of each file over MLLP; prints each ACK's MSA line."""
    ctx: ssl.SSLContext | None = None
    if use_tls:
        ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    worst = 0
    async for name, control_id, ack in send_files(files, host, port, ack_timeout, ctx):
        msa = next((s for s in ack.split("\r") if s.startswith("MSA")), "MSA|?")
        print(f"{name}\t{control_id}\t{msa}")
        if msa_code(ack) not in ("AA", "CA"):
            worst = 1
    return worst
