"""Settings: a YAML file plus environment overrides (LISGUARD_SECTION__KEY=value).

Precedence, highest first: environment, the YAML file, the defaults here. Defaults just work on a
laptop: MLLP on 2575, HTTP on 8080, SQLite under ./var/.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from lisguard.domain.alerts import Audience


def is_loopback(host: str) -> bool:
    """Whether a listen address reaches this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "" (all interfaces) or a name that may resolve anywhere


class TlsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cert_file: Path | None = None  # PEM server certificate (chain)
    key_file: Path | None = None
    client_ca_file: Path | None = None  # verify client certificates against this CA
    require_client_cert: bool = False

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None

    @model_validator(mode="after")
    def _no_silent_fallback(self) -> TlsSettings:
        # each of these would run with less protection than the file asks for, silently
        if self.require_client_cert and self.client_ca_file is None:
            raise ValueError(
                "require_client_cert needs client_ca_file: without a CA to verify against, "
                "clients without a certificate would be accepted"
            )
        if self.cert_file is None and (
            self.key_file or self.client_ca_file or self.require_client_cert
        ):
            raise ValueError("TLS settings without cert_file: TLS would be off")
        return self


class MllpSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 2575
    max_frame_bytes: int = 1024 * 1024
    idle_timeout_seconds: float = 300.0  # between frames; garbage bytes do not extend it
    max_connections: int = 1000
    # per sender address: one host cannot hold every connection (idle half-frames from one
    # address locked every other sender out); over it, a connection is closed at once. An
    # interface engine uses a few; 100 leaves room for one behind NAT with many channels
    max_connections_per_source: int = Field(default=100, ge=1)
    # a frame, from its first byte to its end, must arrive within this: bytes dribbled in one
    # at a time do not extend it (at 1 MB, the sender needs ~35 kB/s)
    frame_timeout_seconds: float = Field(default=30.0, gt=0)
    # senders allowed to connect (IP addresses or CIDR networks); empty: anyone who can reach
    # the port (restrict with a firewall, this list, and/or TLS client certificates)
    allowed_sources: list[str] = Field(default_factory=list)
    tls: TlsSettings = Field(default_factory=TlsSettings)

    @field_validator("allowed_sources")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise ValueError(
                    f"allowed_sources: {value!r} is not an IP address or CIDR network"
                ) from None
        return values

    @model_validator(mode="after")
    def _not_open_to_the_network(self) -> MllpSettings:
        # anyone who reaches an open MLLP port writes patient state and raises alerts
        # TLS alone proves the server to the sender, not the sender to us: client certificates
        if (
            self.enabled
            and not is_loopback(self.host)
            and not (self.allowed_sources or self.tls.require_client_cert)
        ):
            raise ValueError(
                f"mllp.host {self.host or '(all interfaces)'!r} listens beyond this machine "
                "with neither mllp.allowed_sources nor TLS client certificates: any host that "
                "reaches the port could write alerts. Set mllp.allowed_sources to the "
                "interface engine's address(es) (LISGUARD_MLLP__ALLOWED_SOURCES="
                "'[\"10.1.2.3\"]'), or mllp.tls with client_ca_file and require_client_cert"
            )
        return self


class HttpSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 16 * 1024 * 1024
    # every API route needs a token with the right role (lisguard token create); switch off
    # only on a closed test bench
    auth_required: bool = True
    max_failed_logins_per_minute: int = 10
    # browser sessions (POST /api/login, lisguard.web.sessions): one ends after this long
    # without a request (the open page refreshes every minute), and at the latest this long
    # after login (a long bench shift)
    session_idle_minutes: float = Field(default=30.0, gt=0)
    session_lifetime_hours: float = Field(default=12.0, gt=0)
    # the session cookie's Secure flag, and HSTS. None: when this service speaks TLS itself;
    # true behind a TLS-terminating proxy (also set delivery.public_url to the https address)
    secure_cookies: bool | None = None
    tls: TlsSettings = Field(default_factory=TlsSettings)


class StoreSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: SecretStr = SecretStr("sqlite:///var/lisguard.db")


ProcessingId = Literal["P", "T", "D"]  # MSH-11, HL7 table 0103


