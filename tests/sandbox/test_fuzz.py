"""Fuzzing the readers of untrusted input: each answers with its own error type, never another exception.

Targets: the benchmark manifest and entry readers, the scenario folder's manifest, MJCF assembly from
scenario contract values, the batch YAML loader, the sandbox result parser, part checks, STL checks and
store keys. Each property runs a short fuzz in ``make test`` and a long one in ``make stress``.
"""

from __future__ import annotations

import json
import math
import posixpath
import string
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from pydantic import ValidationError

from scenario_lib.errors import ConfigError, GeometryError, MjcfError, StoreError

FAST_EXAMPLES = 120
SLOW_EXAMPLES = 3000
TRIED: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def report_inputs_tried() -> Iterator[None]:
    yield
    if TRIED:
        inputs = sum(count for name, count in TRIED.items() if name.startswith("check_"))
        print(f"\nfuzz inputs tried: {inputs} ({', '.join(f'{k} {v}' for k, v in sorted(TRIED.items()))})")


def fuzz(strategy: st.SearchStrategy[Any], examples: int) -> Callable[[Callable[[Any], None]], Callable[..., None]]:
    """``check`` as a hypothesis test over ``strategy`` with ``examples`` examples."""

    def decorate(check: Callable[[Any], None]) -> Callable[..., None]:
        def run(value: Any) -> None:
            TRIED[check.__name__] += 1
            check(value)

        run.__name__ = check.__name__
        return settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        )(given(strategy)(run))

    return decorate


def fast_and_slow(
    strategy: st.SearchStrategy[Any], check: Callable[[Any], None]
) -> tuple[Callable[..., None], Callable[..., None]]:
    return fuzz(strategy, FAST_EXAMPLES)(check), pytest.mark.slow(fuzz(strategy, SLOW_EXAMPLES)(check))


# --- strategies -------------------------------------------------------------------------------------

weird_floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-300, -1e-300, 1e300, -1e300, 1.7976931348623157e308, 5e-324]),
    st.floats(min_value=-1e4, max_value=1e4),
)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**300, max_value=10**310), weird_floats,
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=30,
)


def json_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()  # NaN and Infinity included, as a careless writer would


