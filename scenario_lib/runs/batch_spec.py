"""Batch files: the YAML's models and their expansion into runs (units).

A batch file has a ``name``, ``defaults`` and ``experiments``; each experiment expands the product
providers × models × tiers × temperatures × counts into *units*, one generation run each::

    name: provider-sweep
    defaults: {providers: [offline], tiers: [test_dummy], counts: [2]}
    experiments:
      - name: all-tiers
        tiers: all
        temperatures: [0.0, 0.7]

Fields an experiment leaves out come from ``defaults``; an experiment with its own ``prompt`` and no
``tiers`` gets the tier its prompt names (`infer_tier`). ``tiers: all`` is tier1 and tier2.

Every unit has a deterministic run id, ``{name}-{experiment}-{unit}-{digest}``, where the digest covers
what makes its scenarios what they are (provider, model, tier, temperature, prompt, base seed) but not
its count, so a resumed or enlarged batch runs the same run ids and every seed a run already finished
is reused. Running a batch is `scenario_lib.runs.batch`.
"""


from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from scenario_lib.config import LlmProvider
from scenario_lib.errors import ConfigError
from scenario_lib.store.layout import validate_name
from scenario_lib.tiers import TIER_PRESETS, Tier, resolve_tier

if TYPE_CHECKING:
    import yaml

MAX_UNITS = 10_000
DEFAULT_TEMPERATURE = 0.2
DEFAULT_MAX_CONCURRENCY = 4
# Model calls of one seed: a plan, then a code and a review call per attempt.
CALLS_PER_SEED_MIN = 3
_WORD = re.compile(r"[a-z]+")


# --- tiers from prompts -------------------------------------------------------------------------------


def infer_tier(prompt: str) -> Tier:
    """The tier whose families a free-form prompt names most (ties: tier1, tier2, test_dummy; none: tier1).

    "make me 10 levers" is tier2 (lever); "a peg into a hole" is tier1. The words are matched as
    `scenario_lib.authoring.offline.family_for` matches them, singular or plural.
    """
    from scenario_lib.authoring.offline import FAMILY_KEYWORDS

    found = set(_WORD.findall(prompt.lower()))
    words = found | {word.removesuffix("s") for word in found if len(word) > 3}
    scores = {
        tier: sum(any(keyword in words for keyword in FAMILY_KEYWORDS[family]) for family in preset.families)
        for tier, preset in TIER_PRESETS.items()
    }
    best = max(scores.values())
    if best == 0:
        return Tier.TIER1
    return next(tier for tier in TIER_PRESETS if scores[tier] == best)


# --- the file -------------------------------------------------------------------------------------------


def _as_list(value: Any) -> Any:
    """A scalar where a list is expected means a list of one (``counts: 5``)."""
    return value if value is None or isinstance(value, list | dict) or value == "all" else [value]


# Bounds of each item of the list fields checked by `ExperimentFields._check_ranges`, and what an item is.
_LIST_RANGES: dict[str | None, tuple[str, int, int, str]] = {
    "temperatures": ("temperature", 0, 2, ""),
    "counts": ("count", 1, 10_000, " (scenarios per run)"),
}


class ExperimentFields(BaseModel):
    """What an experiment (or the file's ``defaults``) sets; unset fields fall back to ``defaults``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    providers: list[LlmProvider] | None = None
    # One list for every provider, or per provider ({openai: [gpt-4o-mini]}); unset: the provider's default.
    models: list[str] | dict[LlmProvider, list[str]] | None = None
    tiers: list[Tier] | Literal["all"] | None = None
    temperatures: list[float] | None = None
    counts: list[int] | None = None
    prompt: str | None = Field(default=None, min_length=1, max_length=4000)
    base_seed: int | None = Field(default=None, ge=0, lt=2**62)
    headroom: int | None = Field(default=None, ge=0, le=10_000)
    max_concurrency: int | None = Field(default=None, ge=1, le=64)
    # Name of the environment variable holding each provider's API key (never the key itself).
    api_key_env: dict[LlmProvider, str] | None = None
    base_url: dict[LlmProvider, str] | None = None

    @field_validator("providers", "models", "tiers", "temperatures", "counts", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return _as_list(value)

    @field_validator("tiers", mode="before")
    @classmethod
    def _parse_tiers(cls, value: Any) -> Any:
        value = _as_list(value)
        if isinstance(value, list):
            return [resolve_tier(str(item)) if not isinstance(item, Tier) else item for item in value]
        return value

    @field_validator("temperatures", "counts")
    @classmethod
    def _check_ranges(cls, value: list[float] | list[int] | None, info: ValidationInfo) -> Any:
        what, low, high, unit = _LIST_RANGES[info.field_name]
        for item in value or ():
            if not low <= item <= high:
                raise ValueError(f"{what} {item} is outside {low}..{high}{unit}")
        return value

    @field_validator("providers", "temperatures", "counts")
    @classmethod
    def _not_empty(cls, value: list[Any] | None) -> list[Any] | None:
        if value is not None and not value:
            raise ValueError("an empty list expands to no runs; remove the field to use the default")
        return value


class ExperimentSpec(ExperimentFields):
    """One experiment: a name and the fields it overrides."""

    name: str | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str | None) -> str | None:
        return None if value is None else validate_name(value, kind="experiment name")


class BatchSpec(BaseModel):
    """A batch file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    defaults: ExperimentFields = ExperimentFields()
    experiments: list[ExperimentSpec] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return validate_name(value, kind="batch name")

    @model_validator(mode="after")
    def _check_experiments(self) -> BatchSpec:
        names = [experiment.name for experiment in self.experiments if experiment.name]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"experiment names must be unique; repeated: {', '.join(duplicates)}")
        return self