def _production_only() -> list[ProcessingId]:
    return ["P"]


class IngestSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # MSH-11 values taken (table 0103: P production, T training/test, D debugging); any other
    # gets AR (ERR 202). Alerts of T/D messages are marked test, kept apart from production
    # state, and not delivered unless a channel's test_alerts says so.
    processing_ids: list[ProcessingId] = Field(default_factory=_production_only, min_length=1)
    unknown_types: Literal["ignore", "reject"] = "ignore"
    # per message family or type: "process", "ignore" (AA, stored, not read) or "reject" (AR)
    type_actions: dict[str, Literal["process", "ignore", "reject"]] = Field(default_factory=dict)
    # Enhanced mode: MSH-15/16 (table 0155) are honoured by default, so NE and ER (on success)
    # get no ACK, as HL7 v2 ch. 2 says. True: a commit ACK goes back even when none was asked
    # (for a sender whose MLLP client waits for a reply whatever it declared).
    always_reply: bool = False
    app_name: str = "LISGUARD"


class KnowledgeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    files: list[Path] = Field(default_factory=list)  # site override files, applied in order
    # the base knowledge (drugs.yaml, tests.yaml, interpretation.yaml); None: the checkout's
    # config/knowledge. A non-editable install (the container image) ships it elsewhere.
    base_dir: Path | None = None


class LogSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["auto", "json", "console"] = "auto"
    level: str = "INFO"
    # key for the keyed hash of patient ids in logs. None (the default): a sub-key of the
    # install key (security.key_file), so each install has its own and nothing needs setting
    patient_hash_key: SecretStr | None = None


class RetentionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # raw message bytes (PHI) are emptied after this many days; the row (key, hash, ACK) stays
    raw_message_days: int | None = 90
    # audit events are kept longer (inspections); None keeps them forever
    audit_event_days: int | None = None
    # the database URL `lisguard purge` connects with: on PostgreSQL a role allowed to delete
    # audit events (lisguard db grants), which the service's role is not. None: store.url
    store_url: SecretStr | None = None


class AuditSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # signed anchors of the audit chain's head, one JSON line each (`lisguard audit anchor`,
    # checked by `lisguard audit verify`); keep it where the database's administrators cannot
    # write: another host, append-only storage, or ship each line to a log server as well
    anchor_file: Path = Path("var/audit-anchors.jsonl")
    # the running service appends an anchor this often; 0 switches that off. Deleting the
    # newest events is detectable back to the last anchor only
    anchor_interval_minutes: float = Field(default=60.0, ge=0)


class RetrySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # wait before attempt n+1: initial * 2**(n-1), capped at max; a down receiver is retried
    # until it answers (max_attempts 0) or max_attempts is reached (status "failed")
    initial_seconds: float = Field(default=2.0, gt=0)
    max_seconds: float = Field(default=300.0, gt=0)
    max_attempts: int = Field(default=0, ge=0)


class ChannelRestriction(BaseModel):
    """Which lead alerts a delivery channel takes (lisguard.alerting.routing.ChannelRoute)."""

    # only alerts of these audiences, e.g. [clinic] for the clinic's receiver; empty: every one
    audiences: list[Audience] = Field(default_factory=list)
    # only alerts whose location (PV1-3 point of care, as stored) is one of these, compared
    # after strip and case-insensitively, e.g. [4W, ONC]; empty: every location (an alert
    # without a location goes only to channels with no list)
    locations: list[str] = Field(default_factory=list)

    @field_validator("locations")
    @classmethod
    def _named_locations(cls, values: list[str]) -> list[str]:
        stripped = [v.strip() for v in values]
        if any(not v for v in stripped):
            # one reader takes [""] for "alerts without a location", another for "all": refuse it
            raise ValueError("locations: an entry is empty (leave the list empty for all)")
        return stripped


class WebhookSettings(ChannelRestriction):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    url: str = ""  # POST target, e.g. https://paging.example.org/lisguard
    # Standard Webhooks signing secret, "whsec_" + base64 of 24-64 random bytes (lisguard.transport
    # .webhook); it also keys the deprecated X-Lisguard-Signature header for this release
    secret: SecretStr | None = None
    timeout_seconds: float = Field(default=10.0, gt=0)
    # also POST alerts of test messages (MSH-11 T/D, `"test": true`): only to a test receiver
    test_alerts: bool = False


