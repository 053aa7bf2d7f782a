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
STORED_EXAMPLE_LIMIT = 200  # the newest accepted scenarios read from a store

_WORD = re.compile(r"[a-z]{3,}")
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


def stored_examples(store: DatasetStore, limit: int = STORED_EXAMPLE_LIMIT) -> list[ExampleScript]:
    """Accepted scenarios in ``store`` (staging and benchmarks), newest first, one per distinct script.

    Scripts the offline author wrote are left out: they are the family templates again.
    """
    from scenario_lib.validation.artifacts import MANIFEST_FILE, SCRIPT_FILE, parse_scenario_manifest
    from scenario_lib.store.commit import is_committed
    from scenario_lib.store.layout import BENCHMARKS_PREFIX, STAGING_PREFIX

    manifests = [
        key
        for prefix in (STAGING_PREFIX, BENCHMARKS_PREFIX)
        for key in store.list_files(prefix)
        if key.endswith("/" + MANIFEST_FILE) and not key.endswith("/entries/" + MANIFEST_FILE)
    ]
    examples: list[ExampleScript] = []
    seen: set[str] = set()
    for key in sorted(manifests, reverse=True):
        if len(examples) >= limit:
            break
        folder = key.rsplit("/", 1)[0]
        if not is_committed(store, folder):
            continue
        try:
            manifest = parse_scenario_manifest(store.read_bytes(key), url=store.url_for(key))
        except Exception:  # noqa: BLE001 - a benchmark's own manifest or a damaged file: not an example
            continue
        if not manifest.passed or manifest.author.startswith("offline") or manifest.script_sha256 in seen:
            continue
        seen.add(manifest.script_sha256)
        source = store.read_bytes(f"{folder}/{SCRIPT_FILE}").decode("utf-8", "replace")
        summary = f"{manifest.family.replace('_', ' ')}: {manifest.objective} (asked: {manifest.prompt})"
        examples.append(ExampleScript(f"accepted scenario {manifest.id}", manifest.family, (manifest.tier,), summary, source))
    return examples


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


