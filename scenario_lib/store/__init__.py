"""The dataset store: one code path for a local folder and an S3 bucket.

``layout`` names every key, ``backends`` holds what differs between a folder and a bucket, ``dataset``
is the `DatasetStore` over them, and ``commit`` the protocol by which a folder appears complete or not
at all.
"""

from scenario_lib.store.dataset import DatasetStore, ObjectNotFoundError

__all__ = ["DatasetStore", "ObjectNotFoundError"]
