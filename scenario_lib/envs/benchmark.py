"""Benchmarks as environments: open a promoted benchmark by name or by the URL of its folder.

A benchmark is named either by its destination in a store (``v1`` in the store given, or the configured
one) or by the URL of its folder (``file:///data/store/benchmarks/v1``, ``s3://bucket/prefix/benchmarks/v1``,
or a plain path): the store is then the folder two levels up. `open_benchmark` reads its manifest (and
hashes its bytes, so evaluations can say which benchmark they ran on); `Benchmark.make_env` makes one
``scenarios/Scenario-v0`` environment per scenario.

Opening a store here is an entry point, like the CLI: an S3 store, or the configured store, takes its
endpoint and keys from the settings (``SCENARIOS_STORE__*`` or ``scenarios.toml``), read once per call.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scenario_lib.errors import ConfigError, name_list
from scenario_lib.store import DatasetStore
from scenario_lib.store.layout import (
    BENCHMARKS_PREFIX,
    benchmark_manifest_key,
    benchmark_of_url,
    validate_dest,
)

if TYPE_CHECKING:
    import gymnasium

    from scenario_lib.runs.promotion import BenchmarkManifest



def _is_local(url: str) -> bool:
    return "://" not in url or url.lower().startswith("file://")


def open_store(url: str | None = None) -> DatasetStore:
    """The store at ``url`` (None: the configured store); S3 endpoint and keys come from the settings.

    A local store needs no settings. A bucket is never created here: reading a benchmark must not make one.
    """
    if url is not None and _is_local(url):
        return DatasetStore.from_url(url)
    from pydantic import ValidationError

    from scenario_lib.config import load_settings, summarize_validation_error

    try:
        settings = load_settings().store
    except ValidationError as err:
        raise ConfigError(
            f"invalid settings ({summarize_validation_error(err)}); fix the "
            "SCENARIOS_* environment variables or scenarios.toml (`scenarios config show` lists them)"
        ) from None
    return DatasetStore.from_settings(settings, url=url, create_bucket=False)






def resolve_benchmark(benchmark: str, store: str | DatasetStore | None = None) -> tuple[DatasetStore, str]:
    """``(store, dest)`` of a benchmark given by name (in ``store``, or the configured store) or by the URL
    or path of its folder (then ``store`` must be None); ConfigError when it names no benchmark folder."""
    text = benchmark.strip() if isinstance(benchmark, str) else ""
    if not text:
        raise ConfigError("no benchmark given: name one (e.g. 'v1', see `scenarios list benchmarks`) or give its folder URL")
    if "/" not in text:
        dest = validate_dest(text)
        return (store if isinstance(store, DatasetStore) else open_store(store)), dest
    located = benchmark_of_url(text)
    if located is None:
        raise ConfigError(
            f"{text!r} is not a benchmark folder: a benchmark is named by its destination (e.g. 'v1') or by the "
            f"URL of its folder, '<store>/{BENCHMARKS_PREFIX}/<name>' (e.g. file:///data/store/{BENCHMARKS_PREFIX}/v1)"
        )
    if store is not None:
        raise ConfigError(f"benchmark {text!r} is a folder URL, which names its store: do not give a store as well")
    root, dest = located
    if _is_local(root):
        folder = Path(root[len("file://") :] if root.lower().startswith("file://") else root).expanduser()
        if not (folder / BENCHMARKS_PREFIX / dest).is_dir():
            raise ConfigError(f"no benchmark folder at {text!r}: {folder / BENCHMARKS_PREFIX / dest} does not exist")
    return open_store(root), dest


@dataclass(frozen=True)
class Benchmark:
    """A promoted benchmark: its store, destination name, manifest and the manifest's sha256."""

    store: DatasetStore
    dest: str
    manifest: BenchmarkManifest
    manifest_sha256: str

    @property
    def scenario_ids(self) -> tuple[str, ...]:
        return tuple(self.manifest.scenario_ids)

    @property
    def url(self) -> str:
        """Where the benchmark's manifest lives (for messages and records)."""
        return self.store.url_for(benchmark_manifest_key(self.dest))

    def env_kwargs(self, scenario_id: str) -> dict[str, str]:
        """The ``gymnasium.make`` arguments that name ``scenario_id`` of this benchmark (plain strings, so
        an environment spec holding them can be written as JSON and recovered where the store is reachable)."""
        if scenario_id not in self.manifest.scenario_ids:
            raise ConfigError(
                f"benchmark {self.dest!r} has no scenario {scenario_id!r}; it holds {name_list(list(self.scenario_ids))}"
            )
        return {"benchmark": self.dest, "scenario_id": scenario_id, "store": self.store.url}

    def make_env(self, scenario_id: str, **kwargs: Any) -> gymnasium.Env[Any, Any]:
        """``gymnasium.make("scenarios/Scenario-v0", ...)`` for one scenario; ``kwargs`` go to the environment."""
        import gymnasium

        from scenario_lib.envs import ENV_ID

        arguments: dict[str, Any] = {**self.env_kwargs(scenario_id), **kwargs}
        return gymnasium.make(ENV_ID, **arguments)

    def make_envs(self, **kwargs: Any) -> dict[str, gymnasium.Env[Any, Any]]:
        """One environment per scenario, by scenario id."""
        return {scenario_id: self.make_env(scenario_id, **kwargs) for scenario_id in self.scenario_ids}


def open_benchmark(benchmark: str, *, store: str | DatasetStore | None = None) -> Benchmark:
    """The benchmark named by ``benchmark`` (see `resolve_benchmark`); ConfigError when there is none or it
    holds no scenario, StoreError when its manifest is corrupt or unreadable."""
    from scenario_lib.runs.promotion import require_manifest

    dataset, dest = resolve_benchmark(benchmark, store)
    manifest, data = require_manifest(dataset, dest)
    if not manifest.entries:
        raise ConfigError(f"benchmark {dest!r} in {dataset.describe()} holds no scenario; promote some into it first")
    return Benchmark(dataset, dest, manifest, hashlib.sha256(data).hexdigest())


__all__ = ["Benchmark", "open_benchmark", "open_store", "resolve_benchmark"]
