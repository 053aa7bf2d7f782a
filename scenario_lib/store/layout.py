"""The store's layout: every key and folder name under the store root, in one place.

::

    staging/{run_id}_{seed}/                  a validated scenario folder (committed)
    failures/{run_id}_{seed}_a{attempt}/      a failed attempt with its reports (committed)
    runs/{run_id}.json                        a run record
    batches/{name}/                           a batch's checkpoint
    benchmarks/{dest}/{scenario_id}/          a promoted scenario (committed)
    benchmarks/{dest}/entries/{scenario_id}.json
    benchmarks/{dest}/manifest.json
    benchmarks/{dest}/descriptors.json        the near-duplicate index: every admitted scenario's descriptor
    benchmarks/{dest}/withdrawn/{scenario_id}.json   why a scenario was withdrawn, and the entry removed
    benchmarks/{dest}/index.parquet, README.md, croissant.json, splits/{split}.parquet
                                              derived from the manifest at every promotion (the card)
    benchmarks/{dest}/card.json               the card's settings (licence, split ratio)
    benchmarks/{dest}/releases/{version}/     a frozen release: manifest, card, index, Croissant (committed)
    withdrawn/{dest}/{scenario_id}/           a withdrawn scenario's folder, kept aside (committed)
    evaluations/{dest}/{evaluation_id}.json   a policy evaluation on a benchmark
    traces/                                   exported agent traces
    .tmp/                                     uploads in flight; never read by consumers

A folder is *committed* when its ``_COMMITTED`` marker is written (see `scenario_lib.store.commit`).
Names are validated here, so no caller builds a key by hand or parses one with string splitting.
"""

from __future__ import annotations

import re

from scenario_lib.errors import ConfigError

COMMIT_MARKER = "_COMMITTED"
TMP_PREFIX = ".tmp"
STAGING_PREFIX = "staging"
FAILURES_PREFIX = "failures"
RUNS_PREFIX = "runs"
BENCHMARKS_PREFIX = "benchmarks"
TRACES_PREFIX = "traces"
BATCHES_PREFIX = "batches"
EVALUATIONS_PREFIX = "evaluations"
WITHDRAWN_PREFIX = "withdrawn"
RELEASES_FOLDER = "releases"
INDEX_FILE = "index.parquet"
CARD_FILE = "README.md"
CROISSANT_FILE = "croissant.json"
CARD_SETTINGS_FILE = "card.json"
SPLITS_FOLDER = "splits"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SCENARIO_ID_RE = re.compile(r"^(?P<run_id>[A-Za-z0-9][A-Za-z0-9_.-]{0,63})_(?P<seed>[0-9]{1,19})$")

def validate_name(value: str, *, kind: str = "name") -> str:
    """Return `value` if it is a safe single path segment (run id, dest name), else raise ConfigError."""
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value) or ".." in value:
        raise ConfigError(
            f"invalid {kind} {value!r}: use 1-64 characters from A-Z a-z 0-9 _ . -, starting with a letter "
            "or digit and without '..' (e.g. 'run-2024-01' or 'v1')"
        )
    return value


def validate_run_id(run_id: str) -> str:
    """Return `run_id` if valid, else raise ConfigError."""
    return validate_name(run_id, kind="run id")


def validate_dest(dest: str) -> str:
    """Return the benchmark destination name `dest` if valid, else raise ConfigError."""
    return validate_name(dest, kind="benchmark destination")


