"""Prefect flows over scenario_lib: thin wrappers that validate parameters, call the library and publish artifacts.

Entry points (see prefect.yaml): `flows.generate.generate`, `flows.promote.promote`, `flows.review.review`,
`flows.listing.list_scenarios_flow`, `flows.export_traces.export_traces_flow`. Nothing imports this package
but Prefect, and it imports nothing itself, so loading one flow does not load the others.
"""
