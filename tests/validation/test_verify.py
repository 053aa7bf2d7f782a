"""`scenarios verify` and `scenarios withdraw` on a real promoted benchmark (real MuJoCo, a real local store):
an untouched benchmark verifies, a flipped byte and a consistent forgery are flagged, a folder without a
certificate is reported as such, bad input is one line, and withdrawal is durable and resumable."""

from __future__ import annotations

import hashlib
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from scenario_lib.errors import ConfigError
from scenario_lib.runs import withdrawal
from scenario_lib.runs.promotion import promote, read_manifest
from scenario_lib.runs.withdrawal import read_withdrawals, withdraw
from scenario_lib.store import DatasetStore
from scenario_lib.store.commit import commit_scenario, is_committed
from scenario_lib.store.layout import (
    benchmark_entry_key,
    benchmark_prefix,
    benchmark_withdrawal_key,
    staging_prefix,
    withdrawn_folder_prefix,
)
from scenario_lib.validation.artifacts import MANIFEST_FILE
from scenario_lib.validation.certificate import CERTIFICATE_FILE
from scenario_lib.validation.pipeline import SCENE_FILE
from scenario_lib.validation.verify import (
    SAME_VERSION_TOLERANCES,
    VERSION_CHANGE_TOLERANCES,
    Aspect,
    Tolerance,
    VerificationStatus,
    verify_stored_scenario,
)
from tests.benchmark_fixtures import PromotedBenchmark, benchmark_store_copy, promoted_benchmark  # noqa: F401
from tests.support import assert_one_line_error, invoke_cli

FAMILY = "push_box"  # one free box on a floor: the simplest scene to tamper with




def folder_of(store: DatasetStore, scenario_id: str) -> Path:
    assert store.local_root is not None
    return store.local_root / benchmark_prefix("v1", scenario_id)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rewrite_hashes(folder: Path) -> None:
    """A consistent forgery: every hash in the certificate, then in the manifest, recomputed from the files."""
    certificate = json.loads((folder / CERTIFICATE_FILE).read_text(encoding="utf-8"))
    certificate["files"] = {name: sha256(folder / name) for name in certificate["files"]}
    (folder / CERTIFICATE_FILE).write_text(json.dumps(certificate, indent=2), encoding="utf-8")
    manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    for entry in manifest["files"]:
        entry["sha256"], entry["size_bytes"] = sha256(folder / entry["path"]), (folder / entry["path"]).stat().st_size
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def edit_free_body(folder: Path, *, lift_m: float = 0.0, density_factor: float = 1.0) -> None:
    """Move the free body up by ``lift_m`` and scale its density: a scene edited after validation."""
    tree = ET.parse(folder / SCENE_FILE)
    body = next(element for element in tree.iter("body") if element.find("freejoint") is not None)
    x, y, z = (float(value) for value in body.get("pos", "0 0 0").split())
    body.set("pos", f"{x} {y} {z + lift_m}")
    for geom in body.iter("geom"):
        if geom.get("density") is not None:
            geom.set("density", str(float(geom.get("density", "0")) * density_factor))
    tree.write(folder / SCENE_FILE, encoding="unicode")






# --- verify -------------------------------------------------------------------------------------------


def test_an_untouched_benchmark_verifies_and_exits_0(promoted_benchmark: PromotedBenchmark, tmp_path: Path) -> None:
    result = invoke_cli(["verify", "v1", "--store", promoted_benchmark.store_url, "--json"], tmp_path)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["verified"] is True and payload["flagged"] == [] and payload["uncertified"] == []
    assert {item["scenario_id"] for item in payload["scenarios"]} == set(promoted_benchmark.ids.values())
    for item in payload["scenarios"]:
        assert item["status"] == "verified" and item["findings"] == [], item
        assert item["checks"] >= 20 and item["version_changes"] == []


