"""Settings: a YAML file plus environment overrides (LISGUARD_SECTION__KEY=value).

Precedence, highest first: environment, the YAML file, the defaults here. Defaults just work on a
laptop: MLLP on 2575, HTTP on 8080, SQLite under ./var/.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)


class TlsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cert_file: Path | None = None  # PEM server certificate (chain)
    key_file: Path | None = None
    client_ca_file: Path | None = None  # verify client certificates against this CA
    require_client_cert: bool = False

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None


class MllpSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 2575
    max_frame_bytes: int = 1024 * 1024
    idle_timeout_seconds: float = 300.0
    max_connections: int = 1000
    # senders allowed to connect (IP addresses or CIDR networks); empty: anyone who can reach
    # the port (restrict with a firewall, this list, and/or TLS client certificates)
    allowed_sources: list[str] = Field(default_factory=list)
    tls: TlsSettings = Field(default_factory=TlsSettings)


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
    tls: TlsSettings = Field(default_factory=TlsSettings)


class StoreSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: SecretStr = SecretStr("sqlite:///var/lisguard.db")


class IngestSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    processing_ids: list[str] = Field(default_factory=lambda: ["P", "T", "D"])
    unknown_types: Literal["ignore", "reject"] = "ignore"
    # per message family or type: "process", "ignore" (AA, stored, not read) or "reject" (AR)
    type_actions: dict[str, Literal["process", "ignore", "reject"]] = Field(default_factory=dict)
    always_reply: bool = True
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
    # key for the keyed hash of patient ids in logs; set it in production (env or secret file)
    patient_hash_key: SecretStr = SecretStr("lisguard-dev-key")


class RetentionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # raw message bytes (PHI) are emptied after this many days; the row (key, hash, ACK) stays
    raw_message_days: int | None = 90
    # audit events are kept longer (inspections); None keeps them forever
    audit_event_days: int | None = None


class RetrySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # wait before attempt n+1: initial * 2**(n-1), capped at max; a down receiver is retried
    # until it answers (max_attempts 0) or max_attempts is reached (status "failed")
    initial_seconds: float = Field(default=2.0, gt=0)
    max_seconds: float = Field(default=300.0, gt=0)
    max_attempts: int = Field(default=0, ge=0)


class WebhookSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    url: str = ""  # POST target, e.g. https://paging.example.org/lisguard
    # HMAC-SHA256 key: the X-Lisguard-Signature header is "sha256=" + hex over the raw body
    secret: SecretStr | None = None
    timeout_seconds: float = Field(default=10.0, gt=0)


class Hl7OutboundSettings(BaseModel):
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
        data["log"]["patient_hash_key"] = "***"
        data["security"]["key"] = "***" if self.security.key is not None else None
        return data


def redact_url(url: str) -> str:
    """Hide a password in a database URL."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)
