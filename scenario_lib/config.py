"""Settings: one object, read once at an entry point (CLI, flow), passed down as typed values.

Environment variables use the prefix ``SCENARIOS_`` and ``__`` between levels, e.g.
``SCENARIOS_STORE__URL=s3://bucket/prefix`` or ``SCENARIOS_LLM__PROVIDER=openai``. A settings file
(``scenarios.toml`` in the working directory, or the path in ``SCENARIOS_CONFIG``) is read too;
environment variables win. Library functions never read the environment themselves.
"""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

ENV_PREFIX = "SCENARIOS_"
PACKAGED_MJCF_SCHEMA = Path(__file__).parent / "data" / "mjcf.xsd"
DEFAULT_CONFIG_FILE = "scenarios.toml"


class SandboxMode(str, Enum):
    """How untrusted scripts are isolated.

    BWRAP: bubblewrap namespaces (no network, read-only root, private /tmp) and an unprivileged uid;
    required in production. RLIMITS: a plain child process with resource limits only, for machines
    without bubblewrap; it does not block the network or file writes, so never use it for LLM code.
    AUTO: BWRAP when it works here, else refuse (set RLIMITS explicitly to accept the weaker mode).
    """

    AUTO = "auto"
    BWRAP = "bwrap"
    RLIMITS = "rlimits"


class SandboxSettings(BaseModel):
    mode: SandboxMode = SandboxMode.AUTO
    workers: int = Field(default=2, ge=1, le=64)
    memory_limit_mb: int = Field(default=2048, ge=256)
    cpu_limit_s: int = Field(default=60, ge=1)
    wall_limit_s: float = Field(default=120.0, gt=0)
    max_output_mb: int = Field(default=256, ge=1)


class ValidationSettings(BaseModel):
    seeds: int = Field(default=8, ge=1, le=1000)
    scale_low: float = Field(default=0.5, gt=0)
    scale_high: float = Field(default=2.0, gt=0)
    mjcf_schema_path: Path | None = PACKAGED_MJCF_SCHEMA
    sim_duration_s: float = Field(default=1.0, gt=0)
    render_preview: bool = True
    # Processes that run the trusted stages beside the host (None: one per CPU the process may use).
    check_workers: int | None = Field(default=None, ge=1, le=64)
    # A running `scenarios serve-validation` to validate on (the local stack starts one); None: in-process.
    service_socket: Path | None = None
    decomposition_cache_dir: Path = Path.home() / ".cache" / "scenario_lib" / "coacd"


class StoreSettings(BaseModel):
    url: str = "file://./datasets"
    endpoint_url: str | None = None
    access_key: SecretStr | None = None
    secret_key: SecretStr | None = None


class LlmProvider(str, Enum):
    OFFLINE = "offline"
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    GEMINI = "gemini"


class LlmSettings(BaseModel):
    provider: LlmProvider = LlmProvider.OFFLINE
    model: str | None = None
    base_url: str | None = None
    api_key: SecretStr | None = None
    temperature: float = Field(default=0.2, ge=0, le=2)
    max_attempts: int = Field(default=4, ge=1, le=20)
    # A folder with planner.md / coder.md / reviewer.md replacing those roles' instructions.
    prompt_dir: str | None = None


class TraceExporter(str, Enum):
    NONE = "none"
    FILE = "file"
    OTLP_HTTP = "otlp_http"


class TracingSettings(BaseModel):
    exporter: TraceExporter = TraceExporter.FILE
    file_path: str = "traces/spans.jsonl"
    otlp_endpoint: str = "http://127.0.0.1:4318/v1/traces"
    capture_content: bool = True


class Settings(BaseSettings):
    """Every setting of the product, grouped by area."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
    )

    sandbox: SandboxSettings = SandboxSettings()
    validation: ValidationSettings = ValidationSettings()
    store: StoreSettings = StoreSettings()
    llm: LlmSettings = LlmSettings()
    tracing: TracingSettings = TracingSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = os.environ.get(f"{ENV_PREFIX}CONFIG", DEFAULT_CONFIG_FILE)
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=config_file),
        )

    def secret_values(self) -> list[str]:
        """Every configured secret (the model's API key, the store's keys), to scrub from traces and logs."""
        secrets = (self.llm.api_key, self.store.access_key, self.store.secret_key)
        return [secret.get_secret_value() for secret in secrets if secret is not None and secret.get_secret_value()]


def summarize_validation_error(err: ValidationError, *, prefix: str = "", with_input: bool = True) -> str:
    """The problems of a ValidationError (settings, parameters) on one line: ``where: what (got value)`` per problem.

    ``prefix`` names the settings area (e.g. ``llm.``); the value of a key or secret is never shown.
    """
    problems = []
    for error in err.errors():
        where = prefix + ".".join(str(part) for part in error["loc"]) or "value"
        secret = any(word in where.lower() for word in ("key", "secret", "password", "token"))
        shown = "" if not with_input or "input" not in error else " (got ***)" if secret else f" (got {error['input']!r})"
        problems.append(f"{where}: {error['msg']}{shown}")
    return "; ".join(problems)


def load_settings(**overrides: Any) -> Settings:
    """Read the settings once (env + settings file), applying explicit overrides on top."""
    return Settings(**overrides)
