"""The settings file (`scenarios config init|show|validate`) and the LLM providers (`scenarios providers`)."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import typer
from rich.markup import escape
from rich.table import Table

from scenario_lib.cli.app import app, config_app, fail, key_source, load_cli_settings, run_guarded
from scenario_lib.cli.output import console, write_json

if TYPE_CHECKING:
    from pydantic import BaseModel

    from scenario_lib.config import Settings

# What each setting means, written above it by `config init`. A setting missing here is still written.
SETTING_NOTES: Mapping[str, str] = {
    "store": "Where scenarios, runs, batches and traces are kept.",
    "store.url": "A folder (file://./datasets, file:///abs/path) or an S3 bucket and prefix (s3://bucket/prefix).",
    "store.endpoint_url": "S3-compatible server (MinIO, SeaweedFS); leave unset for AWS.",
    "store.access_key": "Secret: set SCENARIOS_STORE__ACCESS_KEY in the environment rather than here.",
    "store.secret_key": "Secret: set SCENARIOS_STORE__SECRET_KEY in the environment rather than here.",
    "llm": "The model that writes scenario scripts.",
    "llm.provider": "offline (no network, deterministic), openai (any OpenAI-compatible server), anthropic or gemini.",
    "llm.model": "Unset: the provider's default (`scenarios providers` lists them).",
    "llm.base_url": "OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 for a local server.",
    "llm.api_key": "Secret: set SCENARIOS_LLM__API_KEY in the environment rather than here.",
    "llm.temperature": "Sampling temperature, 0..2.",
    "llm.max_attempts": "Attempts per seed: a failed validation goes back to the model this many times at most.",
    "sandbox": "Isolation of the untrusted scenario scripts.",
    "sandbox.mode": "auto (bubblewrap if it works, else refuse), bwrap, or rlimits (no isolation: never for LLM code).",
    "sandbox.workers": "Warm sandbox processes; scripts validate this many at once.",
    "sandbox.memory_limit_mb": "Memory limit of one script run.",
    "sandbox.cpu_limit_s": "CPU-time limit of one script run.",
    "sandbox.wall_limit_s": "Wall-clock limit of one script run.",
    "sandbox.max_output_mb": "Largest output (meshes) one script run may return.",
    "validation": "The randomization harness every scenario passes.",
    "validation.seeds": "(seed, scale) pairs a script is validated on.",
    "validation.scale_low": "Smallest scale factor drawn per axis.",
    "validation.scale_high": "Largest scale factor drawn per axis.",
    "validation.mjcf_schema_path": "MJCF XSD to check scenes against; default: the packaged copy.",
    "validation.sim_duration_s": "Simulated seconds of the stability check.",
    "validation.render_preview": "Render preview.png for each scenario (needs EGL or OSMesa).",
    "validation.decomposition_cache_dir": "Convex decomposition (CoACD) cache; default ~/.cache/scenario_lib/coacd.",
    "tracing": "OpenTelemetry spans of the agent's model calls (exported to datasets with `scenarios traces export`).",
    "tracing.exporter": "file (spans stored under traces/ in the store), otlp_http, or none.",
    "tracing.file_path": "Spool file of the file exporter (the run's spans are then stored in the store).",
    "tracing.otlp_endpoint": "OTLP/HTTP collector for the otlp_http exporter.",
    "tracing.capture_content": "Record prompts and completions in spans (needed for training datasets).",
}
# Written as live settings; everything else is written commented out at its default.
ACTIVE_SETTINGS = frozenset({"store.url", "llm.provider"})
SECRET_SETTINGS = frozenset({"store.access_key", "store.secret_key", "llm.api_key"})
URL_SETTINGS = frozenset({"store.url", "store.endpoint_url", "llm.base_url", "tracing.otlp_endpoint"})
MASK = "********"


def config_path() -> Path:
    from scenario_lib.config import DEFAULT_CONFIG_FILE, ENV_PREFIX

    return Path(os.environ.get(f"{ENV_PREFIX}CONFIG", DEFAULT_CONFIG_FILE))


def _toml_value(value: Any) -> str:
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def settings_template() -> str:
    """A commented settings file: every setting at its default, the common ones live, secrets left out."""
    from scenario_lib.config import ENV_PREFIX, Settings

    lines = [
        "# Settings of the `scenarios` CLI and the flows (scenario_lib.config.Settings).",
        f"# Environment variables win over this file: {ENV_PREFIX}<SECTION>__<KEY>, e.g. {ENV_PREFIX}STORE__URL.",
        f"# Another file: {ENV_PREFIX}CONFIG=/path/to/file.toml. Check it with `scenarios config validate`.",
        "# Keep secrets (API and S3 keys) in the environment, not in this file.",
    ]
    defaults = Settings.model_construct()
    for section in Settings.model_fields:
        model: BaseModel = getattr(defaults, section)
        lines += ["", f"# {SETTING_NOTES.get(section, '')}".rstrip(), f"[{section}]"]
        for name in type(model).model_fields:
            key = f"{section}.{name}"
            value = getattr(model, name)
            note = SETTING_NOTES.get(key)
            if note:
                lines.append(f"# {note}")
            if key in SECRET_SETTINGS:
                lines.append(f'# {name} = "..."')
            elif value is None:
                lines.append(f'# {name} = ""')
            elif key in ACTIVE_SETTINGS:
                lines.append(f"{name} = {_toml_value(value)}")
            else:
                lines.append(f"# {name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


@config_app.command("init")
def config_init(
    path: Annotated[
        Path | None, typer.Option(help="Where to write; default: $SCENARIOS_CONFIG or scenarios.toml.")
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented settings file with every setting at its default."""
    target = path or config_path()
    if target.exists() and not force:
        fail(f"{target} exists; pass --force to overwrite it, or --path to write elsewhere")

    def write() -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(settings_template(), encoding="utf-8")

    run_guarded(write)
    hint = "" if target == config_path() else f" (point SCENARIOS_CONFIG={target} at it)"
    console.print(f"wrote {target}{hint}; check it with: scenarios config validate")


