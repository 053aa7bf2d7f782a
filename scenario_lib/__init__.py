"""scenario_lib: turn scenario scripts into validated, deterministic physics benchmark scenarios."""