def make_scenario_id(run_id: str, seed: int) -> str:
    """The scenario id ``{run_id}_{seed}``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"invalid seed {seed!r}: use a non-negative integer")
    return f"{validate_run_id(run_id)}_{seed}"


def parse_scenario_id(scenario_id: str) -> tuple[str, int]:
    """Split a scenario id ``{run_id}_{seed}`` into ``(run_id, seed)``; ConfigError if malformed."""
    match = _SCENARIO_ID_RE.fullmatch(scenario_id) if isinstance(scenario_id, str) else None
    if match is None or ".." in scenario_id:
        raise ConfigError(
            f"invalid scenario id {scenario_id!r}: expected '{{run_id}}_{{seed}}' such as 'run-1_42' "
            "(run id: 1-64 characters from A-Z a-z 0-9 _ . -; seed: a non-negative integer)"
        )
    return match["run_id"], int(match["seed"])


def validate_key(key: str, *, allow_root: bool = False) -> str:
    """Return `key` normalized (no trailing '/') if it is a safe relative key, else raise ConfigError.

    Rejected: absolute keys, backslashes, '.', '..' and empty segments. The empty key (the store root)
    is allowed only with `allow_root`.
    """
    if not isinstance(key, str):
        raise ConfigError(f"invalid store key {key!r}: expected a string such as 'staging/run-1_0'")
    stripped = key[:-1] if key.endswith("/") else key
    if stripped == "":
        if allow_root:
            return ""
        raise ConfigError("empty store key: name a file or folder under the store root, e.g. 'staging/run-1_0'")
    problem = None
    if stripped.startswith("/"):
        problem = "it is absolute"
    elif "\\" in stripped:
        problem = "it contains a backslash"
    elif "\x00" in stripped:
        problem = "it contains a NUL byte"
    else:
        for segment in stripped.split("/"):
            if segment in ("", ".", ".."):
                problem = f"it has a {segment!r} segment" if segment else "it has an empty segment ('//')"
                break
    if problem:
        raise ConfigError(
            f"invalid store key {key!r}: {problem}; use a relative key with '/' separators, "
            "e.g. 'staging/run-1_0/scene.xml'"
        )
    return stripped


def join_key(*parts: str) -> str:
    """Join key segments with '/', skipping empty ones, and validate the result."""
    return validate_key("/".join(part.strip("/") for part in parts if part.strip("/")), allow_root=True)


def staging_prefix(scenario_id: str) -> str:
    """``staging/{scenario_id}``."""
    parse_scenario_id(scenario_id)
    return f"{STAGING_PREFIX}/{scenario_id}"


def failure_prefix(scenario_id: str, attempt: int) -> str:
    """``failures/{scenario_id}_a{attempt}``."""
    parse_scenario_id(scenario_id)
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
        raise ConfigError(f"invalid attempt number {attempt!r}: use a non-negative integer")
    return f"{FAILURES_PREFIX}/{scenario_id}_a{attempt}"


def run_record_key(run_id: str) -> str:
    """``runs/{run_id}.json``."""
    return f"{RUNS_PREFIX}/{validate_run_id(run_id)}.json"


def benchmark_root(dest: str) -> str:
    """``benchmarks/{dest}``: the folder of one benchmark."""
    return f"{BENCHMARKS_PREFIX}/{validate_dest(dest)}"


def benchmark_prefix(dest: str, scenario_id: str) -> str:
    """``benchmarks/{dest}/{scenario_id}``."""
    parse_scenario_id(scenario_id)
    return f"{benchmark_root(dest)}/{scenario_id}"


def benchmark_entries_prefix(dest: str) -> str:
    """``benchmarks/{dest}/entries``."""
    return f"{benchmark_root(dest)}/entries"


def benchmark_entry_key(dest: str, scenario_id: str) -> str:
    """``benchmarks/{dest}/entries/{scenario_id}.json``."""
    parse_scenario_id(scenario_id)
    return f"{benchmark_entries_prefix(dest)}/{scenario_id}.json"


def benchmark_manifest_key(dest: str) -> str:
    """``benchmarks/{dest}/manifest.json``."""
    return benchmark_file_key(dest, "manifest.json")


def benchmark_descriptors_key(dest: str) -> str:
    """``benchmarks/{dest}/descriptors.json``."""
    return benchmark_file_key(dest, "descriptors.json")


def benchmark_withdrawals_prefix(dest: str) -> str:
    """``benchmarks/{dest}/withdrawn``."""
    return f"{benchmark_root(dest)}/{WITHDRAWN_PREFIX}"


def benchmark_withdrawal_key(dest: str, scenario_id: str) -> str:
    """``benchmarks/{dest}/withdrawn/{scenario_id}.json``."""
    parse_scenario_id(scenario_id)
    return f"{benchmark_withdrawals_prefix(dest)}/{scenario_id}.json"


def withdrawn_folder_prefix(dest: str, scenario_id: str) -> str:
    """``withdrawn/{dest}/{scenario_id}``: outside ``staging/`` and ``benchmarks/``, where scenarios are listed."""
    parse_scenario_id(scenario_id)
    return f"{WITHDRAWN_PREFIX}/{validate_dest(dest)}/{scenario_id}"


def benchmark_file_key(dest: str, name: str) -> str:
    """``benchmarks/{dest}/{name}`` for a file of the benchmark itself (``index.parquet``, ``splits/train.parquet``),
    never a scenario folder: ConfigError when ``name`` starts like a scenario id or a folder of the layout."""
    key = validate_key(name)
    first = key.split("/", 1)[0]
    if _SCENARIO_ID_RE.fullmatch(first) or first in ("entries", WITHDRAWN_PREFIX, RELEASES_FOLDER):
        raise ConfigError(f"invalid benchmark file name {name!r}: it names a scenario folder or a folder of the layout")
    return f"{benchmark_root(dest)}/{key}"


def benchmark_releases_prefix(dest: str) -> str:
    """``benchmarks/{dest}/releases``."""
    return f"{benchmark_root(dest)}/{RELEASES_FOLDER}"


def benchmark_release_prefix(dest: str, version: str) -> str:
    """``benchmarks/{dest}/releases/{version}``."""
    return f"{benchmark_releases_prefix(dest)}/{validate_name(version, kind='release version')}"


def evaluations_prefix(dest: str) -> str:
    """``evaluations/{dest}``."""
    return f"{EVALUATIONS_PREFIX}/{validate_dest(dest)}"


def evaluation_key(dest: str, evaluation_id: str) -> str:
    """``evaluations/{dest}/{evaluation_id}.json``."""
    return f"{evaluations_prefix(dest)}/{validate_name(evaluation_id, kind='evaluation id')}.json"


def benchmark_of_url(url: str) -> tuple[str, str] | None:
    """``(store root URL, dest)`` when ``url`` names a benchmark folder (``<root>/benchmarks/{dest}``, a
    trailing '/' allowed), else None; ConfigError when the folder name is not a valid destination."""
    parts = url.rstrip("/").rsplit("/", 2)
    if len(parts) != 3 or parts[1] != BENCHMARKS_PREFIX or not parts[0] or parts[0].endswith(("/", ":")):
        return None
    return parts[0], validate_dest(parts[2])


def batch_checkpoint_key(name: str) -> str:
    """``batches/{name}.json``."""
    return f"{BATCHES_PREFIX}/{validate_name(name, kind='batch name')}.json"


def parse_failure_folder(name: str) -> tuple[str, int]:
    """Split a failure folder name ``{scenario_id}_a{attempt}`` into ``(scenario_id, attempt)``."""
    scenario_id, sep, attempt = name.rpartition("_a")
    if not sep or not attempt.isdigit():
        raise ConfigError(f"invalid failure folder name {name!r}: expected '{{run_id}}_{{seed}}_a{{attempt}}' such as 'run-1_42_a1'")
    parse_scenario_id(scenario_id)
    return scenario_id, int(attempt)


def scenario_id_of_folder(prefix: str, name: str) -> str:
    """The scenario id of a committed folder ``name`` directly under ``prefix`` (staging, failures or a benchmark)."""
    if prefix == FAILURES_PREFIX:
        return parse_failure_folder(name)[0]
    parse_scenario_id(name)
    return name


def benchmark_folder_of(key: str) -> tuple[str, str] | None:
    """``(dest, scenario_id)`` when ``key`` is a benchmark scenario's commit marker
    (``benchmarks/{dest}/{scenario_id}/_COMMITTED``), else None."""
    parts = key.split("/")
    if len(parts) == 4 and parts[0] == BENCHMARKS_PREFIX and parts[3] == COMMIT_MARKER:
        return parts[1], parts[2]
    return None


__all__ = [
    "BATCHES_PREFIX",
    "BENCHMARKS_PREFIX",
    "CARD_FILE",
    "CARD_SETTINGS_FILE",
    "COMMIT_MARKER",
    "CROISSANT_FILE",
    "EVALUATIONS_PREFIX",
    "FAILURES_PREFIX",
    "INDEX_FILE",
    "RELEASES_FOLDER",
    "RUNS_PREFIX",
    "SPLITS_FOLDER",
    "STAGING_PREFIX",
    "TMP_PREFIX",
    "TRACES_PREFIX",
    "WITHDRAWN_PREFIX",
    "benchmark_descriptors_key",
    "benchmark_entries_prefix",
    "benchmark_entry_key",
    "benchmark_file_key",
    "benchmark_folder_of",
    "benchmark_manifest_key",
    "benchmark_of_url",
    "benchmark_prefix",
    "benchmark_root",
    "benchmark_release_prefix",
    "benchmark_releases_prefix",
    "benchmark_withdrawal_key",
    "benchmark_withdrawals_prefix",
    "batch_checkpoint_key",
    "evaluation_key",
    "evaluations_prefix",
    "failure_prefix",
    "join_key",
    "make_scenario_id",
    "parse_failure_folder",
    "parse_scenario_id",
    "run_record_key",
    "scenario_id_of_folder",
    "staging_prefix",
    "validate_dest",
    "validate_key",
    "validate_name",
    "validate_run_id",
    "withdrawn_folder_prefix",
]