class Hl7OutboundSettings(ChannelRestriction):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    host: str = ""
    port: int = Field(default=0, ge=0, le=65535)
    receiving_application: str = ""  # MSH-5
    receiving_facility: str = ""  # MSH-6
    sending_facility: str = ""  # MSH-4
    ack_timeout_seconds: float = Field(default=30.0, gt=0)
    # what an AE or AR ACK means: try again later ("retry") or give up ("fail")
    on_ae: Literal["retry", "fail"] = "fail"
    on_ar: Literal["retry", "fail"] = "retry"
    # also send alerts of test messages (MSH-11 T/D; the ORU carries that MSH-11): only to a
    # test receiver
    test_alerts: bool = False


class DeliverySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # where links in delivered alerts point (the technologist page and the API)
    public_url: str = "http://127.0.0.1:8080"
    # identical alerts (same patient, rule, recommendations) within this many hours of an
    # unresolved lead alert collapse into it with a count; 0 switches collapsing off
    collapse_window_hours: float = Field(default=12.0, ge=0)
    poll_seconds: float = Field(default=1.0, gt=0)  # how often workers look for due rows
    lease_seconds: float = Field(default=120.0, gt=0)  # a claimed row is retried after this
    retry: RetrySettings = Field(default_factory=RetrySettings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    hl7: Hl7OutboundSettings = Field(default_factory=Hl7OutboundSettings)


# JWS algorithms an EHR may sign its CDS Hooks JWT with (asymmetric only: a shared secret would
# let anyone who holds it mint EHR tokens; "none" is never accepted)
CdsAlgorithm = Literal["RS384", "ES384", "RS256", "ES256", "RS512", "ES512", "PS384", "PS256"]


def _cds_algorithms() -> list[CdsAlgorithm]:
    return ["RS384", "ES384"]  # what CDS Hooks 2.0 asks every service to support


class CdsSettings(BaseModel):
    """CDS Hooks (lisguard.web.cds_hooks): cards at order entry for the EHRs named here."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    # the EHR's public keys (a JWKS document): a file (offline), or a URL fetched and cached
    jwks_file: Path | None = None
    jwks_url: str = ""
    # the `iss` values accepted (the EHRs), e.g. [https://ehr.example.org]
    issuers: list[str] = Field(default_factory=list)
    # the `aud` the EHR must send: this service's CDS Hooks URL; "" is delivery.public_url +
    # /cds-services. A token for one service's own URL (.../cds-services/{id}) is taken too
    audience: str = ""
    algorithms: list[CdsAlgorithm] = Field(default_factory=_cds_algorithms, min_length=1)
    clock_skew_seconds: float = Field(default=60.0, ge=0)
    # how long keys fetched from jwks_url are used before they are fetched again (a key id not
    # in the set refetches sooner); when the URL cannot be reached, the last keys stay in use
    jwks_cache_seconds: float = Field(default=3600.0, gt=0)

    @model_validator(mode="after")
    def _keys_and_issuers(self) -> CdsSettings:
        if self.enabled and not (self.jwks_file or self.jwks_url):
            raise ValueError("cds.enabled needs cds.jwks_file or cds.jwks_url: the EHR's keys")
        if self.enabled and not self.issuers:
            raise ValueError("cds.enabled needs cds.issuers: the EHRs' JWT `iss` values")
        return self


class EscalationRoute(ChannelRestriction):
    """A delivery channel that also gets escalations, and which (lisguard.alerting.escalation)."""

    model_config = ConfigDict(extra="forbid")

    # an enabled delivery channel (delivery.webhook or delivery.hl7): its receiver gets the
    # escalation as a second delivery of the alert, marked escalated
    channel: Literal["webhook", "hl7"]


class EscalationSettings(BaseModel):
    """HIGH alerts still open this long after they were raised escalate: a banner on every
    page, a browser notification, and the channels listed here (lisguard.alerting.escalation)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    # minutes from the alert's creation to its escalation while nobody acknowledged it
    after_minutes: float = Field(default=15.0, gt=0)
    # how often a worker asks the store for HIGH alerts open past after_minutes
    check_seconds: float = Field(default=15.0, gt=0)
    channels: list[EscalationRoute] = Field(default_factory=list)

    @field_validator("channels")
    @classmethod
    def _each_channel_once(cls, routes: list[EscalationRoute]) -> list[EscalationRoute]:
        names = [r.channel for r in routes]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"channels: {', '.join(twice)} listed more than once")
        return routes


