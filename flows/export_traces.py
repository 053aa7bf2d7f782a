"""The ``export-traces`` flow: turn the spans stored under ``traces/`` into RL / SFT datasets (wraps `export_store_traces`)."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from scenario_lib.store.dataset import DatasetStore
from scenario_lib.insight.trace_export import ALL_FORMATS, ExportFormat, export_store_traces

from flows.parameters import settings_for

EXPORT_KEY = "trace-export"


@flow(name="export-traces", validate_parameters=True)
def export_traces_flow(
    out_dir: str = "rl-dataset",
    formats: list[ExportFormat] | None = None,
    store_url: str | None = None,
) -> dict[str, object]:
    """Export the model calls of every span file in the store's ``traces/`` to datasets under ``out_dir``.

    ``out_dir`` is a folder on the worker (relative: to the flow run's working directory). Exports are
    incremental: spans exported before are skipped.
    """
    store = DatasetStore.from_settings(settings_for(store_url=store_url).store)
    out = Path(out_dir).resolve()
    summary = export_store_traces(store, out, formats or ALL_FORMATS)
    files = {name: str(path) for name, path in summary.files.items()}
    get_run_logger().info("exported %d new model calls (%d in all) to %s", summary.rows_added, summary.rows_total, out)
    listing = "\n".join(f"- {name}: `{path}`" for name, path in files.items())
    create_markdown_artifact(
        key=EXPORT_KEY,
        markdown=(
            f"# Trace export\n\n{summary.rows_added} new model calls ({summary.rows_total} in all, "
            f"{summary.duplicates_skipped} already exported), {summary.sft_rows} SFT rows, "
            f"{summary.preference_pairs} preference pairs, from `{store.describe()}` to `{out}`:\n\n{listing}\n"
        ),
    )
    return {
        "out_dir": str(out),
        "rows_added": summary.rows_added,
        "rows_total": summary.rows_total,
        "duplicates_skipped": summary.duplicates_skipped,
        "sft_rows": summary.sft_rows,
        "preference_pairs": summary.preference_pairs,
        "files": files,
    }


__all__ = ["export_traces_flow"]
