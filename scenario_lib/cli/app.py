"""The Typer application, its sub-command groups, and what every command shares: errors, settings, the store.

Expected failures (bad input, an unreachable store or API, a failed validation) exit non-zero with one
paragraph on stderr; ``--verbose`` adds the traceback. Heavy libraries are imported inside commands.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from scenario_lib.cli.output import error_console
from scenario_lib.errors import ConfigError, ScenarioError

if TYPE_CHECKING:
    from scenario_lib.config import LlmProvider, LlmSettings, Settings
    from scenario_lib.store.dataset import DatasetStore

T = TypeVar("T")

app = typer.Typer(
    name="scenarios",
    help="Generate, validate and manage physics benchmark scenarios.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
config_app = typer.Typer(help="Write, show and check the settings file.", no_args_is_help=True)
batch_app = typer.Typer(help="Run campaigns of generation runs from a YAML file.", no_args_is_help=True)
traces_app = typer.Typer(help="Turn stored agent traces into training datasets.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(batch_app, name="batch")
app.add_typer(traces_app, name="traces")

_state: dict[str, bool] = {"verbose": False}

# Where a hosted provider's key is looked up when it is not the configured provider (SCENARIOS_LLM__API_KEY
# holds the configured provider's key only).
PROVIDER_KEY_ENV: Mapping[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
}
CONFIGURED_KEY_ENV = "SCENARIOS_LLM__API_KEY"

StoreOption = Annotated[
    str | None,
    typer.Option("--store", help="Dataset store URL (file://... or s3://bucket/prefix); default: the settings'."),
]


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks on errors.")] = False,
) -> None:
    """Generate, validate and manage physics benchmark scenarios."""
    _state["verbose"] = verbose


def fail(message: str, *, code: int = 2) -> NoReturn:
    """Print a one-paragraph error and exit with ``code``."""
    error_console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def run_guarded(action: Callable[[], T], *, stopped: str | None = None, resume: str = "") -> T:
    """Run ``action()``, turning expected errors into a clean exit (traceback only with --verbose).

    ``stopped`` (what stopped, e.g. "batch b") makes long runs turn any other exception too (a
    provider's API down mid-run, a dropped connection) into one paragraph: what stopped, the error,
    and ``resume``, how to continue once the cause is fixed.
    """
    from pydantic import ValidationError

    from scenario_lib.config import summarize_validation_error

    try:
        return action()
    except (ScenarioError, OSError) as err:
        if _state["verbose"]:
            error_console.print_exception()
        fail(_escape(str(err)))
    except ValidationError as err:
        if _state["verbose"]:
            error_console.print_exception()
        fail(_escape(f"invalid value: {summarize_validation_error(err, with_input=False)}"))
    except Exception as err:
        if stopped is None:
            raise
        if _state["verbose"]:
            error_console.print_exception()
        fail(
            _escape(f"{stopped} stopped: {type(err).__name__}: {err}; fix the cause, then {resume}")
            + " (--verbose shows the traceback)"
        )


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def load_cli_settings(*, store_url: str | None = None) -> Settings:
    """The settings (env + settings file), with ``--store`` on top; a bad setting exits with the fix."""
    from pydantic import ValidationError

    from scenario_lib.config import ENV_PREFIX, summarize_validation_error, load_settings

    overrides: dict[str, Any] = {}
    if store_url is not None:
        overrides["store"] = {"url": store_url}
    try:
        return load_settings(**overrides)
    except ValidationError as err:
        if _state["verbose"]:
            error_console.print_exception()
        fail(
            _escape(
                f"invalid settings: {summarize_validation_error(err)}. Fix the {ENV_PREFIX}* environment variables or the settings file "
                f"({os.environ.get(ENV_PREFIX + 'CONFIG', 'scenarios.toml')}); `scenarios config show` lists them"
            )
        )


def open_cli_store(settings: Settings) -> DatasetStore:
    """The store the settings point at; an unreachable store exits with one paragraph."""
    from scenario_lib.store.dataset import DatasetStore

    return run_guarded(lambda: DatasetStore.from_settings(settings.store))


def parse_provider(value: str) -> LlmProvider:
    from scenario_lib.config import LlmProvider

    try:
        return LlmProvider(value.strip().lower())
    except ValueError:
        raise ConfigError(
            f"unknown provider {value!r}; choose one of {', '.join(p.value for p in LlmProvider)} "
            "(`scenarios providers` shows which are usable)"
        ) from None


def key_source(provider: LlmProvider, settings: Settings, api_key_env: str | None = None) -> tuple[str, bool]:
    """Where the key of ``provider`` comes from (an environment variable name) and whether it is set.

    The configured provider (llm.provider) uses llm.api_key; another provider uses ``api_key_env``
    (a batch file's) or its conventional variable (OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY or
    GOOGLE_API_KEY). The offline provider needs none.
    """
    if provider.value == "offline":
        return "-", True
    if api_key_env:
        return api_key_env, bool(os.environ.get(api_key_env))
    if provider is settings.llm.provider and settings.llm.api_key is not None:
        return f"{CONFIGURED_KEY_ENV} (or llm.api_key)", bool(settings.llm.api_key.get_secret_value())
    names = PROVIDER_KEY_ENV.get(provider.value, ())
    present = next((name for name in names if os.environ.get(name)), None)
    if present:
        return present, True
    return " or ".join(names or (CONFIGURED_KEY_ENV,)), False


def llm_for(
    settings: Settings,
    *,
    provider: LlmProvider | None = None,
    model: str | None = None,
    temperature: float | None = None,
    api_key_env: str | None = None,
    base_url: str | None = None,
) -> LlmSettings:
    """The model settings of one run: the configured ones with the given choices on top, model resolved.

    Raises `ConfigError` when a hosted provider has no key (see `key_source` for where it is looked up).
    """
    from pydantic import ValidationError

    from scenario_lib.config import LlmSettings, summarize_validation_error
    from scenario_lib.agent.providers import model_name

    configured = settings.llm
    chosen = provider or configured.provider
    same = chosen is configured.provider
    values: dict[str, Any] = configured.model_dump()
    values["provider"] = chosen
    values["model"] = model or (configured.model if same else None)
    values["base_url"] = base_url or (configured.base_url if same else None)
    if temperature is not None:
        values["temperature"] = temperature
    source, present = key_source(chosen, settings, api_key_env)
    if chosen.value != "offline":
        if not present:
            raise ConfigError(
                f"provider {chosen.value} needs an API key and none is set: export {source}, or use the offline "
                "provider (`scenarios providers` shows where each key is looked up)"
            )
        if api_key_env or not same or configured.api_key is None:
            values["api_key"] = os.environ[source]
    try:
        llm = LlmSettings.model_validate(values)
    except ValidationError as err:
        raise ConfigError(f"invalid model settings: {summarize_validation_error(err, prefix='llm.', with_input=False)}") from None
    return llm.model_copy(update={"model": model_name(llm)})


@contextmanager
def exit_on_interrupt(resume_hint: str) -> Iterator[None]:
    """On Ctrl-C, say how to resume and exit at once (130) instead of waiting for running seeds.

    Every commit to the store is crash-safe, so stopping mid-seed loses only that seed's work; the
    sandbox workers (bubblewrap --die-with-parent) die with this process.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        from scenario_lib.cli.output import console

        console.show_cursor(True)  # a live progress bar hid it, and os._exit skips its clean-up
        error_console.print(f"\n[yellow]interrupted[/]: finished scenarios are kept; {resume_hint}", highlight=False)
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(130)

    previous = signal.signal(signal.SIGINT, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