def mutated(base: dict[str, Any], keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """``base`` with some fields replaced by arbitrary JSON values or removed."""
    return st.dictionaries(st.sampled_from(keys), st.one_of(json_values, st.just(None)), max_size=len(keys)).map(
        lambda changes: {k: v for k, v in (base | changes).items() if k not in changes or changes[k] is not None}
    )


def document_bytes(base: dict[str, Any]) -> st.SearchStrategy[bytes]:
    keys = [*base, "extra"]
    return st.one_of(
        st.binary(max_size=200),
        json_values.map(json_bytes),
        mutated(base, keys).map(json_bytes),
        st.integers(min_value=1, max_value=5000).map(lambda depth: b"[" * depth + b"]" * depth),
    )


ENTRY = {
    "format_version": 1,
    "scenario_id": "run_1",
    "run_id": "run",
    "seed": 1,
    "path": "benchmarks/v1/run_1",
    "files": ["scene.xml"],
    "promoted_at": "2026-01-01T00:00:00Z",
}
MANIFEST = {"format_version": 1, "dest": "v1", "updated_at": "2026-01-01T00:00:00Z", "entries": [ENTRY]}
SCENARIO_MANIFEST = {
    "format_version": 1,
    "id": "run_1",
    "tier": "tier1",
    "family": "peg",
    "prompt": "p",
    "author": "offline:default",
    "seed": 1,
    "scale": [1.0, 1.0, 1.0],
    "objective": "o",
    "passed": True,
    "stage_reached": "task",
    "script_sha256": "0" * 64,
    "files": [{"path": "scene.xml", "sha256": "0" * 64, "size_bytes": 1}],
}


# --- the manifest readers ---------------------------------------------------------------------------


def check_benchmark_manifest(data: bytes) -> None:
    from scenario_lib.runs.promotion import BenchmarkManifest, parse_manifest
    from scenario_lib.store.layout import validate_key

    try:
        manifest = parse_manifest(data, url="s3://bucket/benchmarks/v1/manifest.json")
    except StoreError as err:
        assert "benchmarks/v1/manifest.json" in str(err)
        return
    assert isinstance(manifest, BenchmarkManifest)
    for entry in manifest.entries:  # whatever was accepted stays inside the store
        validate_key(entry.path)


def check_benchmark_entry(data: bytes) -> None:
    from scenario_lib.runs.promotion import ManifestEntry, parse_entry

    try:
        assert isinstance(parse_entry(data, url="file:///store/benchmarks/v1/entries/run_1.json"), ManifestEntry)
    except StoreError as err:
        assert "entries/run_1.json" in str(err)


def check_scenario_manifest(data: bytes) -> None:
    from scenario_lib.validation.artifacts import ScenarioManifest, parse_scenario_manifest

    try:
        manifest = parse_scenario_manifest(data, url="file:///store/staging/run_1/manifest.json")
        assert isinstance(manifest, ScenarioManifest)
    except StoreError as err:
        assert "staging/run_1/manifest.json" in str(err)


test_benchmark_manifest_reader, test_benchmark_manifest_reader_long = fast_and_slow(
    document_bytes(MANIFEST), check_benchmark_manifest
)
test_benchmark_entry_reader, test_benchmark_entry_reader_long = fast_and_slow(
    document_bytes(ENTRY), check_benchmark_entry
)
test_scenario_manifest_reader, test_scenario_manifest_reader_long = fast_and_slow(
    document_bytes(SCENARIO_MANIFEST), check_scenario_manifest
)


# --- MJCF assembly from contract values ----------------------------------------------------------------

names = st.sampled_from(["base", "cube", "lever", "peg", "a", "Z9"])


def scenarios(
    number: st.SearchStrategy[float], positive: st.SearchStrategy[float], *, wild: bool
) -> st.SearchStrategy[dict[str, Any]]:
    """Scenario dicts whose numbers come from ``number``/``positive``; ``wild`` also breaks the structure."""
    vec3 = st.tuples(number, number, number)
    positive3 = st.tuples(positive, positive, positive)
    pose = st.fixed_dictionaries({}, optional={"position_mm": vec3, "euler_deg": vec3})
    motion = st.one_of(
        st.just({"kind": "fixed"}),
        st.just({"kind": "free"}),
        st.fixed_dictionaries({"kind": st.just("hinge"), "axis": vec3}, optional={"range_deg": st.tuples(number, number)}),
        st.fixed_dictionaries({"kind": st.just("slide"), "axis": vec3}, optional={"range_mm": st.tuples(number, number)}),
    )
    primitive = st.one_of(
        st.fixed_dictionaries({"kind": st.just("box"), "half_size_mm": positive3}, optional={"pose": pose}),
        st.fixed_dictionaries({"kind": st.just("cylinder"), "radius_mm": positive, "half_length_mm": positive}),
        st.fixed_dictionaries({"kind": st.just("sphere"), "radius_mm": positive}, optional={"pose": pose}),
    )
    collisions = ["auto", "primitives", "hull", "decompose"] + (["bogus"] if wild else [])
    body = st.fixed_dictionaries(
        {"name": names},
        optional={
            "motion": motion if not wild else motion | json_values,
            "pose": pose,
            "parent": st.one_of(st.none(), st.none(), names),
            "collision": st.sampled_from(collisions),
            "primitives": st.lists(primitive, max_size=3),
            "density_kg_m3": positive,
            "friction": positive,
            "rgba": st.tuples(number, number, number, number),
        },
    )
    zone = st.fixed_dictionaries({"name": names, "center_mm": vec3, "half_extents_mm": positive3})
    condition = st.recursive(
        st.one_of(
            st.fixed_dictionaries({"kind": st.just("inside_zone"), "body": names, "zone": zone}),
            st.fixed_dictionaries({"kind": st.just("joint_in_range"), "body": names, "low": number, "high": number}),
        ),
        lambda inner: st.fixed_dictionaries(
            {"kind": st.just("all_of"), "conditions": st.lists(inner, min_size=0 if wild else 1, max_size=3)}
        ),
        max_leaves=4,
    )
    bodies = st.lists(body, min_size=1, max_size=5, unique_by=lambda item: str(item["name"]))
    return st.fixed_dictionaries(
        {
            "family": st.text(min_size=0 if wild else 1, max_size=70 if wild else 64),
            "objective": st.text(min_size=1, max_size=30),
            "bodies": bodies | st.lists(body, max_size=3) if wild else bodies,
            "success": condition,
        },
        optional={"timestep_s": number, "parameters": st.dictionaries(st.text(max_size=8), number, max_size=3)},
    )


# Plausible scenarios (every number inside the contract's bounds, however extreme) reach the assembly;
# wild ones test the contract's refusals.
in_bounds = st.one_of(
    st.floats(min_value=-1e3, max_value=1e3),
    st.floats(min_value=-1e9, max_value=1e9),
    st.sampled_from([0.0, -0.0, 1e-300, 1e9, -1e9]),
)
in_bounds_positive = st.one_of(st.floats(min_value=1e-3, max_value=1e3), st.floats(min_value=5e-324, max_value=1e9))
scenario_dicts = st.one_of(
    scenarios(in_bounds, in_bounds_positive, wild=False),
    scenarios(in_bounds, in_bounds_positive, wild=False),
    scenarios(weird_floats, weird_floats, wild=True),
)
hull_counts = st.dictionaries(names, st.integers(min_value=-3, max_value=4), max_size=4)


def check_mjcf_assembly(case: tuple[dict[str, Any], dict[str, int], bool]) -> None:
    from scenario_lib.contract import Scenario
    from scenario_lib.scene.mjcf import assemble_mjcf

    raw, counts, complete = case
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError:
        TRIED["mjcf: refused by the contract"] += 1
        return
    if complete:  # as the validator calls it: pieces for every body (more than the decomposed ones need)
        counts = {body.name: max(1, counts.get(body.name, 1)) for body in scenario.bodies}
    try:
        xml = assemble_mjcf(scenario, counts)
    except MjcfError:
        TRIED["mjcf: refused by assembly"] += 1
        return
    TRIED["mjcf: assembled"] += 1
    root = etree.fromstring(xml.encode("utf-8"))  # well-formed whatever the family name holds
    assert root.tag == "mujoco" and len(root.get("model", "")) == len(scenario.family)
    for element in root.iter():
        for attribute, value in element.attrib.items():
            if attribute not in ("model", "name", "mesh", "file"):  # every number in the model is finite
                assert not any(word in value.lower() for word in ("nan", "inf")), (element.tag, attribute, value)


test_mjcf_assembly, test_mjcf_assembly_long = fast_and_slow(
    st.tuples(scenario_dicts, hull_counts, st.booleans()), check_mjcf_assembly
)


# --- the batch YAML loader ------------------------------------------------------------------------------

batch_scalars = st.one_of(
    st.sampled_from(["offline", "openai", "tier1", "tier2", "all", "test_dummy", "gpt-4o-mini", "", "..", "a/b"]),
    st.integers(min_value=-5, max_value=20_000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)
batch_values = st.recursive(
    batch_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.sampled_from(["openai", "offline", "x"]), children, max_size=2)
    ),
    max_leaves=8,
)
experiment_fields = ["providers", "models", "tiers", "temperatures", "counts", "prompt", "base_seed", "headroom",
                     "max_concurrency", "api_key_env", "base_url", "name", "bogus"]
