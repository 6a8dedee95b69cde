"""Object storage behind one small interface: S3 (MinIO or any S3 endpoint) or a local folder.

Puts are content-addressed: the key is ``<kind>/<sha256[:2]>/<sha256><suffix>``, so writing the
same bytes twice is a no-op and keys carry no patient identifier. Every put is verified (the
S3 ETag of a single-part upload is the MD5 we computed; the local file is re-hashed) and
``get(..., verify=True)`` checks bytes against their address.

Bounded memory and time: no object larger than ``max_object_bytes`` is written or read whole
(its size is checked before the read), and S3 calls have short connect / read timeouts, few
retries, and run on the store's own bounded thread pool (``in_store_thread`` for async code).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
import io
import os
import re
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import ParamSpec, Protocol, TypeVar

from . import metrics
from .errors import IntegrityError, InvalidArgument, NotFound, ObjectTooLarge, Unavailable
from .settings import ObjectStoreSettings

P = ParamSpec("P")
T = TypeVar("T")

_KEY = re.compile(r"^[a-z0-9][a-z0-9_\-]*(/[A-Za-z0-9_\-.]+)+$")
_ADDRESSED = re.compile(r"/([0-9a-f]{64})(\.[a-z0-9]+)?$")


@dataclass(frozen=True)
class StoredObject:
    key: str
    sha256: str
    size_bytes: int
    content_type: str


def content_key(kind: str, sha256: str, suffix: str = "") -> str:
    return f"{kind}/{sha256[:2]}/{sha256}{suffix}"


def check_key(key: str) -> str:
    if not _KEY.match(key) or ".." in key:
        raise InvalidArgument(
            f"invalid object key {key!r}: expected '<kind>/<path>' of letters, digits, '_-.'"
        )
    return key


def address_of(key: str) -> str | None:
    """The sha256 a content-addressed key names, or None for other keys."""
    match = _ADDRESSED.search(key)
    return match[1] if match else None


class ObjectStore(Protocol):
    """What services need from object storage."""

    def ensure_bucket(self) -> None: ...
    def put_bytes(self, key: str, data: bytes, content_type: str) -> StoredObject: ...
    def get(self, key: str, *, verify: bool = True) -> bytes: ...
    def stat(self, key: str) -> StoredObject: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def keys(self) -> list[str]: ...
    def close(self) -> None: ...
    def presign_get(self, key: str, expires: timedelta = timedelta(hours=1)) -> str: ...
    def presign_put(self, key: str, expires: timedelta = timedelta(hours=1)) -> str: ...


def put_content_addressed(
    store: ObjectStore, kind: str, data: bytes, content_type: str, suffix: str = ""
) -> StoredObject:
    """Store ``data`` under its sha256 address (no-op when already there)."""
    digest = hashlib.sha256(data).hexdigest()
    key = content_key(kind, digest, suffix)
    try:
        if store.stat(key).size_bytes == len(data):
            return StoredObject(key, digest, len(data), content_type)
    except NotFound:
        pass
    return store.put_bytes(key, data, content_type)


def _too_large(key: str, size: int, limit: int) -> ObjectTooLarge:
    return ObjectTooLarge(
        f"object {key} is {size} bytes, over the store's limit of {limit} "
        "(MARROWSCOPE_STORE_MAX_OBJECT_BYTES); it is not read"
    )


def _verify(key: str, data: bytes) -> None:
    expected = address_of(key)
    if expected and hashlib.sha256(data).hexdigest() != expected:
        raise IntegrityError(f"object {key} does not match its content address (corrupted)")


class FilesystemObjectStore:
    """Objects as files under ``root`` (the embedded default). Writes are atomic renames."""

    def __init__(self, root: Path, max_object_bytes: int = 64 * 1024 * 1024) -> None:
        self.root = root.resolve()
        self.max_object_bytes = max_object_bytes

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def ensure_bucket(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> StoredObject:
        if len(data) > self.max_object_bytes:
            raise InvalidArgument(f"object of {len(data)} bytes exceeds the store's limit")
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(data).hexdigest()
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            if hashlib.sha256(Path(tmp).read_bytes()).hexdigest() != digest:
                raise IntegrityError(f"write of {key} could not be verified")
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return StoredObject(key, digest, len(data), content_type)

    def get(self, key: str, *, verify: bool = True) -> bytes:
        try:
            with self._path(key).open("rb") as handle:
                # Size first: a file dropped into the folder by hand is not read whole if huge.
                size = os.fstat(handle.fileno()).st_size
                if size > self.max_object_bytes:
                    raise _too_large(key, size, self.max_object_bytes)
                data = handle.read(self.max_object_bytes + 1)
        except FileNotFoundError:
            raise NotFound(f"object {key} not found in the object store") from None
        if len(data) > self.max_object_bytes:  # grew while we read it
            raise _too_large(key, len(data), self.max_object_bytes)
        if verify:
            _verify(key, data)
        return data

    def stat(self, key: str) -> StoredObject:
        try:
            size = self._path(key).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"object {key} not found in the object store") from None
        return StoredObject(key, address_of(key) or "", size, "application/octet-stream")

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def close(self) -> None:
        """Nothing to release: files are opened per call."""

    def keys(self) -> list[str]:
        """Every object's key, sorted (for backups); unfinished writes and files that are no
        object key (put there by hand) are not objects."""
        found = (p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())
        return sorted(k for k in found if _KEY.match(k) and "/." not in f"/{k}")

    def presign_get(self, key: str, expires: timedelta = timedelta(hours=1)) -> str:
        return self._path(key).as_uri()

    def presign_put(self, key: str, expires: timedelta = timedelta(hours=1)) -> str:
        raise InvalidArgument(
            "presigned uploads need the S3 backend (set MARROWSCOPE_STORE_BACKEND=s3); "
            "upload the bytes through the API instead"
        )


class S3ObjectStore:
    """Objects in an S3 bucket through the ``minio`` client (MinIO in a cluster).

    Every call has the connect / read timeouts and retries of ``ObjectStoreSettings`` (the
    client's own defaults are 5 minutes and 5 retries) and runs on the store's own bounded
    thread pool ``executor``, so a slow or silent endpoint can neither hold a caller for
    minutes nor take every thread of a service's default executor."""

    def __init__(self, settings: ObjectStoreSettings) -> None:
        import certifi
        import urllib3
        from minio import Minio

        if not settings.endpoint:
            raise InvalidArgument("MARROWSCOPE_STORE_ENDPOINT is required for the s3 backend")
        self.bucket = settings.bucket
        self.max_object_bytes = settings.max_object_bytes
        self.endpoint = f"{'https' if settings.secure else 'http'}://{settings.endpoint}"
        # As minio builds its default client (certificate checks, retried 5xx), with our limits.
        self.http = urllib3.PoolManager(
            timeout=urllib3.Timeout(
                connect=settings.connect_timeout_s, read=settings.read_timeout_s
            ),
            maxsize=settings.max_concurrent_requests,
            cert_reqs="CERT_REQUIRED",
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
            retries=urllib3.Retry(
                total=settings.retries,
                backoff_factor=0.2,
                status_forcelist=[500, 502, 503, 504],
            ),
        )
        self.client = Minio(
            settings.endpoint,
            access_key=settings.access_key or None,
            secret_key=settings.secret_key or None,
            secure=settings.secure,
            region=settings.region,
            http_client=self.http,
        )
        self._worker = threading.local()
        self.executor = ThreadPoolExecutor(
            max_workers=settings.max_concurrent_requests,
            thread_name_prefix="objectstore-s3",
            initializer=self._mark_worker,
        )

    def _mark_worker(self) -> None:
        self._worker.active = True

    def close(self) -> None:
        """Stop the store's threads and drop its connections."""
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.http.clear()

    def _run(self, what: str, key: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` (minio calls) on the store's pool, turning its errors into domain errors
        (``key`` names the object). Already on the pool (``in_store_thread``): run here, since
        waiting there for another of its threads could deadlock a full pool."""
        call = functools.partial(self._mapped, what, key, fn, *args, **kwargs)
        with metrics.OBJECTSTORE_SECONDS.labels(what).time():
            if getattr(self._worker, "active", False):
                return call()
            context = contextvars.copy_context()  # keeps the request id for log lines
            return self.executor.submit(context.run, call).result()

    def _mapped(
        self, what: str, key: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        from minio.error import MinioException, S3Error
        from urllib3.exceptions import HTTPError, MaxRetryError

        try:
            return fn(*args, **kwargs)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                raise NotFound(f"object {key} not found in the object store") from None
            raise Unavailable(
                f"object store {self.endpoint} refused {what}: {exc.code}", "object store"
            ) from exc
        except HTTPError as exc:
            reason = exc.reason if isinstance(exc, MaxRetryError) and exc.reason else exc
            raise Unavailable(
                f"object store {self.endpoint} unreachable during {what} "
                f"({reason.__class__.__name__}: {reason}); check MARROWSCOPE_STORE_ENDPOINT, "
                "or MARROWSCOPE_STORE_READ_TIMEOUT_S for a slow store",
                "object store",
            ) from exc
        except MinioException as exc:  # e.g. a proxy's HTML error page instead of S3 XML
            raise Unavailable(
                f"object store {self.endpoint} failed {what}: {exc}", "object store"
            ) from exc

    def ensure_bucket(self) -> None:
        if not self._run("bucket check", "", self.client.bucket_exists, self.bucket):
            self._run("bucket creation", "", self.client.make_bucket, self.bucket)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> StoredObject:
        check_key(key)
        if len(data) > self.max_object_bytes:
            raise InvalidArgument(f"object of {len(data)} bytes exceeds the store's limit")
        digest = hashlib.sha256(data).hexdigest()
        result = self._run(
            "put",
            key,
            self.client.put_object,
            self.bucket,
            key,
            io.BytesIO(data),
            len(data),
            content_type=content_type,
            metadata={"sha256": digest},
            part_size=max(self.max_object_bytes, 5 * 1024 * 1024),  # one part: ETag == MD5
        )
        if (result.etag or "").strip('"') != hashlib.md5(data, usedforsecurity=False).hexdigest():
            raise IntegrityError(f"upload of {key} could not be verified (ETag mismatch)")
        return StoredObject(key, digest, len(data), content_type)

    def _read(self, key: str) -> bytes:
        response = self.client.get_object(self.bucket, key)
        try:
            # The size before the body: the response's Content-Length is the object's size (a
            # stat in the same round trip, so no race with a writer). Presigned uploads can
            # put any size; the count below also holds where the header is missing or lies.
            length = response.headers.get("content-length")
            if length is not None and int(length) > self.max_object_bytes:
                raise _too_large(key, int(length), self.max_object_bytes)
            chunks, total = [], 0
            for chunk in response.stream(1024 * 1024):
                total += len(chunk)
                if total > self.max_object_bytes:
                    raise _too_large(key, total, self.max_object_bytes)
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            response.close()
            response.release_conn()

    def get(self, key: str, *, verify: bool = True) -> bytes:
        check_key(key)
        data = self._run("get", key, self._read, key)
        if verify:
            _verify(key, data)
        return data

    def stat(self, key: str) -> StoredObject:
        check_key(key)
        info = self._run("stat", key, self.client.stat_object, self.bucket, key)
        meta = {k.lower(): v for k, v in (info.metadata or {}).items()}
        return StoredObject(
            key,
            meta.get("x-amz-meta-sha256", address_of(key) or ""),
            int(info.size or 0),
            info.content_type or "application/octet-stream",
        )

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except NotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        check_key(key)
        self._run("delete", key, self.client.remove_object, self.bucket, key)

    def keys(self) -> list[str]:
        """Every object's key in the bucket, sorted (for backups)."""

        def listing() -> list[str]:
            found = self.client.list_objects(self.bucket, recursive=True)
            return sorted(str(o.object_name) for o in found if o.object_name)

        return self._run("listing", "", listing)

    # Presigning is local computation (the region is configured): no call, no pool.
    def presign_get(self, key: str, expires: timedelta = timedelta(hours=1)) -> str:
        return str(self.client.presigned_get_object(self.bucket, check_key(key), expires=expires))

    def presign_put(self, key: str, expires: timedelta = timedelta(hours=1)) -> str:
        return str(self.client.presigned_put_object(self.bucket, check_key(key), expires=expires))


async def in_store_thread(
    store: ObjectStore, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
) -> T:
    """``asyncio.to_thread`` for object-store work: on the S3 store's own bounded pool (the
    default executor for the folder store), so slow store calls cannot take every thread of
    the default executor that database calls share. ``fn`` may make several store calls."""
    executor = store.executor if isinstance(store, S3ObjectStore) else None
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(executor, call)


def open_store(settings: ObjectStoreSettings) -> ObjectStore:
    """Build the configured backend and make sure its bucket (or folder) exists."""
    store: ObjectStore
    if settings.backend == "s3":
        store = S3ObjectStore(settings)
    else:
        store = FilesystemObjectStore(settings.root, settings.max_object_bytes)
    store.ensure_bucket()
    return store
