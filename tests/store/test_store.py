"""DatasetStore on a local folder and on a real S3-protocol server (moto on 127.0.0.1)."""

from __future__ import annotations

import json
import pickle
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from scenario_lib.errors import ConfigError, StoreError
from scenario_lib.store.commit import commit_scenario, is_committed, list_scenarios
from scenario_lib.store.dataset import DatasetStore, ObjectNotFoundError, StoreBackend
from scenario_lib.store.layout import (
    COMMIT_MARKER,
    benchmark_entry_key,
    benchmark_manifest_key,
    benchmark_prefix,
    failure_prefix,
    make_scenario_id,
    parse_scenario_id,
    run_record_key,
    staging_prefix,
    validate_dest,
    validate_key,
)
from tests.s3_server import ACCESS_KEY, SECRET_KEY, MotoS3Server, closed_port



def make_scenario_folder(root: Path, *, tag: str = "v1", extra: dict[str, bytes] | None = None) -> Path:
    """A small scenario folder with the files a validated scenario has."""
    files = {
        "scenario.py": f"# {tag}\n".encode(),
        "scene.xml": f"<mujoco model='{tag}'/>".encode(),
        "meshes/base.stl": b"solid base\x00\x01" + tag.encode(),
        "manifest.json": b"{}",
        "validation.json": b"{}",
        **(extra or {}),
    }
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


# --- bytes ----------------------------------------------------------------------------------------


def test_write_read_round_trip(dataset_store: DatasetStore) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB with NUL bytes
    dataset_store.write_bytes("staging/r_0/meshes/a.stl", payload)
    assert dataset_store.read_bytes("staging/r_0/meshes/a.stl") == payload
    dataset_store.write_bytes("staging/r_0/meshes/a.stl", b"new")
    assert dataset_store.read_bytes("staging/r_0/meshes/a.stl") == b"new"
    assert dataset_store.exists("staging/r_0/meshes/a.stl")
    assert not dataset_store.exists("staging/r_0/meshes")  # folders are not files
    with pytest.raises(ObjectNotFoundError, match="nothing.json"):
        dataset_store.read_bytes("nothing.json")


def test_create_bytes_writes_only_if_absent(dataset_store: DatasetStore) -> None:
    assert dataset_store.create_bytes("runs/a.json", b"first") is True
    assert dataset_store.create_bytes("runs/a.json", b"second") is False
    assert dataset_store.read_bytes("runs/a.json") == b"first"


def test_create_bytes_has_one_winner_among_threads(dataset_store: DatasetStore) -> None:
    barrier = threading.Barrier(8)
    results: list[bool] = []

    def create(index: int) -> None:
        barrier.wait()
        results.append(dataset_store.create_bytes("lock.json", str(index).encode()))

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]
    assert dataset_store.read_bytes("lock.json") in {str(i).encode() for i in range(8)}


def test_replace_if_match_refuses_a_stale_etag(dataset_store: DatasetStore) -> None:
    dataset_store.write_bytes("m.json", b"v1")
    data, etag = dataset_store.read_with_etag("m.json")
    assert data == b"v1"
    dataset_store.write_bytes("m.json", b"v2")  # someone else writes in between
    assert dataset_store.replace_if_match("m.json", b"v3", etag) is False
    assert dataset_store.read_bytes("m.json") == b"v2"
    data, etag = dataset_store.read_with_etag("m.json")
    assert dataset_store.replace_if_match("m.json", b"v3", etag) is True
    assert dataset_store.read_bytes("m.json") == b"v3"
    assert dataset_store.replace_if_match("m.json", b"v4", etag) is False  # the tag is spent
    assert dataset_store.replace_if_match("absent.json", b"x", etag) is False
    with pytest.raises(ObjectNotFoundError):
        dataset_store.read_with_etag("absent.json")