def test_a_flipped_byte_in_an_stl_is_flagged_with_the_file(
    promoted_benchmark: PromotedBenchmark, store: DatasetStore, tmp_path: Path
) -> None:
    scenario_id = promoted_benchmark.ids[FAMILY]
    folder = folder_of(store, scenario_id)
    mesh = sorted((folder / "meshes").glob("*.stl"))[0]
    data = bytearray(mesh.read_bytes())
    data[len(data) // 2] ^= 0x01
    mesh.write_bytes(bytes(data))

    result = invoke_cli(["verify", "v1", "--store", store.url, "--scenario", scenario_id, "--json"], tmp_path)
    assert result.exit_code == 1, result.output
    (item,) = json.loads(result.stdout)["scenarios"]
    assert item["status"] == "flagged"
    hashes = [finding for finding in item["findings"] if finding["aspect"] == Aspect.FILES.value]
    assert [finding["check"] for finding in hashes] == [mesh.relative_to(folder).as_posix()]
    assert "differs from the hash in its manifest" in hashes[0]["message"]
    table = invoke_cli(["verify", "v1", "--store", store.url, "--scenario", scenario_id], tmp_path)
    assert table.exit_code == 1 and "FLAGGED" in table.stdout, table.output
    assert f"scenarios withdraw v1 {scenario_id}" in table.stdout


def test_a_forged_certificate_cannot_make_the_verifier_simulate_for_hours(
    promoted_benchmark: PromotedBenchmark, store: DatasetStore
) -> None:
    scenario_id = promoted_benchmark.ids[FAMILY]
    folder = folder_of(store, scenario_id)
    certificate = json.loads((folder / CERTIFICATE_FILE).read_text(encoding="utf-8"))
    certificate["passive_duration_s"] = 86_400.0
    (folder / CERTIFICATE_FILE).write_text(json.dumps(certificate), encoding="utf-8")
    rewrite_hashes(folder)

    verification = verify_stored_scenario(store, benchmark_prefix("v1", scenario_id), scenario_id=scenario_id)
    assert verification.status is VerificationStatus.FLAGGED
    assert [finding.check for finding in verification.findings] == ["passive_duration_s"]


@pytest.mark.parametrize(
    ("edit", "aspects"),
    [
        pytest.param({"lift_m": 0.02}, {Aspect.STABILITY, Aspect.AT_REST}, id="body-lifted-20mm"),
        pytest.param({"density_factor": 3.0}, {Aspect.MJCF}, id="density-tripled"),
    ],
)
def test_a_scene_edited_with_every_hash_rewritten_is_caught_by_the_physics(
    promoted_benchmark: PromotedBenchmark, store: DatasetStore, edit: dict[str, float], aspects: set[Aspect]
) -> None:
    scenario_id = promoted_benchmark.ids[FAMILY]
    folder = folder_of(store, scenario_id)
    edit_free_body(folder, **edit)
    rewrite_hashes(folder)

    verification = verify_stored_scenario(store, benchmark_prefix("v1", scenario_id), scenario_id=scenario_id)
    assert verification.status is VerificationStatus.FLAGGED
    found = {finding.aspect for finding in verification.findings}
    assert not found & {Aspect.FILES, Aspect.CERTIFICATE}, verification.findings  # the forgery is consistent
    assert aspects <= found, verification.findings
    for finding in verification.findings:
        assert finding.expected and finding.measured and finding.message


def test_a_lifted_body_reports_the_stability_verdict_and_the_drift_with_tolerances(
    promoted_benchmark: PromotedBenchmark, store: DatasetStore
) -> None:
    scenario_id = promoted_benchmark.ids[FAMILY]
    folder = folder_of(store, scenario_id)
    edit_free_body(folder, lift_m=0.02)
    rewrite_hashes(folder)

    verification = verify_stored_scenario(store, benchmark_prefix("v1", scenario_id), scenario_id=scenario_id)
    by_check = {finding.check: finding for finding in verification.findings}
    assert by_check["stability.verdict"].expected == "pass" and by_check["stability.verdict"].measured == "fail"
    drift = by_check["at_rest.max_drift_mm"]
    assert float(drift.measured) > 10.0  # it fell ~20 mm onto the floor
    assert drift.tolerance == SAME_VERSION_TOLERANCES["at_rest.max_drift_mm"].describe()


def test_a_version_change_loosens_the_tolerances_but_still_flags_a_changed_verdict(
    promoted_benchmark: PromotedBenchmark, store: DatasetStore
) -> None:
    scenario_id = promoted_benchmark.ids[FAMILY]
    folder = folder_of(store, scenario_id)
    certificate = json.loads((folder / CERTIFICATE_FILE).read_text(encoding="utf-8"))
    certificate["versions"]["mujoco"] = "0.0.1"
    (folder / CERTIFICATE_FILE).write_text(json.dumps(certificate), encoding="utf-8")
    rewrite_hashes(folder)
    prefix = benchmark_prefix("v1", scenario_id)

    same_physics = verify_stored_scenario(store, prefix, scenario_id=scenario_id)
    assert same_physics.status is VerificationStatus.VERIFIED, same_physics.findings
    assert same_physics.version_changes and same_physics.version_changes[0].startswith("mujoco 0.0.1 -> ")

    edit_free_body(folder, lift_m=0.02)
    rewrite_hashes(folder)
    changed = verify_stored_scenario(store, prefix, scenario_id=scenario_id)
    assert changed.status is VerificationStatus.FLAGGED
    by_check = {finding.check: finding for finding in changed.findings}
    assert by_check["stability.verdict"].measured == "fail"
    assert by_check["at_rest.max_drift_mm"].tolerance == VERSION_CHANGE_TOLERANCES["at_rest.max_drift_mm"].describe()


def drop_certificate(folder: Path) -> None:
    """The folder as scenario folders were before certificates: no certificate.json, nor its manifest line."""
    (folder / CERTIFICATE_FILE).unlink()
    manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    manifest["files"] = [entry for entry in manifest["files"] if entry["path"] != CERTIFICATE_FILE]
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")


def test_a_benchmark_promoted_before_certificates_is_reported_uncertified_with_the_fix(
    promoted_benchmark: PromotedBenchmark, store: DatasetStore, tmp_path: Path
) -> None:
    scenario_id = promoted_benchmark.ids[FAMILY]
    old = tmp_path / "old" / scenario_id
    shutil.copytree(promoted_benchmark.folders[scenario_id], old)
    drop_certificate(old)
    commit_scenario(store, old, staging_prefix(scenario_id))
    promote(store, [scenario_id], dest="old")

    result = invoke_cli(["verify", "old", "--store", store.url], tmp_path)
    assert result.exit_code == 1, result.output
    assert "uncertified" in result.stdout and "scenarios revalidate" in result.stdout, result.stdout
    verification = verify_stored_scenario(store, benchmark_prefix("old", scenario_id), scenario_id=scenario_id)
    assert verification.status is VerificationStatus.UNCERTIFIED and verification.findings == []
    assert CERTIFICATE_FILE in verification.note and f"scenarios revalidate {scenario_id}" in verification.note
    assert verification.checks > 0  # its hashes were still checked


def test_a_certificate_deleted_after_promotion_is_flagged_not_passed_off_as_uncertified(
    promoted_benchmark: PromotedBenchmark, store: DatasetStore, tmp_path: Path
) -> None:
    scenario_id = promoted_benchmark.ids[FAMILY]
    drop_certificate(folder_of(store, scenario_id))

    result = invoke_cli(["verify", "v1", "--store", store.url, "--scenario", scenario_id, "--json"], tmp_path)
    assert result.exit_code == 1, result.output
    (item,) = json.loads(result.stdout)["scenarios"]
    assert item["status"] == "flagged"
    assert [finding["check"] for finding in item["findings"]] == [CERTIFICATE_FILE]
    assert "was in the folder when it was promoted" in item["findings"][0]["message"]


def test_verify_takes_the_url_of_the_benchmark_folder(promoted_benchmark: PromotedBenchmark, tmp_path: Path) -> None:
    scenario_id = promoted_benchmark.ids[FAMILY]
    url = f"{promoted_benchmark.store_url}/benchmarks/v1"
    result = invoke_cli(["verify", url, "--scenario", scenario_id], tmp_path)
    assert result.exit_code == 0, result.output
    assert scenario_id in result.stdout and "verified" in result.stdout


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        pytest.param(["verify", "nope"], ["unknown benchmark 'nope'", "v1"], id="verify-unknown-benchmark"),
        pytest.param(["verify", "v1", "--scenario", "nope_1"], ["has no scenario 'nope_1'"], id="verify-unknown-scenario"),
        pytest.param(["withdraw", "nope", "a_1", "--reason", "x"], ["unknown benchmark 'nope'"], id="withdraw-unknown-benchmark"),
        pytest.param(["withdraw", "v1", "nope_1", "--reason", "x"], ["does not list", "nope_1"], id="withdraw-unknown-scenario"),
        pytest.param(["withdraw", "v1", "not-an-id", "--reason", "x"], ["invalid scenario id"], id="withdraw-malformed-id"),
        pytest.param(["withdraw", "v1", "push-box_0", "--reason", "  "], ["needs a reason"], id="withdraw-empty-reason"),
        pytest.param(["verify", "file:///nowhere/benchmarks/v1"], ["no benchmark folder"], id="verify-missing-folder"),
    ],
)
def test_bad_input_is_a_one_line_error(
    store: DatasetStore, tmp_path: Path, args: list[str], needles: list[str]
) -> None:
    extra = [] if "/" in args[1] else ["--store", store.url]
    assert_one_line_error(invoke_cli([*args, *extra], tmp_path), *needles)


