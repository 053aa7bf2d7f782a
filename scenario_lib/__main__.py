"""`python -m scenario_lib` runs the `scenarios` command line."""

from scenario_lib.cli import app

app(prog_name="scenarios")