experiment = st.dictionaries(st.sampled_from(experiment_fields), batch_values, max_size=5)
batch_documents = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(st.sampled_from(["campaign", "../x", "", "a" * 70]), batch_scalars),
        "description": st.text(max_size=10),
        "defaults": experiment,
        "experiments": st.lists(experiment, max_size=3),
        "unknown": batch_scalars,
    },
)
batch_texts = st.one_of(
    batch_documents.map(lambda doc: yaml.safe_dump(doc, allow_unicode=True)),
    st.text(alphabet=string.printable + "{}[]:-&*!|>'\"%@`\t", max_size=200),
    st.sampled_from(["", "---", "- a\n- b", "a: [", "&a [*a]", "!!python/object:os.system {}", "name: x\nname: y\n"]),
)


def check_batch_loader(text: str) -> None:
    from scenario_lib.runs.batch_spec import parse_batch, plan_batch

    try:
        plan = plan_batch(parse_batch(text, source="fuzz.yaml"), source="fuzz.yaml")
    except ConfigError:
        return
    assert plan.units and all(unit.count >= 1 for unit in plan.units)


test_batch_loader, test_batch_loader_long = fast_and_slow(batch_texts, check_batch_loader)


# --- what comes back from the sandbox -------------------------------------------------------------------

frame_headers = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"failure": st.one_of(st.none(), st.sampled_from(["timeout", "crash", "nope"]), json_values)},
        optional={
            "message": json_values,
            "timings_s": st.one_of(st.dictionaries(st.text(max_size=5), json_scalars, max_size=3), json_values),
            "scenario_json": st.one_of(st.text(max_size=30), json_values),
            "bodies": st.lists(
                st.fixed_dictionaries({"name": json_scalars, "check": json_scalars, "stl_bytes": json_scalars}), max_size=3
            ),
        },
    ),
)
raw_frames = st.one_of(
    st.binary(max_size=100),
    st.tuples(frame_headers, st.binary(max_size=64)).map(
        lambda pair: _frame(pair[0], pair[1])
    ),
)


