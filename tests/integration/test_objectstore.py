"""Both backends behind one interface; S3 against a real S3 endpoint over HTTP (moto)."""

import hashlib
import urllib.request
from pathlib import Path

import pytest

from marrowscope.core.errors import IntegrityError, InvalidArgument, NotFound
from marrowscope.core.objectstore import (
    FilesystemObjectStore,
    ObjectStore,
    S3ObjectStore,
    content_key,
    put_content_addressed,
)

pytestmark = pytest.mark.integration


@pytest.fixture(params=["fs", "s3"])
def store(request, tmp_path: Path) -> ObjectStore:  # type: ignore[no-untyped-def]
    if request.param == "fs":
        backend: ObjectStore = FilesystemObjectStore(tmp_path / "store")
    else:
        backend = S3ObjectStore(request.getfixturevalue("s3_settings"))
    backend.ensure_bucket()
    return backend


def test_content_addressed_put_get_stat_exists(store: ObjectStore) -> None:
    data = b"a cell crop" * 100
    stored = put_content_addressed(store, "cells", data, "image/png", ".png")
    digest = hashlib.sha256(data).hexdigest()
    assert stored.key == content_key("cells", digest, ".png") and stored.sha256 == digest
    assert store.exists(stored.key) and store.get(stored.key) == data
    assert store.stat(stored.key).size_bytes == len(data)
    again = put_content_addressed(store, "cells", data, "image/png", ".png")
    assert again.key == stored.key  # deduplicated


def test_missing_objects_and_bad_keys(store: ObjectStore) -> None:
    missing = content_key("cells", "0" * 64, ".png")
    assert not store.exists(missing)
    with pytest.raises(NotFound):
        store.get(missing)
    with pytest.raises(InvalidArgument):
        store.put_bytes("../etc/passwd", b"x", "text/plain")


def test_corrupted_object_is_detected_on_read(store: ObjectStore) -> None:
    key = content_key("cells", hashlib.sha256(b"original").hexdigest(), ".png")
    store.put_bytes(key, b"tampered", "image/png")  # bytes that do not match the address
    with pytest.raises(IntegrityError):
        store.get(key)
    assert store.get(key, verify=False) == b"tampered"


def test_large_object_round_trips(store: ObjectStore) -> None:
    data = bytes(range(256)) * (12 * 4096)  # 12 MiB, one verified part
    stored = put_content_addressed(store, "fields", data, "application/octet-stream")
    assert store.get(stored.key) == data


def test_s3_presigned_urls_work_over_http(s3_settings) -> None:  # type: ignore[no-untyped-def]
    store = S3ObjectStore(s3_settings)
    store.ensure_bucket()
    key = "uploads/presigned-test.bin"
    request = urllib.request.Request(
        store.presign_put(key),
        data=b"uploaded",
        method="PUT",
        headers={"Content-Type": "application/octet-stream"},
    )
    with urllib.request.urlopen(request) as response:
        assert response.status == 200
    with urllib.request.urlopen(store.presign_get(key)) as response:
        assert response.read() == b"uploaded"


def test_filesystem_backend_refuses_presigned_upload(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="s3"):
        FilesystemObjectStore(tmp_path).presign_put("uploads/x.bin")