class DeskSettings(BaseModel):
    """The technologist's queue (lisguard.domain.triage)."""

    model_config = ConfigDict(extra="forbid")

    # baseline work-up reminders whose first dose or order is older than this many days go to
    # the page's collapsed "Background" section, apart from the bench's work; 0: never
    background_after_days: float = Field(default=7.0, ge=0)


# keys that were printed in docs or defaults of earlier versions: anyone can reverse them
PUBLISHED_KEYS = frozenset({"lisguard-dev-key", "change-me-to-a-long-random-secret"})


class SecuritySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # the per-install secret (lisguard.keys): keys the audit chain, anchors and log pseudonyms.
    # Kept outside the database; generated on first start unless `production` is true.
    key_file: Path = Path("var/lisguard.key")
    key: SecretStr | None = None  # the key itself (64 hex), e.g. from a secret store
    # production: refuse to start without an install key made and backed up beforehand, and
    # refuse the settings that are only for a test bench (auth off, the published dev key)
    production: bool = False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LISGUARD_", env_nested_delimiter="__", extra="forbid"
    )
    _yaml_file: ClassVar[Path | None] = None

    mllp: MllpSettings = Field(default_factory=MllpSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    knowledge: KnowledgeSettings = Field(default_factory=KnowledgeSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    cds: CdsSettings = Field(default_factory=CdsSettings)
    desk: DeskSettings = Field(default_factory=DeskSettings)
    escalation: EscalationSettings = Field(default_factory=EscalationSettings)

    @model_validator(mode="after")
    def _escalation_channels_are_on(self) -> Settings:
        if not self.escalation.enabled:
            return self
        for route in self.escalation.channels:
            if not getattr(self.delivery, route.channel).enabled:
                raise ValueError(
                    f"escalation.channels: {route.channel!r} is not switched on: set"
                    f" delivery.{route.channel}.enabled (and its receiver), or leave it out"
                )
        return self

    @model_validator(mode="after")
    def _production_is_not_a_test_bench(self) -> Settings:
        if not self.security.production:
            return self
        problems = []
        if self.http.enabled and not self.http.auth_required:
            problems.append("http.auth_required is false")
        hash_key = self.log.patient_hash_key
        if hash_key is not None and hash_key.get_secret_value() in PUBLISHED_KEYS:
            problems.append("log.patient_hash_key is a published example key")
        if problems:
            raise ValueError("security.production is true but " + "; ".join(problems))
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls._yaml_file is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=cls._yaml_file))
        return tuple(sources)

    @classmethod
    def load(cls, path: Path | None = None) -> Settings:
        """Settings from `path` (YAML) with environment overrides; relative paths in the file
        are taken relative to the file's directory."""
        if path is not None and not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        cls._yaml_file = path
        try:
            settings = cls()
        finally:
            cls._yaml_file = None
        if path is not None:
            base = path.resolve().parent
            settings.knowledge.files = [
                f if f.is_absolute() else base / f for f in settings.knowledge.files
            ]
            kb_dir = settings.knowledge.base_dir
            if kb_dir is not None and not kb_dir.is_absolute():
                settings.knowledge.base_dir = base / kb_dir
        return settings

    def redacted(self) -> dict[str, Any]:
        """The effective settings as plain data, secrets hidden."""
        data = self.model_dump(mode="json")
        data["store"]["url"] = redact_url(self.store.url.get_secret_value())
        data["log"]["patient_hash_key"] = "***" if self.log.patient_hash_key else None
        data["security"]["key"] = "***" if self.security.key is not None else None
        retention_url = self.retention.store_url
        if retention_url is not None:
            data["retention"]["store_url"] = redact_url(retention_url.get_secret_value())
        return data


def redact_url(url: str) -> str:
    """Hide a password in a database URL."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)
