"""Few-shot examples by retrieval: the accepted scripts closest to a request, within a token budget.

The library holds the offline families' templates (complete, validated scripts) and the accepted
scenarios of a dataset store, so it grows with use. `select_examples` ranks them by word overlap with
the request (and the plan, once there is one) and keeps the best one or two that fit the budget.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scenario_lib.store.dataset import DatasetStore

# Budget for the examples in one coder prompt: two of the larger family templates (~2,300 tokens each)
# fit, and a prompt stays well under the 16k context of small local models.
EXAMPLE_BUDGET_TOKENS = 6000
MAX_EXAMPLES = 2
CHARS_PER_TOKEN = 4  # the estimate used for every prompt figure (tokenizers differ by provider)
STORED_EXAMPLE_LIMIT = 200  # the newest accepted scenarios taken from a store
STORED_MANIFEST_READS = 400  # the most scenario manifests read looking for them

_WORD = re.compile(r"[a-z]{3,}")
_RUN_STAMP = re.compile(r"\d{8}-\d{6}")  # new_run_id's UTC start time
_DOCSTRING = re.compile(r'\s*"""(.*?)"""', re.DOTALL)
_STOPWORDS = frozenset(
    "the and for with into from that this then than are its has must each one two any all not but out "
    "onto over under along which when where what will can may should rests resting fixed free body "
    "bodies scenario task part parts".split()
)


@dataclass(frozen=True)
class ExampleScript:
    """One accepted script the coder may be shown: where it comes from, what it is about, its source."""

    name: str
    family: str
    tiers: tuple[str, ...]
    summary: str
    source: str

    @property
    def tokens(self) -> int:
        return estimate_tokens(self.source)


def estimate_tokens(text: str) -> int:
    """Tokens of ``text`` at ~4 characters per token (English and code)."""
    return max(1, len(text) // CHARS_PER_TOKEN)


def _words(text: str) -> set[str]:
    return {word.removesuffix("s") for word in _WORD.findall(text.lower()) if word not in _STOPWORDS}


def family_examples() -> list[ExampleScript]:
    """The offline author's family templates, one example each."""
    from scenario_lib.authoring.offline import FAMILY_KEYWORDS, template_source
    from scenario_lib.tiers import TIER_PRESETS

    examples = []
    for family, keywords in FAMILY_KEYWORDS.items():
        source = template_source(family)
        # The module docstring by text: ast.parse is not safe to call from several threads at once in
        # CPython 3.11 ("AST constructor recursion depth mismatch"), and seeds run on threads.
        match = _DOCSTRING.match(source)
        docstring = match.group(1).strip() if match else ""
        tiers = tuple(preset.tier.value for preset in TIER_PRESETS.values() if family in preset.families)
        summary = f"{docstring.splitlines()[0] if docstring else family} ({', '.join(keywords)})"
        examples.append(ExampleScript(f"family template {family}", family, tiers, summary, source))
    return examples


