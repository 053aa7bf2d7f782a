"""The `scenarios` command line (Typer + Rich).

``app`` is the console script (``scenarios = "scenario_lib.cli:app"``) and what ``python -m scenario_lib``
runs. The commands live in one module per group and register themselves on ``app`` when imported here;
each imports heavy libraries (build123d, MuJoCo, LangGraph, scipy, matplotlib) only when it runs, so
``scenarios --help`` starts fast.
"""

# Import order is the order of `scenarios --help`.
from scenario_lib.cli import (  # noqa: F401, I001  (importing registers the commands)
    generate_command,
    scenario_commands,
    config_commands,
    analysis_commands,
    batch_commands,
    agent_commands,
    evaluate_commands,
    benchmark_commands,
    service_command,
)
from scenario_lib.cli.app import app

__all__ = ["app"]