# --- units ----------------------------------------------------------------------------------------------


class BatchUnit(BaseModel):
    """One run of a batch: what it generates and its run id. Stored in the checkpoint."""

    model_config = ConfigDict(frozen=True)

    index: int
    experiment: str
    provider: LlmProvider
    model: str
    tier: Tier
    temperature: float
    count: int
    prompt: str | None = None
    base_seed: int = 0
    headroom: int | None = None
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    api_key_env: str | None = None
    base_url: str | None = None
    run_id: str

    @property
    def max_seeds(self) -> int:
        return self.count + (self.count if self.headroom is None else self.headroom)

    def label(self) -> str:
        return f"{self.experiment} {self.provider.value}:{self.model} {self.tier.value} t={self.temperature:g}"


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:6]


def unit_run_id(batch: str, experiment_index: int, identity: Sequence[object], occurrence: int = 0) -> str:
    """``{batch}-e{experiment}-{digest}[-{occurrence}]``: stable across resumes and edits of other units.

    ``identity`` is what makes a unit's scenarios what they are; ``occurrence`` tells apart units of one
    experiment with the same identity (e.g. ``counts: [5, 10]``). At most 64 characters.
    """
    suffix = f"-{occurrence}" if occurrence else ""
    return f"{batch[:40]}-e{experiment_index}-{_digest(*identity)}{suffix}"


def _merged(defaults: ExperimentFields, experiment: ExperimentSpec, field: str) -> Any:
    if field in experiment.model_fields_set:
        return getattr(experiment, field)
    return getattr(defaults, field)


def expand_units(spec: BatchSpec) -> list[BatchUnit]:
    """Every unit of the batch, in file order: per experiment, the product of its lists.

    Raises `ConfigError` for an experiment that names no tier and no prompt to infer one from, a
    per-provider model list for a provider the experiment does not use, or more than `MAX_UNITS` units.
    """
    units: list[BatchUnit] = []
    for e_index, experiment in enumerate(spec.experiments):
        for fields in _experiment_units(spec, e_index, experiment):
            units.append(BatchUnit(index=len(units), **fields))
            if len(units) > MAX_UNITS:
                raise ConfigError(f"the batch expands to more than {MAX_UNITS} runs; split it into several files")
    return units


def _experiment_units(spec: BatchSpec, e_index: int, experiment: ExperimentSpec) -> Iterator[dict[str, Any]]:
    """The fields of each unit of one experiment (all but the batch-wide index)."""
    label = experiment.name or f"experiment{e_index}"
    where = f"experiments[{e_index}] ({label})"

    def merged(field: str) -> Any:
        return _merged(spec.defaults, experiment, field)

    providers: list[LlmProvider] = merged("providers") or [LlmProvider.OFFLINE]
    prompt: str | None = merged("prompt")
    tiers = _experiment_tiers(spec, experiment, prompt, where)
    pairs = _provider_models(merged("models"), providers, where)
    temperatures = merged("temperatures") or [DEFAULT_TEMPERATURE]
    counts = merged("counts") or [1]
    base_seed = merged("base_seed") or 0
    key_envs = merged("api_key_env") or {}
    base_urls = merged("base_url") or {}
    seen: dict[str, int] = {}
    for (provider, model), tier, temperature, count in itertools.product(pairs, tiers, temperatures, counts):
        identity = (provider.value, model, tier.value, temperature, prompt, base_seed)
        occurrence = seen.get(_digest(*identity), 0)
        seen[_digest(*identity)] = occurrence + 1
        yield {
            "experiment": label,
            "provider": provider,
            "model": model,
            "tier": tier,
            "temperature": temperature,
            "count": count,
            "prompt": prompt,
            "base_seed": base_seed,
            "headroom": merged("headroom"),
            "max_concurrency": merged("max_concurrency") or DEFAULT_MAX_CONCURRENCY,
            "api_key_env": key_envs.get(provider),
            "base_url": base_urls.get(provider),
            "run_id": unit_run_id(spec.name, e_index, identity, occurrence),
        }


