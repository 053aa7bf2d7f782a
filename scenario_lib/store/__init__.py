"""The dataset store: one code path for a local folder and an S3 bucket, its layout, and the commit protocol."""

from scenario_lib.store.dataset import DatasetStore, ObjectNotFoundError

__all__ = ["DatasetStore", "ObjectNotFoundError"]
