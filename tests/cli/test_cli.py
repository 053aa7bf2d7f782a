"""The `scenarios` CLI driven through Typer's runner on real runs (test_dummy tier, offline provider, real stores)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from scenario_lib.cli import app
from scenario_lib.config import Settings, load_settings
from scenario_lib.store.commit import list_scenarios
from scenario_lib.store.dataset import DatasetStore
from scenario_lib.store.layout import COMMIT_MARKER
from tests.s3_server import ACCESS_KEY, SECRET_KEY, MotoS3Server
from tests.support import REPO

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Keys a developer may have exported must not leak into the tests' choice of providers.
PROVIDER_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "SCENARIOS_LLM__API_KEY")


def cli_env(tmp: Path, **extra: str | None) -> dict[str, str | None]:
    """A clean environment: a store and settings file of the test's own, two harness seeds, wide output."""
    env: dict[str, str | None] = {name: None for name in PROVIDER_KEYS}
    env |= {
        "SCENARIOS_CONFIG": str(tmp / "absent.toml"),
        "SCENARIOS_STORE__URL": f"file://{tmp / 'store'}",
        "SCENARIOS_STORE__ENDPOINT_URL": None,
        "SCENARIOS_LLM__PROVIDER": None,
        "SCENARIOS_VALIDATION__SEEDS": "2",
        "PREFECT_API_URL": None,
        "COLUMNS": "400",
    }
    return env | extra


def invoke(args: list[str], env: Mapping[str, str | None]) -> Result:
    return CliRunner().invoke(app, args, env=dict(env), catch_exceptions=False)