def _experiment_tiers(spec: BatchSpec, experiment: ExperimentSpec, prompt: str | None, where: str) -> list[Tier]:
    # An experiment's own prompt without its own tiers picks the tier it names, over the default tiers.
    if "tiers" in experiment.model_fields_set or "prompt" not in experiment.model_fields_set:
        tiers_field = _merged(spec.defaults, experiment, "tiers")
    else:
        tiers_field = None
    if tiers_field == "all":
        return [Tier.TIER1, Tier.TIER2]
    if tiers_field:
        return list(tiers_field)
    if prompt:
        return [infer_tier(prompt)]
    raise ConfigError(f"{where}: set tiers (tier1, tier2, test_dummy or all) or a prompt to infer the tier from")


def _provider_models(models_field: Any, providers: Sequence[LlmProvider], where: str) -> list[tuple[LlmProvider, str]]:
    """(provider, model) of every model run: a list for all providers, or one list per provider."""
    from scenario_lib.agent.providers import DEFAULT_MODELS

    if isinstance(models_field, dict):
        unused = sorted(p.value for p in models_field if p not in providers)
        if unused:
            raise ConfigError(
                f"{where}: models names provider(s) {', '.join(unused)} that the experiment does not use; "
                f"its providers are {', '.join(p.value for p in providers)}"
            )
        return [(p, model) for p in providers for model in (models_field.get(p) or [DEFAULT_MODELS[p]])]
    return [(p, model) for p in providers for model in (models_field or [DEFAULT_MODELS[p]])]


@dataclasses.dataclass(frozen=True)
class BatchPlan:
    """A batch file, expanded."""

    spec: BatchSpec
    units: tuple[BatchUnit, ...]
    source: str = ""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def scenarios(self) -> int:
        return sum(unit.count for unit in self.units)

    @property
    def max_seeds(self) -> int:
        return sum(unit.max_seeds for unit in self.units)

    def model_calls(self, max_attempts: int) -> tuple[int, int]:
        """(fewest, most) model calls: every seed accepted at its first attempt, or every seed spent."""
        return self.scenarios * CALLS_PER_SEED_MIN, self.max_seeds * (1 + 2 * max_attempts)

    def providers(self) -> list[LlmProvider]:
        return sorted({unit.provider for unit in self.units}, key=lambda p: list(LlmProvider).index(p))


def plan_batch(spec: BatchSpec, *, source: str = "") -> BatchPlan:
    return BatchPlan(spec=spec, units=tuple(expand_units(spec)), source=source)


# --- reading the file, with line numbers ------------------------------------------------------------


def _node_for(root: yaml.Node | None, loc: Sequence[int | str]) -> yaml.Node | None:
    """The YAML node a pydantic error location points at (as deep as the file goes)."""
    import yaml

    node, found = root, root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((key, value) for key, value in node.value if key.value == str(part)), None)
            if match is None:
                continue  # a union member tag such as 'list[str]', not a key of the file
            # The error is about this field: point at its key unless there is more to walk.
            found, node = match[0], match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = found = node.value[part]
        elif isinstance(node, yaml.ScalarNode):
            break
    if found is not root and node is not None and not isinstance(node, yaml.MappingNode | yaml.SequenceNode):
        found = node
    return found


def _location(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif "[" in part or part.startswith(("function-", "literal")):
            continue  # pydantic's union member tags
        else:
            text += f".{part}" if text else part
    return text or "(top level)"


def parse_batch(text: str, *, source: str = "<batch>") -> BatchSpec:
    """Parse and validate a batch file's text; `ConfigError` with ``source:line`` and the field on errors."""
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{source}{line}: malformed YAML ({problem}); fix the syntax and retry") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: a batch file is a mapping with 'name', 'defaults' and 'experiments'; "
            f"got {type(data).__name__} (see configs/example_batch.yaml)"
        )
    try:
        return BatchSpec.model_validate(data)
    except ValidationError as err:
        problems = []
        for error in err.errors():
            node = _node_for(root, error["loc"])
            line = f":{node.start_mark.line + 1}" if node is not None else ""
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{source}{line}: {_location(error['loc'])}: {message}")
        raise ConfigError(
            "invalid batch file: " + "; ".join(problems) + " (see configs/example_batch.yaml for every field)"
        ) from None


def load_batch(path: Path) -> BatchPlan:
    """Read, validate and expand the batch file at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read the batch file {path}: {err.strerror or err}") from None
    spec = parse_batch(text, source=str(path))
    try:
        return plan_batch(spec, source=str(path))
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


__all__ = [
    "BatchPlan",
    "BatchSpec",
    "BatchUnit",
    "ExperimentFields",
    "ExperimentSpec",
    "expand_units",
    "infer_tier",
    "load_batch",
    "parse_batch",
    "plan_batch",
    "unit_run_id",
]