# --- withdraw -----------------------------------------------------------------------------------------


def test_withdraw_removes_the_scenario_and_records_why(
    promoted_benchmark: PromotedBenchmark, store: DatasetStore, tmp_path: Path
) -> None:
    scenario_id = promoted_benchmark.ids[FAMILY]
    before = read_manifest(store, "v1")
    assert before is not None
    entry = next(item for item in before.entries if item.scenario_id == scenario_id)

    result = invoke_cli(["withdraw", "v1", scenario_id, "--reason", "tampered STL", "--store", store.url, "--json"], tmp_path)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["withdrawn"] == [scenario_id] and payload["entry_count"] == len(before.entries) - 1

    after = read_manifest(store, "v1")
    assert after is not None and scenario_id not in after.scenario_ids and len(after.entries) == len(before.entries) - 1
    assert not store.exists(benchmark_entry_key("v1", scenario_id))
    assert not is_committed(store, benchmark_prefix("v1", scenario_id))
    assert store.list_files(benchmark_prefix("v1", scenario_id)) == []
    assert is_committed(store, withdrawn_folder_prefix("v1", scenario_id))
    (record,) = read_withdrawals(store, "v1")
    assert record.reason == "tampered STL" and record.entry == entry
    assert record.kept_at == withdrawn_folder_prefix("v1", scenario_id)

    again = withdraw(store, [scenario_id], dest="v1", reason="another reason")
    assert again.withdrawn == [] and again.already_withdrawn == [scenario_id]
    assert read_withdrawals(store, "v1")[0].reason == "tampered STL"  # the first reason stands
    other = sorted(set(promoted_benchmark.ids.values()) - {scenario_id})[0]
    listed = invoke_cli(["verify", "v1", "--store", store.url, "--scenario", other], tmp_path)
    assert listed.exit_code == 0 and f"withdrawn earlier: {scenario_id}" in listed.stdout, listed.output