def assert_one_paragraph_error(result: Result, *needles: str) -> None:
    """Exit non-zero with one paragraph on stderr that says what went wrong, and no traceback."""
    assert result.exit_code != 0, result.output
    error = result.stderr.strip()
    assert error.startswith("error:"), result.output
    assert "\n\n" not in error and "Traceback" not in result.output
    for needle in needles:
        assert needle in error, error


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One real run of two test_dummy scenarios (default run id), read back as JSON."""
    tmp = tmp_path_factory.mktemp("generated")
    env = cli_env(tmp)
    result = invoke(["generate", "--tier", "test_dummy", "--count", "2", "--concurrency", "2", "--json"], env)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    return {
        "env": env,
        "tmp": tmp,
        "summary": summary,
        "store": DatasetStore.from_url(str(env["SCENARIOS_STORE__URL"])),
    }


# --- start-up and the command list ---------------------------------------------------------------------


def test_help_runs_as_a_module_without_loading_heavy_libraries() -> None:
    result = subprocess.run([sys.executable, "-m", "scenario_lib", "--help"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0
    for command in (
        "generate",
        "list",
        "promote",
        "show",
        "providers",
        "config",
        "batch",
        "traces",
        "analyze",
        "compare",
    ):
        assert command in result.stdout
    code = (
        "import sys; from scenario_lib.cli import app; "
        "heavy = ('build123d', 'mujoco', 'langgraph', 'prefect', 'scipy', 'matplotlib'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_the_console_script_points_at_the_app() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, name = scripts["scenarios"].partition(":")
    assert getattr(__import__(module, fromlist=[name]), name) is app


def test_tiers_and_version(tmp_path: Path) -> None:
    tiers = invoke(["tiers", "--json"], cli_env(tmp_path))
    assert tiers.exit_code == 0 and json.loads(tiers.stdout)["tier2"]["families"][0] == "lever"
    version = invoke(["version"], cli_env(tmp_path))
    assert version.exit_code == 0 and "mujoco" in version.stdout


# --- the end-to-end path ---------------------------------------------------------------------------------


def test_generate_one_scenario_then_promote_it(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    store = DatasetStore.from_url(f"file://{tmp_path / 'store'}")

    generated = invoke(["generate", "--count", "1", "--tier", "test_dummy", "--run-id", "e2e"], env)

    assert generated.exit_code == 0, generated.output
    assert "Generating 1/1... [Success]" in generated.stdout
    assert "1/1 (complete)" in generated.stdout and "staging/e2e_*" in generated.stdout
    assert list_scenarios(store, "staging") == ["e2e_0"]
    files = {key.removeprefix("staging/e2e_0/") for key in store.list_files("staging/e2e_0")}
    assert {"scenario.py", "scene.xml", "validation.json", "manifest.json", COMMIT_MARKER} <= files
    assert any(name.startswith("meshes/") for name in files)
    assert json.loads(store.read_bytes("runs/e2e.json"))["outcomes"][0]["passed"] is True

    promoted = invoke(["promote", "e2e", "--dest", "smoke"], env)

    assert promoted.exit_code == 0, promoted.output
    assert "e2e_0" in promoted.stdout and "promoted" in promoted.stdout
    assert list_scenarios(store, "staging") == []
    assert list_scenarios(store, "benchmarks/smoke") == ["e2e_0"]
    benchmark_files = {
        key.removeprefix("benchmarks/smoke/e2e_0/") for key in store.list_files("benchmarks/smoke/e2e_0")
    }
    assert benchmark_files == files
    manifest = json.loads(store.read_bytes("benchmarks/smoke/manifest.json"))
    assert [entry["scenario_id"] for entry in manifest["entries"]] == ["e2e_0"]
    assert manifest["entries"][0]["path"] == "benchmarks/smoke/e2e_0"
    assert store.exists("benchmarks/smoke/entries/e2e_0.json")
    listed = invoke(["list", "benchmarks", "--dest", "smoke", "--json"], env)
    assert [(row["id"], row["tier"], row["family"], row["verdict"]) for row in json.loads(listed.stdout)] == [
        ("e2e_0", "test_dummy", "push_box", "passed")
    ]
    again = invoke(["promote", "e2e_0", "--dest", "smoke", "--json"], env)
    assert again.exit_code == 0 and json.loads(again.stdout)["already_present"] == ["e2e_0"]


# --- commands on a generated run ---------------------------------------------------------------------------


def test_generate_prints_the_summary_as_json(generated: dict[str, Any]) -> None:
    summary = generated["summary"]
    assert summary["tier"] == "test_dummy" and summary["count"] == 2 and summary["run_id"].startswith("test-dummy-")
    assert [outcome["passed"] for outcome in summary["outcomes"]] == [True, True]
    assert summary["model"] == "offline-architect"


def test_list_shows_staged_scenarios_and_runs(generated: dict[str, Any]) -> None:
    run_id = generated["summary"]["run_id"]
    rows = json.loads(invoke(["list", "--json"], generated["env"]).stdout)
    assert [row["id"] for row in rows] == [f"{run_id}_0", f"{run_id}_1"]
    assert all(row["tier"] == "test_dummy" and row["verdict"] == "passed" and row["size_bytes"] > 0 for row in rows)
    table = invoke(["list", "staging"], generated["env"])
    assert table.exit_code == 0 and f"{run_id}_1" in table.stdout and "KiB" in table.stdout
    runs = json.loads(invoke(["list", "runs", "--json"], generated["env"]).stdout)
    assert [(row["run_id"], row["passed"], row["state"]) for row in runs] == [(run_id, 2, "complete")]
    failures = invoke(["list", "failures", "--json"], generated["env"])
    assert json.loads(failures.stdout) == []


def test_show_a_scenario_with_its_report_and_preview(generated: dict[str, Any]) -> None:
    scenario_id = f"{generated['summary']['run_id']}_0"
    shown = json.loads(invoke(["show", scenario_id, "--json"], generated["env"]).stdout)
    assert shown["manifest"]["id"] == scenario_id and shown["report"]["seeds"]
    if shown["preview"] is not None:  # rendering needs EGL or OSMesa
        assert Path(shown["preview"]).read_bytes().startswith(PNG_SIGNATURE)
    table = invoke(["show", scenario_id], generated["env"])
    assert table.exit_code == 0 and "push_box" in table.stdout and "passed all stages" in table.stdout


def test_show_a_run(generated: dict[str, Any]) -> None:
    run_id = generated["summary"]["run_id"]
    shown = invoke(["show", run_id], generated["env"])
    assert shown.exit_code == 0 and f"Seeds of run {run_id}" in shown.stdout and "2/2 (complete)" in shown.stdout


def test_analyze_in_every_format_with_plots(generated: dict[str, Any], tmp_path: Path) -> None:
    env = generated["env"]
    report = json.loads(invoke(["analyze", "--format", "json"], env).stdout)
    assert report["seeds"] == 2 and report["accepted"] == 2 and report["yield_rate"] == 1.0
    assert {row["stage"]: row["passed"] for row in report["stages"]}["task"] == 2
    assert [group["key"] for group in report["by_family"]] == ["push_box"]
    assert report["by_model"][0]["key"] == "offline:offline-architect"
    assert report["by_model"][0]["attempts_per_accepted"] >= 1 and report["by_model"][0]["tokens_per_accepted"] > 0
    assert {row["family"] for row in report["coverage"]} == {"push_box"}
    assert report["diversity"]["accepted"] == 2 and 0 < report["diversity"]["mean_pairwise_distance"] <= 1
    assert {row["stage"] for row in report["stage_times"] if row["scenarios"] == 2} == {
        "code",
        "geometry",
        "mjcf",
        "stability",
        "task",
        "solvability",
    }

    rows = list(csv.DictReader(io.StringIO(invoke(["analyze", "--format", "csv"], env).stdout)))
    assert {"table": "Overview", "row": "accepted", "column": "value", "value": "2"} in rows
    markdown = invoke(["analyze", generated["summary"]["run_id"], "--format", "markdown"], env).stdout
    assert "### Yield per stage" in markdown and "| task | 2 | 2 | 0 |" in markdown

    plotted = invoke(["analyze", "--plots", str(tmp_path / "plots")], env)
    assert plotted.exit_code == 0 and "Per provider:model" in plotted.stdout
    for name in ("yield_by_stage.png", "time_per_stage.png", "diversity.png"):
        assert (tmp_path / "plots" / name).read_bytes().startswith(PNG_SIGNATURE)


def test_compare_needs_two_groups_on_one_tier(generated: dict[str, Any]) -> None:
    result = invoke(["compare"], generated["env"])
    assert_one_paragraph_error(result, "nothing to compare", "test_dummy")


def test_traces_export_to_a_folder(generated: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "datasets"
    result = invoke(["traces", "export", "--out", str(out), "--format", "sft"], generated["env"])
    assert result.exit_code == 0, result.output
    assert list((out / "calls").glob("*.parquet")) and (out / "sft.jsonl").read_text().count("\n") >= 2
    assert not (out / "preferences.jsonl").exists()  # only the asked-for views
    again = invoke(["traces", "export", "--out", str(out)], generated["env"])
    assert "exported 0 new model calls" in again.stdout and (out / "preferences.jsonl").exists()


def test_traces_export_to_s3(generated: dict[str, Any], moto_s3: MotoS3Server, s3_bucket_url: str) -> None:
    env = generated["env"] | {
        "SCENARIOS_STORE__ENDPOINT_URL": moto_s3.endpoint_url,
        "SCENARIOS_STORE__ACCESS_KEY": ACCESS_KEY,
        "SCENARIOS_STORE__SECRET_KEY": SECRET_KEY,
    }
    result = invoke(["traces", "export", "--out", s3_bucket_url], env)
    assert result.exit_code == 0, result.output
    target = DatasetStore.from_url(
        s3_bucket_url, endpoint_url=moto_s3.endpoint_url, access_key=ACCESS_KEY, secret_key=SECRET_KEY
    )
    assert any(key.startswith("calls/part-") and key.endswith(".parquet") for key in target.list_files())
    assert target.exists("sft.jsonl") and target.exists("openai_finetune.jsonl")
    assert SECRET_KEY not in result.output


# --- scripts: author, validate ------------------------------------------------------------------------


def test_author_then_validate_a_script(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    script = tmp_path / "box.py"
    written = invoke(["author", "--tier", "test_dummy", "--out", str(script), "--seed", "3"], env)
    assert written.exit_code == 0 and script.is_file()

    validated = invoke(["validate", str(script), "--seeds", "1", "--json"], env)

    assert validated.exit_code == 0, validated.output
    assert json.loads(validated.stdout)["seeds"][0]["stages"][-1]["verdict"] == "pass"


# --- settings and providers ---------------------------------------------------------------------------


def test_config_init_writes_every_setting_and_loads_back_to_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "scenarios.toml"
    env = cli_env(tmp_path, SCENARIOS_CONFIG=str(path), SCENARIOS_STORE__URL=None, SCENARIOS_VALIDATION__SEEDS=None)

    result = invoke(["config", "init"], env)

    assert result.exit_code == 0, result.output
    text = path.read_text()
    for section, model in Settings.model_fields.items():
        assert f"[{section}]" in text
        for name in model.annotation.model_fields:  # type: ignore[union-attr]
            assert f"{name} = " in text, f"{section}.{name} is missing from the template"
    assert tomllib.loads(text) == {
        "sandbox": {},
        "validation": {},
        "store": {"url": "file://./datasets"},
        "llm": {"provider": "offline"},
        "tracing": {},
    }
    for name in [name for name in os.environ if name.startswith("SCENARIOS_")]:
        monkeypatch.delenv(name)
    defaults = load_settings()
    monkeypatch.setenv("SCENARIOS_CONFIG", str(path))
    assert load_settings() == defaults
    assert_one_paragraph_error(invoke(["config", "init"], env), "exists", "--force")
    assert invoke(["config", "init", "--force"], env).exit_code == 0


def test_config_show_masks_secrets_and_names_sources(tmp_path: Path) -> None:
    path = tmp_path / "scenarios.toml"
    path.write_text('[llm]\nmodel = "from-the-file"\n')
    env = cli_env(
        tmp_path,
        SCENARIOS_CONFIG=str(path),
        SCENARIOS_LLM__API_KEY="sk-very-secret",
        SCENARIOS_STORE__ENDPOINT_URL="http://user:hunter2@127.0.0.1:9000",
    )
    shown = invoke(["config", "show", "--json"], env)
    assert shown.exit_code == 0 and "sk-very-secret" not in shown.output and "hunter2" not in shown.output
    values = json.loads(shown.stdout)
    assert values["llm.api_key"] == "********" and values["llm.model"] == "from-the-file"
    assert values["validation.seeds"] == 2
    table = invoke(["config", "show"], env).stdout
    assert "env SCENARIOS_LLM__API_KEY" in table and f"file {path}" in table and "default" in table


def test_config_validate_checks_store_provider_and_sandbox(tmp_path: Path) -> None:
    good = invoke(["config", "validate"], cli_env(tmp_path))
    assert good.exit_code == 0, good.output
    assert "is reachable" in good.stdout and "offline:offline-architect is usable" in good.stdout

    bad_store = invoke(["config", "validate"], cli_env(tmp_path, SCENARIOS_STORE__URL="file:///proc/no-store-here"))
    assert bad_store.exit_code == 1 and "FAIL" in bad_store.stdout and "store check(s) failed" in bad_store.stderr

    keyless = invoke(["config", "validate"], cli_env(tmp_path, SCENARIOS_LLM__PROVIDER="openai"))
    assert keyless.exit_code == 1 and "provider check(s) failed" in keyless.stderr


def test_config_validate_reaches_an_s3_store(tmp_path: Path, moto_s3: MotoS3Server, s3_bucket_url: str) -> None:
    env = cli_env(
        tmp_path,
        SCENARIOS_STORE__URL=s3_bucket_url,
        SCENARIOS_STORE__ENDPOINT_URL=moto_s3.endpoint_url,
        SCENARIOS_STORE__ACCESS_KEY=ACCESS_KEY,
        SCENARIOS_STORE__SECRET_KEY=SECRET_KEY,
    )
    result = invoke(["config", "validate"], env)
    assert result.exit_code == 0, result.output
    assert f"{s3_bucket_url} (endpoint {moto_s3.endpoint_url}) is reachable" in result.stdout


def test_providers_say_where_keys_come_from(tmp_path: Path) -> None:
    rows = {row["provider"]: row for row in json.loads(invoke(["providers", "--json"], cli_env(tmp_path)).stdout)}
    assert rows["offline"]["configured"] and rows["offline"]["key_present"]
    assert rows["openai"]["key_from"] == "OPENAI_API_KEY" and not rows["openai"]["key_present"]

    with_key = json.loads(invoke(["providers", "--json"], cli_env(tmp_path, GOOGLE_API_KEY="g-key")).stdout)
    assert {row["provider"]: row["key_present"] for row in with_key}["gemini"] is True
    configured = json.loads(
        invoke(
            ["providers", "--json"],
            cli_env(
                tmp_path,
                SCENARIOS_LLM__PROVIDER="anthropic",
                SCENARIOS_LLM__API_KEY="k",
                SCENARIOS_LLM__MODEL="claude-x",
            ),
        ).stdout
    )
    anthropic = next(row for row in configured if row["provider"] == "anthropic")
    assert anthropic["configured"] and anthropic["model"] == "claude-x" and anthropic["key_present"]
    assert invoke(["providers"], cli_env(tmp_path)).exit_code == 0


def test_providers_check_probes_the_configured_endpoint(tmp_path: Path) -> None:
    from tests.openai_stub_server import serve_openai_stub

    with serve_openai_stub(["unused"], api_key="sk-right") as (url, _):
        configured = {"SCENARIOS_LLM__PROVIDER": "openai", "SCENARIOS_LLM__BASE_URL": url}
        good = invoke(
            ["providers", "--check", "--json"], cli_env(tmp_path, **configured, SCENARIOS_LLM__API_KEY="sk-right")
        )
        bad = invoke(
            ["providers", "--check", "--json"], cli_env(tmp_path, **configured, SCENARIOS_LLM__API_KEY="sk-wrong")
        )
    checks = {row["provider"]: row["check"] for row in json.loads(good.stdout)}
    assert checks == {"offline": "ok", "openai": "ok", "anthropic": "no key", "gemini": "no key"}
    rejected = {row["provider"]: row["check"] for row in json.loads(bad.stdout)}["openai"]
    assert "rejected the API key" in rejected and "sk-wrong" not in bad.output


# --- bad input -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "extra_env", "needles"),
    [
        (["generate", "--tier", "tier9"], {}, ("unknown tier 'tier9'",)),
        (["generate", "--tier", "test_dummy", "--count", "0"], {}, ("count must be an integer from 1",)),
        (["generate", "--tier", "1", "--count", "-3"], {}, ("count must be",)),
        (["generate"], {}, ("pass --tier",)),
        (["generate", "--tier", "1", "--provider", "openia"], {}, ("unknown provider 'openia'", "offline")),
        (["generate", "--tier", "1", "--provider", "openai"], {}, ("needs an API key", "OPENAI_API_KEY")),
        (["generate", "--tier", "1", "--temperature", "9"], {}, ("temperature",)),
        (["generate", "--tier", "1", "--run-id", "../up"], {}, ("invalid run id",)),
        (["generate", "--tier", "1"], {"SCENARIOS_LLM__PROVIDER": "nope"}, ("invalid settings", "llm.provider")),
        (["generate", "--tier", "1", "--via-deployment", "--model", "m"], {}, ("not parameters of the deployment",)),
        (
            ["generate", "--tier", "test_dummy", "--via-deployment"],
            {"PREFECT_API_URL": "http://127.0.0.1:9/api"},
            ("Prefect API at http://127.0.0.1:9/api is unreachable", "scripts/stack.sh up"),
        ),
        (["list", "--store", "file:///proc/no-store-here"], {}, ("cannot create the store folder",)),
        (["list", "staging", "--dest", "v1"], {}, ("--dest selects a benchmark",)),
        (["show", "nothing_7"], {}, ("no scenario or run 'nothing_7'",)),
        (["promote", "ghost_3", "--dest", "v1"], {}, ("unknown scenario id(s) ghost_3",)),
        (["promote", "ghost-run", "--dest", "v1"], {}, ("unknown run id 'ghost-run'",)),
        (["promote", "ghost-run", "--dest", "../x"], {}, ("invalid benchmark destination",)),
        (["validate", "no/such/script.py"], {}, ("no scenario script at",)),
        (["traces", "export"], {}, ("no traces in",)),
        (["traces", "export", "--format", "xml"], {}, ("unknown export format 'xml'",)),
        (["compare", "--by", "colour"], {}, ("unknown grouping 'colour'",)),
        (["analyze"], {}, ("no runs in",)),
        (["analyze", "no-such-run"], {}, ("'no-such-run' is neither a run nor a batch",)),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_bad_input_exits_with_one_paragraph(
    tmp_path: Path, args: list[str], extra_env: dict[str, str], needles: tuple[str, ...]
) -> None:
    assert_one_paragraph_error(invoke(args, cli_env(tmp_path, **extra_env)), *needles)


def test_an_unreachable_s3_store_is_one_paragraph(tmp_path: Path) -> None:
    env = cli_env(
        tmp_path,
        SCENARIOS_STORE__ENDPOINT_URL="http://127.0.0.1:9",
        SCENARIOS_STORE__ACCESS_KEY="a",
        SCENARIOS_STORE__SECRET_KEY="b",
    )
    assert_one_paragraph_error(
        invoke(["list", "--store", "s3://unreachable-bucket/data"], env), "cannot reach the dataset store"
    )


def test_verbose_adds_the_traceback(tmp_path: Path) -> None:
    quiet = invoke(["generate", "--tier", "tier9"], cli_env(tmp_path))
    loud = invoke(["--verbose", "generate", "--tier", "tier9"], cli_env(tmp_path))
    assert "Traceback" not in quiet.output
    assert loud.exit_code != 0 and "Traceback" in loud.stderr and "unknown tier" in loud.stderr


def test_a_prompt_without_a_tier_picks_the_tier_it_names() -> None:
    from scenario_lib.cli.generate_command import choose_tier
    from scenario_lib.tiers import Tier

    assert choose_tier(None, "make me 10 levers") == (Tier.TIER2, True)
    assert choose_tier(None, "a square peg into a chamfered hole") == (Tier.TIER1, True)
    assert choose_tier(None, "something vague") == (Tier.TIER1, True)
    assert choose_tier("2", "a peg") == (Tier.TIER2, False)
