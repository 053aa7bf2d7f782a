"""S3 fixtures, made available to every test module by tests/conftest.py.

`dataset_store` runs a test once per backend: a local folder (``file``) and a fresh bucket on a real
S3-protocol server (``s3``, moto on 127.0.0.1).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scenario_lib.store.dataset import DatasetStore
from tests.s3_server import ACCESS_KEY, SECRET_KEY, MotoS3Server


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3Server]:
    """One moto S3 server on 127.0.0.1 for the whole test session."""
    with MotoS3Server() as server:
        yield server


@pytest.fixture
def s3_bucket_url(moto_s3: MotoS3Server) -> Iterator[str]:
    """``s3://<fresh bucket>/data`` on the session server; all moto state is reset afterwards."""
    yield f"s3://{moto_s3.fresh_bucket_name()}/data"
    moto_s3.reset()


@pytest.fixture
def s3_store(moto_s3: MotoS3Server, s3_bucket_url: str) -> DatasetStore:
    """A `DatasetStore` on a fresh bucket (created by the store) of the session moto server."""
    return DatasetStore.from_url(
        s3_bucket_url, endpoint_url=moto_s3.endpoint_url, access_key=ACCESS_KEY, secret_key=SECRET_KEY
    )


@pytest.fixture(params=["file", "s3"])
def dataset_store(request: pytest.FixtureRequest, tmp_path: Path) -> DatasetStore:
    """The same test on a local-folder store and on an S3 store."""
    if request.param == "file":
        return DatasetStore.from_url(f"file://{tmp_path / 'store'}")
    store: DatasetStore = request.getfixturevalue("s3_store")
    return store
