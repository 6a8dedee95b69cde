"""Object storage behind one small interface: S3 (MinIO or any S3 endpoint) or a local folder.

Puts are content-addressed: the key is ``<kind>/<sha256[:2]>/<sha256><suffix>``, so writing the
same bytes twice is a no-op and keys carry no patient identifier. Every put is verified (the
S3 ETag of a single-part upload is the MD5 we computed; the local file is re-hashed) and
``get(..., verify=True)`` checks bytes against their address.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from .errors import IntegrityError, InvalidArgument, NotFound, Unavailable
from .settings import ObjectStoreSettings

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
            data = self._path(key).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"object {key} not found in the object store") from None
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

    def presign_get(self, key: str, expires: timedelta = timedelta(hours=1)) -> str:
        return self._path(key).as_uri()

    def presign_put(self, key: str, expires: timedelta = timedelta(hours=1)) -> str:
        raise InvalidArgument(
            "presigned uploads need the S3 backend (set MARROWSCOPE_STORE_BACKEND=s3); "
            "upload the bytes through the API instead"
        )


class S3ObjectStore:
    """Objects in an S3 bucket through the ``minio`` client (MinIO in a cluster)."""

    def __init__(self, settings: ObjectStoreSettings) -> None:
        from minio import Minio

        if not settings.endpoint:
            raise InvalidArgument("MARROWSCOPE_STORE_ENDPOINT is required for the s3 backend")
        self.bucket = settings.bucket
        self.max_object_bytes = settings.max_object_bytes
        self.client = Minio(
            settings.endpoint,
            access_key=settings.access_key or None,
            secret_key=settings.secret_key or None,
            secure=settings.secure,
            region=settings.region,
        )

    def _call(
        self, what: str, fn: Callable[..., Any], *args: Any, key: str = "", **kwargs: Any
    ) -> Any:
        """Run a minio call, turning its errors into domain errors (``key`` names the object)."""
        from minio.error import S3Error
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, **kwargs)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                raise NotFound(f"object {key} not found in the object store") from None
            raise Unavailable(f"object store refused {what}: {exc.code}") from exc
        except HTTPError as exc:
            raise Unavailable(f"object store unreachable during {what}: {exc}") from exc

    def ensure_bucket(self) -> None:
        if not self._call("bucket check", self.client.bucket_exists, self.bucket):
            self._call("bucket creation", self.client.make_bucket, self.bucket)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> StoredObject:
        check_key(key)
        if len(data) > self.max_object_bytes:
            raise InvalidArgument(f"object of {len(data)} bytes exceeds the store's limit")
        digest = hashlib.sha256(data).hexdigest()
        result = self._call(
            "put",
            self.client.put_object,
            self.bucket,
            key,
            io.BytesIO(data),
            len(data),
            content_type=content_type,
            metadata={"sha256": digest},
            part_size=max(self.max_object_bytes, 5 * 1024 * 1024),  # one part: ETag == MD5
        )
        if result.etag.strip('"') != hashlib.md5(data, usedforsecurity=False).hexdigest():
            raise IntegrityError(f"upload of {key} could not be verified (ETag mismatch)")
        return StoredObject(key, digest, len(data), content_type)

    def get(self, key: str, *, verify: bool = True) -> bytes:
        check_key(key)
        response = self._call("get", self.client.get_object, self.bucket, key, key=key)
        try:
            data = response.read()
        finally:
            response.close()
            response.release_conn()
        if verify:
            _verify(key, data)
        return data

    def stat(self, key: str) -> StoredObject:
        check_key(key)
        info = self._call("stat", self.client.stat_object, self.bucket, key, key=key)
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
        self._call("delete", self.client.remove_object, self.bucket, key, key=key)

    def presign_get(self, key: str, expires: timedelta = timedelta(hours=1)) -> str:
        return str(self.client.presigned_get_object(self.bucket, check_key(key), expires=expires))

    def presign_put(self, key: str, expires: timedelta = timedelta(hours=1)) -> str:
        return str(self.client.presigned_put_object(self.bucket, check_key(key), expires=expires))


def open_store(settings: ObjectStoreSettings) -> ObjectStore:
    """Build the configured backend and make sure its bucket (or folder) exists."""
    store: ObjectStore
    if settings.backend == "s3":
        store = S3ObjectStore(settings)
    else:
        store = FilesystemObjectStore(settings.root, settings.max_object_bytes)
    store.ensure_bucket()
    return store