def test_compare_and_swap_counter_loses_no_increment(dataset_store: DatasetStore) -> None:
    dataset_store.write_bytes("counter", b"0")

    def increment_five_times() -> None:
        for _ in range(5):
            while True:
                data, etag = dataset_store.read_with_etag("counter")
                if dataset_store.replace_if_match("counter", str(int(data) + 1).encode(), etag):
                    break

    threads = [threading.Thread(target=increment_five_times) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert dataset_store.read_bytes("counter") == b"40"


# --- keys and ids ---------------------------------------------------------------------------------

UNSAFE_KEYS = ["/etc/passwd", "../outside", "a/../../b", "a//b", "a\\b", "./a", "a/./b", "", "/"]


@pytest.mark.parametrize("key", UNSAFE_KEYS, ids=repr)
def test_unsafe_keys_are_rejected_by_every_method(dataset_store: DatasetStore, key: str, tmp_path: Path) -> None:
    calls: list[Callable[[], object]] = [
        lambda: dataset_store.read_bytes(key),
        lambda: dataset_store.write_bytes(key, b"x"),
        lambda: dataset_store.create_bytes(key, b"x"),
        lambda: dataset_store.read_with_etag(key),
        lambda: dataset_store.replace_if_match(key, b"x", "etag"),
        lambda: dataset_store.exists(key),
        lambda: dataset_store.delete_prefix(key),
        lambda: dataset_store.copy_prefix(key, "dst"),
        lambda: dataset_store.copy_prefix("src", key),
        lambda: dataset_store.get_prefix(key, tmp_path),
        lambda: dataset_store.put_dir(tmp_path, key),
    ]
    if key not in ("", "/"):  # the root is a valid folder to list
        calls.append(lambda: dataset_store.list_files(key))
    for call in calls:
        with pytest.raises(ConfigError, match="store key"):
            call()
    assert dataset_store.list_files("") == []  # nothing was written anywhere


def test_key_validation_explains_the_fix() -> None:
    assert validate_key("staging/r_1/") == "staging/r_1"
    with pytest.raises(ConfigError, match=r"'\.\.' segment.*e\.g\. 'staging/"):
        validate_key("staging/../x")


def test_layout_helpers_build_and_validate_ids() -> None:
    scenario_id = make_scenario_id("run-2024.1", 42)
    assert parse_scenario_id(scenario_id) == ("run-2024.1", 42)
    assert parse_scenario_id("run_with_underscores_7") == ("run_with_underscores", 7)
    assert staging_prefix(scenario_id) == "staging/run-2024.1_42"
    assert failure_prefix(scenario_id, 3) == "failures/run-2024.1_42_a3"
    assert run_record_key("run-2024.1") == "runs/run-2024.1.json"
    assert benchmark_prefix("v1", scenario_id) == "benchmarks/v1/run-2024.1_42"
    assert benchmark_entry_key("v1", scenario_id) == "benchmarks/v1/entries/run-2024.1_42.json"
    assert benchmark_manifest_key("v1") == "benchmarks/v1/manifest.json"


@pytest.mark.parametrize("dest", ["..", "../x", "a/b", "", ".hidden", "a..b", "x" * 65, "a b", "a\\b"])
def test_unsafe_dest_names_are_rejected(dest: str) -> None:
    with pytest.raises(ConfigError, match="invalid benchmark destination.*e.g."):
        validate_dest(dest)


@pytest.mark.parametrize("scenario_id", ["run", "run_", "_1", "run_-1", "../r_1", "r/x_1", "run_1a"])
def test_malformed_scenario_ids_are_rejected(scenario_id: str) -> None:
    with pytest.raises(ConfigError, match=r"expected '\{run_id\}_\{seed\}'"):
        parse_scenario_id(scenario_id)


# --- prefixes -------------------------------------------------------------------------------------


def test_list_files_treats_prefix_as_a_folder(dataset_store: DatasetStore) -> None:
    for key in ["s/r_1/a.txt", "s/r_1/sub/b.txt", "s/r_10/c.txt", "s/top.txt"]:
        dataset_store.write_bytes(key, b"x")
    assert dataset_store.list_files("s/r_1") == ["s/r_1/a.txt", "s/r_1/sub/b.txt"]
    assert dataset_store.list_files("s/r_1/") == ["s/r_1/a.txt", "s/r_1/sub/b.txt"]
    assert dataset_store.list_files("s/r_1", recursive=False) == ["s/r_1/a.txt"]
    assert dataset_store.list_files("s", recursive=False) == ["s/top.txt"]
    assert dataset_store.list_files("missing") == []
    assert dataset_store.list_files("s/top.txt") == []  # a file is not a folder
    assert len(dataset_store.list_files("")) == 4


def test_named_listings_and_folder_listings(dataset_store: DatasetStore) -> None:
    keys = ["s/r_1/a.txt", "s/r_1/sub/b.txt", "s/r_10/c.txt", "s/q_1/d.txt", "s/r_top.txt", "other/r_1/e.txt"]
    for key in keys:
        dataset_store.write_bytes(key, b"x")
    # The entries of "s" whose names start with "r_1", recursively: a string prefix inside the folder.
    assert dataset_store.list_files("s", named="r_1") == ["s/r_1/a.txt", "s/r_1/sub/b.txt", "s/r_10/c.txt"]
    assert dataset_store.list_files("s", named="r_") == ["s/r_1/a.txt", "s/r_1/sub/b.txt", "s/r_10/c.txt", "s/r_top.txt"]
    assert dataset_store.list_files("s", named="z") == [] and dataset_store.list_files("missing", named="r") == []
    assert dataset_store.list_folders("s") == ["q_1", "r_1", "r_10"]  # folders only, not their files
    assert dataset_store.list_folders("s/r_1") == ["sub"] and dataset_store.list_folders("missing") == []
    assert {"other", "s"} <= set(dataset_store.list_folders(""))  # a local store also keeps its .tmp/ there


def test_copy_get_put_and_delete_prefix(dataset_store: DatasetStore, tmp_path: Path) -> None:
    source = make_scenario_folder(tmp_path / "src")
    keys = dataset_store.put_dir(source, "staging/r_0")
    assert keys == [
        "staging/r_0/manifest.json",
        "staging/r_0/meshes/base.stl",
        "staging/r_0/scenario.py",
        "staging/r_0/scene.xml",
        "staging/r_0/validation.json",
    ]
    names = dataset_store.copy_prefix("staging/r_0", "benchmarks/v1/r_0")
    assert names == [key.removeprefix("staging/r_0/") for key in keys]
    local = dataset_store.get_prefix("benchmarks/v1/r_0", tmp_path / "back")
    for path in local:
        assert path.read_bytes() == (source / path.relative_to(tmp_path / "back")).read_bytes()
    assert dataset_store.delete_prefix("staging/r_0") == 5
    assert dataset_store.list_files("staging") == []
    assert dataset_store.delete_prefix("staging/r_0") == 0
    assert len(dataset_store.list_files("benchmarks")) == 5


def test_put_dir_refuses_symlinks(dataset_store: DatasetStore, tmp_path: Path) -> None:
    folder = make_scenario_folder(tmp_path / "src")
    (folder / "leak.txt").symlink_to("/etc/hostname")
    with pytest.raises(ConfigError, match="symlink"):
        dataset_store.put_dir(folder, "staging/r_0")


def test_url_for_names_the_backend(dataset_store: DatasetStore) -> None:
    url = dataset_store.url_for("staging/r_0/scene.xml")
    scheme = "file://" if dataset_store.backend is StoreBackend.LOCAL else "s3://"
    assert url.startswith(scheme) and url.endswith("/staging/r_0/scene.xml")


# --- committed scenario folders -------------------------------------------------------------------


def test_only_committed_folders_are_listed(dataset_store: DatasetStore, tmp_path: Path) -> None:
    dataset_store.write_bytes("staging/half_0/scene.xml", b"<mujoco/>")  # an upload that died midway
    assert list_scenarios(dataset_store, "staging") == []
    commit_scenario(dataset_store, make_scenario_folder(tmp_path / "a"), "staging/r_1")
    assert list_scenarios(dataset_store, "staging") == ["r_1"]
    assert is_committed(dataset_store, "staging/r_1") and not is_committed(dataset_store, "staging/half_0")
    assert dataset_store.list_files(".tmp") == []  # the upload area is cleaned


def test_recommit_replaces_the_old_content(dataset_store: DatasetStore, tmp_path: Path) -> None:
    commit_scenario(dataset_store, make_scenario_folder(tmp_path / "a", extra={"old.txt": b"x"}), "staging/r_1")
    commit_scenario(dataset_store, make_scenario_folder(tmp_path / "b", tag="v2"), "staging/r_1")
    names = [key.removeprefix("staging/r_1/") for key in dataset_store.list_files("staging/r_1")]
    assert "old.txt" not in names and COMMIT_MARKER in names
    assert dataset_store.read_bytes("staging/r_1/scenario.py") == b"# v2\n"


MUTATING = ("write_bytes", "create_bytes", "replace_if_match", "copy_files", "delete", "delete_prefix", "put_dir")


class InjectedCrash(RuntimeError):
    pass


def crash_before_call(store: DatasetStore, monkeypatch: pytest.MonkeyPatch, step: int) -> list[str]:
    """Make the `step`-th mutating store call (0-based) raise once; returns the log of calls seen."""
    seen: list[str] = []
    for name in MUTATING:
        original = getattr(store, name)

        def wrapper(
            *args: object, _name: str = name, _original: Callable[..., object] = original, **kwargs: object
        ) -> object:
            seen.append(_name)
            if len(seen) - 1 == step:
                raise InjectedCrash(f"crash before {_name} (step {step})")
            return _original(*args, **kwargs)

        monkeypatch.setattr(store, name, wrapper)
    return seen


def commit_steps(store: DatasetStore, monkeypatch: pytest.MonkeyPatch, folder: Path, dest: str) -> list[str]:
    """The mutating store calls of committing `folder` to `dest` as it stands."""
    with monkeypatch.context() as counting:
        steps = crash_before_call(store, counting, step=-1)
        commit_scenario(store, folder, dest)
    return steps


@pytest.mark.parametrize("occupied", [False, True], ids=["fresh destination", "committed destination"])
def test_commit_converges_after_a_crash_at_every_step(
    dataset_store: DatasetStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, occupied: bool
) -> None:
    folder = make_scenario_folder(tmp_path / "new", tag="new")
    expected = {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    old = make_scenario_folder(tmp_path / "old", tag="old")
    if occupied:
        commit_scenario(dataset_store, old, "staging/probe_0")
    steps = commit_steps(dataset_store, monkeypatch, folder, "staging/probe_0")
    # A fresh destination takes the upload directly; a committed one stays visible through a staged upload.
    assert steps == (
        ["delete_prefix", "put_dir", "delete_prefix", "copy_files", "delete_prefix", "write_bytes"]
        if occupied
        else ["delete_prefix", "put_dir", "write_bytes"]
    )

    for step in range(len(steps)):
        dest = f"staging/c{step}_0"
        if occupied:
            commit_scenario(dataset_store, old, dest)
        with monkeypatch.context() as patch:
            crash_before_call(dataset_store, patch, step)
            with pytest.raises(InjectedCrash):
                commit_scenario(dataset_store, folder, dest)
        # Whatever is visible is complete: the old version, or nothing.
        if is_committed(dataset_store, dest):
            assert occupied and dataset_store.read_bytes(f"{dest}/scenario.py") == b"# old\n"
        commit_scenario(dataset_store, folder, dest)
        stored = {key.removeprefix(dest + "/"): dataset_store.read_bytes(key) for key in dataset_store.list_files(dest)}
        assert json.loads(stored.pop(COMMIT_MARKER))["files"] == sorted(expected)
        assert stored == expected, f"crash at step {step} ({steps[step]}) did not converge"
    assert dataset_store.list_files(".tmp") == []


# --- errors ---------------------------------------------------------------------------------------


def test_unreachable_endpoint_fails_fast_with_the_url_and_no_secret() -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    started = time.perf_counter()
    with pytest.raises(StoreError) as info:
        DatasetStore.from_url("s3://scenarios/data", endpoint_url=endpoint, access_key="AKIA", secret_key=SECRET_KEY)
    elapsed_s = time.perf_counter() - started
    message = str(info.value)
    assert "s3://scenarios/data" in message and endpoint in message and "check that the server is running" in message
    assert elapsed_s < 10, f"took {elapsed_s:.1f} s"
    chain = "".join(traceback.format_exception(info.value))
    assert SECRET_KEY not in chain
    assert isinstance(info.value.__cause__, Exception)  # the low-level error is kept as the cause


def test_endpoint_credentials_are_redacted_from_messages() -> None:
    endpoint = f"http://user:{SECRET_KEY}@127.0.0.1:{closed_port()}"
    with pytest.raises(StoreError) as info:
        DatasetStore.from_url(
            "s3://scenarios/data", endpoint_url=endpoint, access_key="AKIA", secret_key="other", max_attempts=1
        )
    assert SECRET_KEY not in str(info.value) and "127.0.0.1" in str(info.value)


def test_missing_credentials_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Hide every source of the AWS credential chain so botocore finds none.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    endpoint = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(StoreError, match="no usable S3 credentials"):
        DatasetStore.from_url("s3://scenarios/data", endpoint_url=endpoint)


def test_missing_bucket_is_created_or_reported(moto_s3: MotoS3Server, s3_bucket_url: str) -> None:
    with pytest.raises(StoreError, match="does not exist; create it"):
        DatasetStore.from_url(
            s3_bucket_url,
            endpoint_url=moto_s3.endpoint_url,
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            create_bucket=False,
        )
    store = DatasetStore.from_url(
        s3_bucket_url, endpoint_url=moto_s3.endpoint_url, access_key=ACCESS_KEY, secret_key=SECRET_KEY
    )
    store.write_bytes("x", b"1")
    assert store.list_files("") == ["x"]


@pytest.mark.parametrize(
    ("url", "message"),
    [("gs://bucket/x", "unsupported store URL"), ("s3://UPPER/x", "invalid bucket"), ("s3://bkt/../x", "store key")],
)
def test_bad_urls_raise_config_error(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DatasetStore.from_url(url)


def test_local_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for url, folder in [
        (f"file://{tmp_path}/abs", tmp_path / "abs"),
        ("file://./rel", tmp_path / "rel"),
        ("plain", tmp_path / "plain"),
        (str(tmp_path / "plain-abs"), tmp_path / "plain-abs"),
    ]:
        store = DatasetStore.from_url(url)
        store.write_bytes("k.txt", b"1")
        assert (folder / "k.txt").read_bytes() == b"1"
        assert store.url_for("k.txt") == f"file://{folder}/k.txt"


def test_unwritable_local_root_raises_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(StoreError, match="cannot create the store folder"):
        DatasetStore.from_url(f"file://{tmp_path}/file/store")


def test_store_errors_survive_pickling() -> None:
    error = ObjectNotFoundError("s3://b/x does not exist")
    clone = pickle.loads(pickle.dumps(error))
    assert isinstance(clone, ObjectNotFoundError) and isinstance(clone, FileNotFoundError)
    assert str(clone) == "s3://b/x does not exist"