def _mask_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    netloc = f"{MASK}@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def effective_settings(settings: Settings) -> list[dict[str, Any]]:
    """Every setting with its value (secrets masked) and where it came from: env, file or default."""
    from pydantic import SecretStr

    from scenario_lib.config import ENV_PREFIX

    path = config_path()
    file_values: dict[str, Any] = {}
    if path.is_file():
        try:
            file_values = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError:
            file_values = {}
    rows = []
    for section in type(settings).model_fields:
        model = getattr(settings, section)
        for name in type(model).model_fields:
            key = f"{section}.{name}"
            value = getattr(model, name)
            env_name = f"{ENV_PREFIX}{section}__{name}".upper()
            if env_name in os.environ:
                source = f"env {env_name}"
            elif name in file_values.get(section, {}):
                source = f"file {path}"
            else:
                source = "default"
            if isinstance(value, SecretStr):
                shown: Any = MASK if value.get_secret_value() else ""
            elif isinstance(value, Enum):
                shown = value.value
            elif isinstance(value, Path):
                shown = str(value)
            elif key in URL_SETTINGS and isinstance(value, str):
                shown = _mask_url(value)
            else:
                shown = value
            rows.append({"setting": key, "value": shown, "source": source})
    return rows


@config_app.command("show")
def config_show(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """Show the effective settings (env over file over defaults), secrets masked."""
    settings = load_cli_settings()
    rows = effective_settings(settings)
    if as_json:
        write_json({row["setting"]: row["value"] for row in rows})
        return
    path = config_path()
    table = Table(title=f"Settings ({path if path.is_file() else 'no settings file'})", title_justify="left")
    for column in ("setting", "value", "source"):
        table.add_column(column)
    for row in rows:
        value = row["value"]
        table.add_row(row["setting"], escape("-" if value is None else str(value)), row["source"])
    console.print(table)


def _check(name: str, action: Any) -> tuple[str, bool, str]:
    from scenario_lib.errors import ScenarioError

    try:
        return name, True, str(action())
    except (ScenarioError, OSError) as err:
        return name, False, str(err)


@config_app.command("validate")
def config_validate() -> None:
    """Check the settings: the file parses, the store is reachable, the provider and the sandbox are usable."""
    from scenario_lib.config import SandboxMode

    path = config_path()
    if path.is_file():
        try:
            tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as err:
            fail(f"{path} is not valid TOML ({err}); fix it or write a fresh one with `scenarios config init --force`")
    settings = load_cli_settings()

    def store_check() -> str:
        from scenario_lib.store.dataset import DatasetStore
        from scenario_lib.store.layout import RUNS_PREFIX

        dataset = DatasetStore.from_settings(settings.store)
        runs = len(dataset.list_files(RUNS_PREFIX, recursive=False))
        return f"{dataset.describe()} is reachable ({runs} runs)"

    def provider_check() -> str:
        from scenario_lib.agent.providers import check_provider, model_name

        check_provider(settings.llm)
        return f"{settings.llm.provider.value}:{model_name(settings.llm)} is usable"

    def sandbox_check() -> str:
        from scenario_lib.sandbox.command import resolve_mode

        mode = resolve_mode(settings.sandbox.mode)
        weak = " (no isolation: never for LLM-written scripts)" if mode is SandboxMode.RLIMITS else ""
        return f"{mode.value} works here{weak}"

    checks = [
        ("settings", True, f"loaded from {path}" if path.is_file() else "no settings file; defaults and environment"),
        _check("store", store_check),
        _check("provider", provider_check),
        _check("sandbox", sandbox_check),
    ]
    table = Table(title="Settings check", title_justify="left")
    for column in ("check", "result", "detail"):
        table.add_column(column)
    for name, ok, detail in checks:
        table.add_row(name, "[green]ok[/]" if ok else "[red]FAIL[/]", escape(detail))
    console.print(table)
    failed = [name for name, ok, _ in checks if not ok]
    if failed:
        fail(f"{', '.join(failed)} check(s) failed: see the table above", code=1)


@app.command()
def providers(
    check: Annotated[
        bool, typer.Option("--check", help="Probe each provider that has a key (lists models; no tokens).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """The LLM providers: default models, which one is configured, and whether their keys are present."""
    from scenario_lib.config import LlmProvider
    from scenario_lib.agent.providers import DEFAULT_MODELS, check_provider, model_name

    settings = load_cli_settings()
    rows = []
    for provider in LlmProvider:
        configured = provider is settings.llm.provider
        source, present = key_source(provider, settings)
        row: dict[str, Any] = {
            "provider": provider.value,
            "default_model": DEFAULT_MODELS[provider],
            "configured": configured,
            "model": model_name(settings.llm) if configured else DEFAULT_MODELS[provider],
            "key_from": source,
            "key_present": present,
        }
        if check:
            if not present:
                row["check"] = "no key"
            else:
                from scenario_lib.cli.app import llm_for

                name, ok, detail = _check(
                    provider.value, lambda p=provider: check_provider(llm_for(settings, provider=p))
                )
                row["check"] = "ok" if ok else detail
        rows.append(row)
    if as_json:
        write_json(rows)
        return
    table = Table(title="LLM providers", title_justify="left")
    columns = ["provider", "model", "configured", "key from", "key present"] + (["check"] if check else [])
    for column in columns:
        table.add_column(column)
    for row in rows:
        cells = [
            row["provider"],
            row["model"],
            "[bold]yes[/]" if row["configured"] else "",
            row["key_from"],
            "[green]yes[/]" if row["key_present"] else "[red]no[/]",
        ]
        if check:
            cells.append(escape(row["check"]))
        table.add_row(*cells)
    console.print(table)
