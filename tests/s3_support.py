"""A local S3 for the tests: moto's server mode (a real S3 API over HTTP on a free local
port), the standard AWS environment pointing at it, and buckets filled from a folder.
The fixtures are registered in tests/conftest.py; each skips, with the reason, where
s3fs or moto is not installed (`make setup` installs both)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

KEY_ID, SECRET = "AKIALAMINATESTKEY", "lamina-s3cr3t-test-value"
S3_ENV = {
    "AWS_ACCESS_KEY_ID": KEY_ID,
    "AWS_SECRET_ACCESS_KEY": SECRET,
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def fresh_s3fs() -> None:
    """s3fs keeps one instance per set of options: drop it, so the next call reads the
    environment (endpoint, credentials) as it is now."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """The URL of a moto server for this test module."""
    pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server._server.server_address  # port 0: the one the OS gave
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3env(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The standard AWS environment pointing at the moto server."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)
    fresh_s3fs()
    yield endpoint
    fresh_s3fs()


def make_bucket(endpoint: str, name: str, src: Path | None = None) -> str:
    """Create bucket `name` holding every file under `src` below `col/`; its URL."""
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket=name)
    for p in sorted(src.rglob("*")) if src is not None else ():
        if p.is_file():
            s3.put_object(
                Bucket=name, Key=f"col/{p.relative_to(src).as_posix()}", Body=p.read_bytes()
            )
    return f"s3://{name}/col"