def _frame(header: Any, payload: bytes) -> bytes:
    from scenario_lib.sandbox.protocol import encode_frame

    if isinstance(header, dict):
        return encode_frame(header, payload)
    text = json.dumps(header).encode()
    return len(text).to_bytes(4, "big") + text + payload


def check_sandbox_result(result: bytes) -> None:
    from scenario_lib.sandbox.limits import SandboxLimits
    from scenario_lib.sandbox.outcome import BuildOutcome, outcome_from_worker

    done = {"op": "done", "exit_code": 0, "signal": None, "cpu_s": 0.1, "output_tail": ""}
    outcome = outcome_from_worker(done, result, SandboxLimits(), 0.1)
    assert isinstance(outcome, BuildOutcome) and (outcome.ok or outcome.failure is not None)


test_sandbox_result_parser, test_sandbox_result_parser_long = fast_and_slow(raw_frames, check_sandbox_result)


PART_CHECK = {
    "n_solids": 1,
    "is_valid": True,
    "volume_mm3": 1.0,
    "self_intersecting": False,
    "bbox_min_mm": [0, 0, 0],
    "bbox_max_mm": [1, 1, 1],
    "errors": [],
}


def check_part_check(data: bytes) -> None:
    from scenario_lib.scene.geometry import PartCheck

    try:
        assert isinstance(PartCheck.from_json(data), PartCheck)
    except GeometryError:
        pass


test_part_check_parser, test_part_check_parser_long = fast_and_slow(document_bytes(PART_CHECK), check_part_check)


def check_stl(data: bytes) -> None:
    from scenario_lib.scene.geometry import check_mesh

    mesh = check_mesh(data)
    assert mesh.ok is False or (mesh.triangles > 0 and math.isfinite(mesh.volume_mm3))


def _box_stl() -> bytes:
    import io

    import trimesh

    buffer = io.BytesIO()
    trimesh.creation.box(extents=(20, 20, 20)).export(buffer, file_type="stl")
    return buffer.getvalue()


BOX_STL = _box_stl()


def _moved_corners(moves: list[tuple[int, float, float, float]]) -> bytes:
    """The box with some of its 36 triangle corners moved: still 12 triangles, closed or nearly."""
    import struct

    data = bytearray(BOX_STL)
    for corner, x, y, z in moves:
        triangle, index = divmod(corner % 36, 3)
        struct.pack_into("<fff", data, 84 + 50 * triangle + 12 + 12 * index, x, y, z)
    return bytes(data)


float32s = st.one_of(st.floats(width=32), st.sampled_from([0.0, 10.0, -10.0, 1e-30, 1e9, 3e38]))
stl_like = st.one_of(
    st.lists(st.tuples(st.integers(0, 35), float32s, float32s, float32s), min_size=1, max_size=6).map(_moved_corners),
    st.binary(max_size=300),
    st.tuples(st.binary(min_size=80, max_size=80), st.lists(st.binary(min_size=50, max_size=50), max_size=8)).map(
        lambda parts: parts[0] + len(parts[1]).to_bytes(4, "little") + b"".join(parts[1])
    ),
)
test_stl_check, test_stl_check_long = fast_and_slow(stl_like, check_stl)


# --- store keys and ids ------------------------------------------------------------------------------

key_text = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(["..", ".", "", "a", "b_1", "/", "\\", "\x00", "run-1_0", "~", "%2e%2e"]), max_size=6).map(
        "/".join
    ),
)


def check_store_key(key: str) -> None:
    from scenario_lib.store.layout import parse_scenario_id, validate_key, validate_name

    try:
        normalized = validate_key(key)
    except ConfigError:
        pass
    else:
        joined = posixpath.normpath(posixpath.join("/store/root", normalized))
        assert joined.startswith("/store/root/") and "\x00" not in normalized
    for check in (validate_name, parse_scenario_id):
        try:
            check(key)  # type: ignore[operator]
        except ConfigError:
            continue
        assert "/" not in key and ".." not in key and "\\" not in key and key.strip() == key


test_store_keys, test_store_keys_long = fast_and_slow(key_text, check_store_key)
