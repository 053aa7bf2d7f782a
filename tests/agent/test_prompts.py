"""What the agent's prompts carry (the generated contract reference, retrieved examples, the stage rules)
and feedback that teaches: every contract mistake of a build at once, with the valid fields and hints.

Real sandbox, real validator, real build123d; the model is the scripted one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from scenario_lib import contract
from scenario_lib.agent import GenerationRequest, ScenarioPlan, StopReason, run_agent
from scenario_lib.agent.examples import ExampleScript, family_examples, select_examples, stored_examples
from scenario_lib.agent.prompts import CODER_INSTRUCTIONS, PromptSet, coder_messages, planner_messages
from scenario_lib.agent.reference import contract_reference, reference_sections
from scenario_lib.errors import ConfigError
from scenario_lib.tiers import Tier
from tests.scripted_model import APPROVE, ScriptedChatModel, fenced
from tests.support import SCRIPTS

GOOD = (SCRIPTS / "dummy_box.py").read_text()
PLAN = ScenarioPlan(family="push_box", summary="push a cube into a goal zone")
CONTRACT_MODELS = [
    contract.Pose, contract.Body, contract.Hinge, contract.Slide, contract.Box, contract.Cylinder, contract.Sphere,
    contract.Zone, contract.InsideZone, contract.JointInRange, contract.AllOf, contract.ParameterRange,
    contract.ScaleLimits, contract.Scenario,
]  # fmt: skip
# Three wrong names a model guessed, each in a different object of one build.
WRONG_NAMES = (
    GOOD.replace("pose=Pose(position_mm=(0, 0, -5))", "pose=Pose(position=(0, 0, -5))")
    .replace("motion=FREE,", "joint=FREE,")
    .replace("Zone(name=\"goal\", center_mm=", "Zone(name=\"goal\", center=")
)


def test_the_reference_lists_every_field_of_every_contract_model_with_its_unit() -> None:
    reference = contract_reference()
    for model in CONTRACT_MODELS:
        for name in contract.public_fields(model):
            assert f"- {model.__name__}.{name}:" in reference, (model.__name__, name)
    assert "- Pose.position_mm: (float, float, float) [mm], default (0.0, 0.0, 0.0)" in reference
    assert "- Hinge.range_deg: (float, float) | None [degrees], default None" in reference
    assert "- Body.density_kg_m3: float (> 0) [kg/m³], default 1000.0" in reference
    assert "- Body.motion: Fixed | Free | Hinge | Slide, default FIXED" in reference
    assert "Keyword arguments only" in reference


def test_the_reference_is_generated_so_a_new_field_shows_up_without_editing_a_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    class Pose(contract.Pose):
        """A rigid placement (with a tilt, for this test)."""

        tilt_deg: float = 0.0

    class Magnet(contract._Frozen):
        """A magnet that holds a body (a contract model added later)."""

        strength_n: float
        gap_mm: float = 1.0

    monkeypatch.setattr(contract, "Pose", Pose)
    monkeypatch.setattr(contract, "Magnet", Magnet, raising=False)
    contract_reference.cache_clear()
    try:
        reference = contract_reference()
    finally:
        monkeypatch.undo()
        contract_reference.cache_clear()
    assert "- Pose.tilt_deg: float [degrees], default 0.0" in reference
    assert "### Magnet" in reference and "- Magnet.gap_mm: float [mm], default 1.0" in reference
    assert "tilt_deg" not in contract_reference()


def test_the_static_part_comes_first_and_is_the_same_for_every_request() -> None:
    library = family_examples()
    first = coder_messages(GenerationRequest(tier=Tier.TIER1, seed=1), "a peg", PLAN, 1, "", [], library=library)
    second = coder_messages(GenerationRequest(tier=Tier.TIER2, seed=9), "a door", PLAN, 3, GOOD, [], library=library)
    assert first[0].type == "system" and first[0].content == second[0].content
    assert reference_sections() in str(first[0].content)
    assert "```json" in str(first[-1].content).splitlines()[-3]  # the request block stays last
    planner = planner_messages(GenerationRequest(tier=Tier.TIER1), "a peg", library=library)
    # The planner sees the families that exist.
    assert all(f"- {family} (" in str(planner[1].content) for family in ("peg_in_hole", "lever", "stacking"))


def test_rendering_the_prompts_loads_neither_mujoco_nor_build123d() -> None:
    # The agent runs in the flow-run process, which validates through the sandbox and the validation service:
    # its prompts quote the stage limits (scenario_lib.scene.limits), and taking them must not import MuJoCo
    # (~0.25 CPU-s a flow run, on the first seeds' path to the validator).
    code = (
        "import sys\n"
        "from scenario_lib.agent.prompts import coder_messages, planner_messages, reviewer_messages\n"
        "from scenario_lib.agent import GenerationRequest, ScenarioPlan\n"
        "from scenario_lib.tiers import Tier\n"
        "request = GenerationRequest(tier=Tier.TIER1, seed=1)\n"
        "plan = ScenarioPlan(family='push_box', summary='push a cube')\n"
        "planner_messages(request, 'a cube'); coder_messages(request, 'a cube', plan, 1, '', [])\n"
        "reviewer_messages(request, plan, 'def build(seed, scale): pass', 1)\n"
        "print(sorted(m for m in ('build123d', 'mujoco', 'OpenGL') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


@pytest.mark.parametrize(
    ("request_text", "tier", "expected_first"),
    [
        ("A drawer that slides out of a fixed cabinet on a rail; pull it at least two thirds open", "tier2", "slider"),
        ("insert a square peg into a hole", "tier1", "peg_in_hole"),
        ("stack three blocks into a tower", "tier1", "stacking"),
        ("open the lid of a box on its hinge", "tier2", "hinged_door"),
    ],
    ids=["drawer", "peg", "stack", "lid"],
)
def test_examples_are_the_closest_complete_scripts_within_the_budget(request_text: str, tier: str, expected_first: str) -> None:
    chosen = select_examples(family_examples(), request_text, tier=tier, budget_tokens=6000)
    assert chosen[0].family == expected_first
    assert 1 <= len(chosen) <= 2 and sum(example.tokens for example in chosen) <= 6000
    assert all("def build(" in example.source for example in chosen)
    assert select_examples(family_examples(), request_text, tier=tier, budget_tokens=100) == []


def test_the_library_grows_with_accepted_scenarios_of_the_store(dataset_store: Any, tmp_path: Path) -> None:
    from scenario_lib.validation.artifacts import MANIFEST_FILE, SCRIPT_FILE, ScenarioManifest
    from scenario_lib.store.commit import commit_scenario
    from scenario_lib.store.layout import staging_prefix

    drawer_script = GOOD.replace('family="push_box"', 'family="drawer"')
    # A run's seeds share its author: run1 by a hosted model, run2 by the offline author.
    scenarios = [("run1_1", "openai:gpt", True), ("run1_3", "openai:gpt", False)]
    scenarios += [(f"run2_{seed}", "offline:default", True) for seed in range(6)]
    for scenario_id, author, passed in scenarios:
        folder = tmp_path / scenario_id
        folder.mkdir()
        (folder / SCRIPT_FILE).write_text(drawer_script)
        manifest = ScenarioManifest(
            id=scenario_id, tier="tier2", family="drawer", prompt="a drawer in a cabinet", author=author, seed=1,
            scale=(1, 1, 1), objective="Pull the drawer two thirds open.", passed=passed, stage_reached="task",
            script_sha256=scenario_id,
        )  # fmt: skip
        (folder / MANIFEST_FILE).write_text(manifest.model_dump_json())
        commit_scenario(dataset_store, folder, staging_prefix(scenario_id))

    manifests_read: list[str] = []
    read_bytes = dataset_store.read_bytes

    def counting_read(key: str) -> bytes:
        if key.endswith(MANIFEST_FILE):
            manifests_read.append(key)
        return read_bytes(key)

    dataset_store.read_bytes = counting_read
    stored = stored_examples(dataset_store)

    assert [example.name for example in stored] == ["accepted scenario run1_1"]  # passed, not the offline author's
    # One manifest of the offline run rules out the run: reads grow with runs, not with scenarios.
    assert len(manifests_read) == 3 and sum("run2_" in key for key in manifests_read) == 1
    library = [*family_examples(), *stored]
    chosen = select_examples(library, "pull a drawer out of its cabinet", tier="tier2")
    assert chosen[0].name == "accepted scenario run1_1" and chosen[0].source == drawer_script


def test_prompt_overrides_replace_a_roles_instructions(tmp_path: Path) -> None:
    (tmp_path / "coder.md").write_text("You write scenario scripts. Be brief.\n")
    prompts = PromptSet.from_folder(tmp_path)
    messages = coder_messages(GenerationRequest(tier=Tier.TIER1), "a peg", PLAN, 1, "", [], prompts=prompts)
    system = str(messages[0].content)
    assert system.startswith("You write scenario scripts. Be brief.") and CODER_INSTRUCTIONS not in system
    assert contract_reference() in system  # the generated reference stays
    assert prompts.planner == PromptSet().planner
    with pytest.raises(ConfigError, match="does not exist; create it with any of planner.md, coder.md, reviewer.md"):
        PromptSet.from_folder(tmp_path / "no-such-folder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds none of"):
        PromptSet.from_folder(tmp_path / "empty")


def test_scenarios_agent_prompt_shows_every_field_and_a_complete_accepted_script(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "scenario_lib", "agent", "prompt", "--role", "coder", "--tier", "tier1", "--store", f"file://{tmp_path / 'store'}"],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for model in CONTRACT_MODELS:
        for name in contract.public_fields(model):
            assert f"{model.__name__}.{name}" in out
    assert "Example 1 (family template" in out and "def build(seed: int, scale: tuple[float, float, float]) -> Scenario:" in out
    assert "===== system message · coder · ≈ " in out and "===== total ≈ " in out
    as_json = subprocess.run(
        [sys.executable, "-m", "scenario_lib", "agent", "prompt", "--role", "reviewer", "--tier", "2", "--json", "--store", f"file://{tmp_path / 'store'}"],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )  # fmt: skip
    payload = json.loads(as_json.stdout)
    assert [m["role"] for m in payload["messages"]] == ["system", "human"] and payload["total_tokens"] > 2000
    assert "Script:\n```python" in payload["messages"][1]["content"]
    bad = subprocess.run(
        [sys.executable, "-m", "scenario_lib", "agent", "prompt", "--tier", "tier9"],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert bad.returncode == 2 and "unknown tier 'tier9'" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize(
    ("model", "given", "expected"),
    [
        (contract.Pose, {"position": (0, 0, 1)}, "Pose has no field 'position'; Pose has position_mm, euler_deg; did you mean position_mm?"),
        (contract.Hinge, {"axis": (0, 0, 1), "range": (0, 90)}, "did you mean range_deg?"),
        (contract.Slide, {"axis": (1, 0, 0), "range_deg": (0, 9)}, "Slide has axis, range_mm, damping; did you mean range_mm?"),
        (contract.Zone, {"name": "g", "shape": "box", "center_mm": (0, 0, 0), "half_extents_mm": (1, 1, 1)}, "Zone has no field 'shape'; Zone has name, center_mm, half_extents_mm"),
        (contract.Body, {"name": "b", "pose": (1, 2, 3)}, "Body.pose: expected a Pose(...) object (keyword arguments), got (1, 2, 3)"),
        (contract.Zone, {"name": "g", "center_mm": (0, 0, 0)}, "Zone needs half_extents_mm ((float, float, float))"),
    ],
    ids=["pose-position", "hinge-range", "slide-range-deg", "zone-shape", "body-pose-tuple", "zone-missing"],
)
def test_a_contract_error_names_the_valid_fields_and_the_closest(model: type[BaseModel], given: dict[str, Any], expected: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as caught:
        model(**given)
    assert any(expected in problem for problem in contract.describe_validation_error(caught.value, model))


def test_contract_models_are_keyword_only_and_say_so() -> None:
    with pytest.raises(TypeError, match=r"Pose\(\) takes keyword arguments only; its fields are position_mm, euler_deg"):
        contract.Pose((0, 0, 1))  # type: ignore[misc]
    with pytest.raises(TypeError, match="collision primitive; for a build123d solid import `from build123d import Box as SolidBox`"):
        contract.Box(10, 10, 10)  # type: ignore[misc]


def test_the_code_stage_reports_every_contract_error_of_a_build_at_once(validator: Any) -> None:
    report, _ = validator.validate_script(WRONG_NAMES)

    failure = report.seeds[0].first_failure
    assert failure is not None and failure.stage.value == "code"
    message = failure.message
    assert "made 3 invalid contract object(s)" in message
    assert "Pose has no field 'position'; Pose has position_mm, euler_deg; did you mean position_mm?" in message
    assert "Body has no field 'joint'; Body has name, part, motion" in message and "did you mean motion?" in message
    assert "Zone has no field 'center'; Zone has name, center_mm, half_extents_mm; did you mean center_mm?" in message
    assert "script line" in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("    cube = SolidBox(sx, sy, sz)\n", "    cube = SolidBox(sx, sy, sz)\n    assert cube.is_valid()\n"), "`is_valid` is a property"),
        (("import random\n", "import random\nimport cadquery\n"), "the sandbox has only random, math, build123d, scenario_lib.contract"),
        (("from build123d import Box as SolidBox\n", ""), "`from build123d import Box as SolidBox`"),
        (("from scenario_lib.contract import FREE,", "from scenario_lib.contract import Cuboid, FREE,"), "scenario_lib.contract exports AllOf, Body"),
    ],
    ids=["is-valid-call", "cadquery", "solid-name", "contract-import"],
)
def test_common_mistakes_get_a_hint(validator: Any, change: tuple[str, str], expected: str) -> None:
    assert change[0] in GOOD
    report, _ = validator.validate_script(GOOD.replace(*change))
    failure = report.seeds[0].first_failure
    assert failure is not None and failure.stage.value == "code" and expected in failure.message, failure


def test_the_coder_is_told_the_valid_fields_and_repairs_a_wrong_name(validator: Any) -> None:
    model = ScriptedChatModel(
        answers={
            "planner": [fenced("json", PLAN.model_dump_json())],
            "coder": [fenced("python", WRONG_NAMES), fenced("python", GOOD)],
            "reviewer": [APPROVE],
        }
    )
    request = GenerationRequest(tier=Tier.TEST_DUMMY, prompt="push a cube", seed=2)

    outcome = run_agent(request, validator=validator, chat_model=model, max_attempts=3)

    assert outcome.verdict is StopReason.ACCEPTED and [a.stage_reached for a in outcome.attempts] == ["code", "solvability"]
    repair = model.prompts["coder"][1]
    assert "Pose has position_mm, euler_deg; did you mean position_mm?" in str(repair[-1].content)
    assert "Zone has name, center_mm, half_extents_mm; did you mean center_mm?" in str(repair[-1].content)
    # The repair prompt keeps the API reference (and the examples).
    assert contract_reference() in str(repair[0].content) and "Example 1 (family template" in str(repair[-1].content)


def test_an_example_library_can_be_replaced(validator: Any) -> None:
    mine = ExampleScript("my example", "push_box", ("test_dummy",), "push a cube", GOOD)
    model = ScriptedChatModel(
        answers={"planner": [fenced("json", PLAN.model_dump_json())], "coder": [fenced("python", GOOD)], "reviewer": [APPROVE]}
    )
    run_agent(GenerationRequest(tier=Tier.TEST_DUMMY, prompt="push a cube"), validator=validator, chat_model=model, examples=[mine])
    coder_prompt = str(model.prompts["coder"][0][-1].content)
    assert "Example 1 (my example, accepted by the validator)" in coder_prompt and "family template" not in coder_prompt