def test_a_withdrawal_that_crashed_after_its_record_converges_when_run_again(
    promoted_benchmark: PromotedBenchmark, store: DatasetStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario_id = promoted_benchmark.ids[FAMILY]

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("the machine went down")

    monkeypatch.setattr(withdrawal, "rebuild_manifest", crash)
    with pytest.raises(OSError):
        withdraw(store, [scenario_id], dest="v1", reason="drifts on MuJoCo 3.4")
    monkeypatch.undo()
    # The record is the commit point: it exists, the manifest still lists the scenario until the re-run.
    assert store.exists(benchmark_withdrawal_key("v1", scenario_id))
    stale = read_manifest(store, "v1")
    assert stale is not None and scenario_id in stale.scenario_ids

    result = withdraw(store, [scenario_id], dest="v1", reason="drifts on MuJoCo 3.4")
    assert result.already_withdrawn == [scenario_id]
    manifest = read_manifest(store, "v1")
    assert manifest is not None and scenario_id not in manifest.scenario_ids
    assert not is_committed(store, benchmark_prefix("v1", scenario_id))


def test_a_withdrawal_that_crashed_before_its_record_leaves_the_benchmark_as_it_was(
    promoted_benchmark: PromotedBenchmark, store: DatasetStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario_id = promoted_benchmark.ids[FAMILY]
    real_create = store.create_bytes

    def crash_on_record(path: str, data: bytes) -> bool:
        if path == benchmark_withdrawal_key("v1", scenario_id):
            raise OSError("the machine went down")
        return real_create(path, data)

    monkeypatch.setattr(store, "create_bytes", crash_on_record)
    with pytest.raises(OSError):
        withdraw(store, [scenario_id], dest="v1", reason="flagged")
    monkeypatch.undo()
    manifest = read_manifest(store, "v1")
    assert manifest is not None and scenario_id in manifest.scenario_ids
    assert store.exists(benchmark_entry_key("v1", scenario_id)) and is_committed(store, benchmark_prefix("v1", scenario_id))
    assert read_withdrawals(store, "v1") == []

    result = withdraw(store, [scenario_id], dest="v1", reason="flagged")
    assert result.withdrawn == [scenario_id]


def test_withdraw_refuses_an_empty_reason_before_touching_the_store(store: DatasetStore) -> None:
    with pytest.raises(ConfigError, match="needs a reason"):
        withdraw(store, ["push-box_0"], dest="v1", reason=" ")


# --- tolerances ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tolerance", "certified", "measured", "allowed"),
    [
        pytest.param(Tolerance(0.1), 1.0, 1.09, True, id="absolute-within"),
        pytest.param(Tolerance(0.1), 1.0, 1.11, False, id="absolute-over"),
        pytest.param(Tolerance(0.0, 0.05), 2.0, 2.09, True, id="relative-within"),
        pytest.param(Tolerance(0.0, 0.05), 2.0, 2.2, False, id="relative-over"),
        pytest.param(Tolerance(1.0), 1.0, float("nan"), False, id="nan-never-matches"),
    ],
)
def test_tolerance_allows_absolute_plus_relative(tolerance: Tolerance, certified: float, measured: float, allowed: bool) -> None:
    assert tolerance.allows(certified, measured) is allowed


def test_every_compared_metric_has_a_tolerance_for_both_regimes() -> None:
    assert set(SAME_VERSION_TOLERANCES) == set(VERSION_CHANGE_TOLERANCES)
    for name, same in SAME_VERSION_TOLERANCES.items():
        change = VERSION_CHANGE_TOLERANCES[name]
        assert change.absolute >= same.absolute and change.relative >= same.relative, name
