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
    tls: TlsSettings = Field(default_factory=TlsSettings)


class HttpSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 16 * 1024 * 1024
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


class LogSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["auto", "json", "console"] = "auto"
    level: str = "INFO"
    # key for the keyed hash of patient ids in logs; set it in production (env or secret file)
    patient_hash_key: SecretStr = SecretStr("lisguard-dev-key")


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
        return settings

    def redacted(self) -> dict[str, Any]:
        """The effective settings as plain data, secrets hidden."""
        data = self.model_dump(mode="json")
        data["store"]["url"] = redact_url(self.store.url.get_secret_value())
        data["log"]["patient_hash_key"] = "***"
        return data


def redact_url(url: str) -> str:
    """Hide a password in a database URL."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)