def stored_examples(
    store: DatasetStore, limit: int = STORED_EXAMPLE_LIMIT, *, max_reads: int = STORED_MANIFEST_READS
) -> list[ExampleScript]:
    """Accepted scenarios in ``store`` (staging and benchmarks), newest run first, one per distinct script.

    Scripts the offline author wrote are left out: they are the family templates again. The seeds of a
    run share its author, so the first offline manifest read of a run rules the rest of it out unread (a
    run id resumed with another provider mixes authors; its other scenarios are then not examples).
    The cost is a listing of the folders (not of their files) and at most ``max_reads`` manifests: it is
    paid when every run starts, and a store of thousands of offline scenarios once cost half a minute.
    """
    from scenario_lib.errors import ConfigError
    from scenario_lib.store.commit import is_committed
    from scenario_lib.store.layout import BENCHMARKS_PREFIX, STAGING_PREFIX, join_key, parse_scenario_id
    from scenario_lib.validation.artifacts import MANIFEST_FILE, SCRIPT_FILE, parse_scenario_manifest

    folders: list[tuple[str, str, str]] = []  # (run id, scenario id, folder key)
    parents = [STAGING_PREFIX, *(join_key(BENCHMARKS_PREFIX, dest) for dest in store.list_folders(BENCHMARKS_PREFIX))]
    for parent in parents:
        for name in store.list_folders(parent):
            try:
                run_id, _ = parse_scenario_id(name)
            except ConfigError:
                continue  # not a scenario folder (a benchmark's entries/)
            folders.append((run_id, name, join_key(parent, name)))
    folders.sort(key=lambda folder: (_run_started(folder[0]), folder[1]), reverse=True)
    examples: list[ExampleScript] = []
    seen: set[str] = set()
    offline_runs: set[str] = set()
    reads = 0
    for run_id, _, folder in folders:
        if len(examples) >= limit or reads >= max_reads:
            break
        if run_id in offline_runs or not is_committed(store, folder):
            continue
        key = join_key(folder, MANIFEST_FILE)
        reads += 1
        try:
            manifest = parse_scenario_manifest(store.read_bytes(key), url=store.url_for(key))
        except Exception:  # noqa: BLE001 - a damaged file: not an example
            continue
        if manifest.author.startswith("offline"):
            offline_runs.add(run_id)
            continue
        if not manifest.passed or manifest.script_sha256 in seen:
            continue
        seen.add(manifest.script_sha256)
        source = store.read_bytes(join_key(folder, SCRIPT_FILE)).decode("utf-8", "replace")
        summary = f"{manifest.family.replace('_', ' ')}: {manifest.objective} (asked: {manifest.prompt})"
        examples.append(ExampleScript(f"accepted scenario {manifest.id}", manifest.family, (manifest.tier,), summary, source))
    return examples


def _run_started(run_id: str) -> str:
    """The start stamp a generated run id carries (``tier1-20261202-150225-4feb60``), or '' (sorted last)."""
    match = _RUN_STAMP.search(run_id)
    return match.group(0) if match else ""


def select_examples(
    library: Sequence[ExampleScript],
    query: str,
    *,
    tier: str | None = None,
    budget_tokens: int = EXAMPLE_BUDGET_TOKENS,
    max_examples: int = MAX_EXAMPLES,
) -> list[ExampleScript]:
    """The examples closest to ``query`` (word overlap; same tier first), at most ``max_examples``
    whose sources fit ``budget_tokens`` together. Deterministic for the same inputs."""
    wanted = _words(query)

    def score(example: ExampleScript) -> tuple[float, int, str]:
        words = _words(example.summary) | _words(example.family.replace("_", " "))
        overlap = len(wanted & words) / (len(words) ** 0.5 or 1.0)
        return (-(overlap + (0.5 if tier in example.tiers else 0.0)), example.tokens, example.name)

    chosen: list[ExampleScript] = []
    used = 0
    for example in sorted(library, key=score):
        if len(chosen) >= max_examples:
            break
        if used + example.tokens <= budget_tokens and example.family not in {c.family for c in chosen}:
            chosen.append(example)
            used += example.tokens
    return chosen


def family_catalogue(library: Iterable[ExampleScript]) -> str:
    """One line per family the library holds (its tiers and what it is), for the planner."""
    lines: dict[str, str] = {}
    for example in library:
        lines.setdefault(example.family, f"- {example.family} ({', '.join(example.tiers) or 'any tier'}): {example.summary}")
    return "\n".join(lines[family] for family in sorted(lines))


def render_examples(examples: Sequence[ExampleScript]) -> str:
    """The examples as the coder reads them: a heading and the complete script of each."""
    parts = [
        f"Example {index} ({example.name}, accepted by the validator):\n```python\n{example.source.rstrip()}\n```"
        for index, example in enumerate(examples, start=1)
    ]
    return "\n\n".join(parts)


