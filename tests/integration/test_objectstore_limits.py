"""Bounded time and memory in the object store: a silent S3 endpoint fails calls within
seconds, S3 calls run on the store's own bounded pool, and objects over the size limit are
refused before they are read whole."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from marrowscope.core.errors import ObjectTooLarge, Unavailable
from marrowscope.core.objectstore import (
    FilesystemObjectStore,
    S3ObjectStore,
    content_key,
    in_store_thread,
    put_content_addressed,
)
from marrowscope.core.settings import ObjectStoreSettings

pytestmark = pytest.mark.integration


@contextmanager
def silent_endpoint() -> Iterator[str]:
    """A TCP port that accepts connections and never answers (a hung S3 endpoint)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(32)
    listener.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])  # kept open, never read, never answered
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


def test_a_silent_endpoint_fails_get_and_put_within_seconds() -> None:
    with silent_endpoint() as endpoint:
        store = S3ObjectStore(
            ObjectStoreSettings(
                backend="s3",
                endpoint=endpoint,
                access_key="test",
                secret_key="testsecret",
                connect_timeout_s=0.5,
                read_timeout_s=0.5,
                retries=2,
            )
        )
        try:
            key = content_key("cells", hashlib.sha256(b"x").hexdigest(), ".png")
            for what, call in [
                ("get", lambda: store.get(key)),
                ("put", lambda: store.put_bytes(key, b"x", "image/png")),
            ]:
                started = time.monotonic()
                with pytest.raises(Unavailable) as failed:
                    call()
                elapsed = time.monotonic() - started
                # Three attempts of 0.5 s plus back-off, not the client's default minutes.
                assert elapsed < 5, f"{what} took {elapsed:.1f}s"
                message = str(failed.value)
                assert f"http://{endpoint}" in message and what in message, message
                assert "timed out" in message.lower(), message
        finally:
            store.close()


def test_default_timeouts_are_short_and_the_client_uses_them(s3_settings) -> None:  # type: ignore[no-untyped-def]
    defaults = ObjectStoreSettings()
    assert defaults.connect_timeout_s <= 5 and defaults.read_timeout_s <= 30
    assert defaults.retries <= 3
    store = S3ObjectStore(s3_settings)
    try:
        pool_options = store.http.connection_pool_kw
        assert pool_options["timeout"].connect_timeout == defaults.connect_timeout_s
        assert pool_options["timeout"].read_timeout == defaults.read_timeout_s
        assert pool_options["retries"].total == defaults.retries
        assert store.client._http is store.http  # minio calls go through it
    finally:
        store.close()


def test_s3_calls_run_on_the_stores_own_bounded_pool(s3_settings) -> None:  # type: ignore[no-untyped-def]
    store = S3ObjectStore(s3_settings.model_copy(update={"max_concurrent_requests": 1}))
    store.ensure_bucket()
    seen: list[str] = []
    original = store.client.stat_object

    def stat_object(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(threading.current_thread().name)
        return original(*args, **kwargs)

    store.client.stat_object = stat_object  # type: ignore[method-assign]

    async def scenario() -> None:
        # Several store calls in one function on a pool of one thread: they run inline
        # there, without waiting for a second thread of the pool (no deadlock).
        stored = await asyncio.wait_for(
            in_store_thread(store, put_content_addressed, store, "cells", b"crop", "image/png"),
            timeout=20,
        )
        assert await in_store_thread(store, store.get, stored.key) == b"crop"

    try:
        asyncio.run(scenario())
        assert store.exists(content_key("cells", hashlib.sha256(b"crop").hexdigest()))
        assert seen and all(name.startswith("objectstore-s3") for name in seen), seen
    finally:
        store.close()


def test_objects_over_the_limit_are_not_read(s3_settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    big = bytes(4096)
    writer = S3ObjectStore(s3_settings)
    reader = S3ObjectStore(s3_settings.model_copy(update={"max_object_bytes": 1024}))
    try:
        writer.ensure_bucket()
        stored = put_content_addressed(writer, "uploads", big, "application/octet-stream")
        with pytest.raises(ObjectTooLarge, match="MARROWSCOPE_STORE_MAX_OBJECT_BYTES"):
            reader.get(stored.key)
        small = put_content_addressed(writer, "uploads", b"small", "application/octet-stream")
        assert reader.get(small.key) == b"small"
    finally:
        writer.close()
        reader.close()

    folder = FilesystemObjectStore(tmp_path / "store", max_object_bytes=1024)
    folder.ensure_bucket()
    dropped = tmp_path / "store" / "uploads" / "by-hand.bin"  # put there behind the store
    dropped.parent.mkdir(parents=True)
    dropped.write_bytes(big)
    with pytest.raises(ObjectTooLarge):
        folder.get("uploads/by-hand.bin")
