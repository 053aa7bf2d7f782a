"""The public API: every exported name resolves, lives in scenario_lib, and importing the package stays light."""

from __future__ import annotations

import importlib
import subprocess
import sys

import scenario_lib


def test_all_is_sorted_and_every_name_resolves_to_a_scenario_lib_member() -> None:
    assert scenario_lib.__all__ == sorted(scenario_lib.__all__)
    for name, module in scenario_lib._EXPORTS.items():
        member = getattr(scenario_lib, name)
        assert member is getattr(importlib.import_module(f"scenario_lib.{module}"), name)
        home = getattr(member, "__module__", None)
        if isinstance(home, str):  # classes and functions: defined in scenario_lib, not re-exported from elsewhere
            assert home.startswith("scenario_lib."), f"{name} comes from {home}"


def test_unknown_names_raise_attribute_error() -> None:
    try:
        scenario_lib.no_such_thing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as err:
        assert "no_such_thing" in str(err)
    else:
        raise AssertionError("an unknown attribute resolved")


def test_importing_the_package_does_not_load_heavy_libraries() -> None:
    code = (
        "import sys, scenario_lib, scenario_lib.errors, scenario_lib.config; "
        "print(sorted(m for m in ('build123d', 'mujoco', 'langgraph', 'prefect') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
