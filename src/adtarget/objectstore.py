"""Where a file lives: a local path, ``s3://bucket/key``, or any URI pyarrow opens.

Why one module: ``ingest``, ``export`` and ``events import`` take the same kind of argument, and
``Path("s3://b/k")`` silently became ``s3:/b/k`` ("does not exist"). Everything that reads or
writes a user-named file resolves it here; ``pyarrow.fs`` is imported lazily, and S3 takes its
credentials, region and endpoint from the usual AWS environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``, ``AWS_ENDPOINT_URL_S3`` or
``AWS_ENDPOINT_URL`` for MinIO, Ceph, moto, ...). Local paths keep plain Python file I/O.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar
from urllib.parse import urlparse

from adtarget.errors import InvalidValue

if TYPE_CHECKING:
    from pyarrow import NativeFile
    from pyarrow.fs import S3FileSystem

T = TypeVar("T")

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_uri(target: str | Path) -> bool:
    """True for ``scheme://...`` (other than ``file://``), which must not go through ``Path``."""
    return (
        isinstance(target, str) and bool(_SCHEME.match(target)) and not target.startswith("file:")
    )


@dataclass(frozen=True, slots=True)
class Location:
    """A resolved file: ``local`` for a local path, else a pyarrow filesystem and the path in it."""

    uri: str
    local: Path | None = None
    fs: Any = None
    path: str = ""

    @property
    def name(self) -> str:
        """The last path component (format detection, messages)."""
        return self.local.name if self.local is not None else PurePosixPath(self.path).name

    @property
    def suffixes(self) -> list[str]:
        return PurePosixPath(self.name).suffixes

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix

    def is_file(self) -> bool:
        """Whether the object exists; an unreachable store raises ``InvalidValue`` naming it."""
        if self.local is not None:
            return self.local.is_file()
        from pyarrow.fs import FileType

        info = self._remote("read", "path", self.fs.get_file_info)
        return bool(info.type == FileType.File)

    def open_input(self) -> BinaryIO:
        """A buffered binary file object with ``readline`` (header peeks, JSON Lines, checksums)."""
        if self.local is not None:
            return self.local.open("rb")
        return io.BufferedReader(self._remote("read", "path", self.fs.open_input_stream), 1 << 20)

    def arrow_input(self) -> Path | NativeFile:
        """What pyarrow's CSV reader streams from: the local path, or a remote input stream."""
        if self.local is not None:
            return self.local
        return self._remote("read", "path", self.fs.open_input_stream)

    def parquet_source(self) -> Path | NativeFile:
        """What ``pyarrow.parquet.ParquetFile`` takes: the path, or a random-access file."""
        if self.local is not None:
            return self.local
        return self._remote("read", "path", self.fs.open_input_file)

    def open_output(self) -> NativeFile:
        """A pyarrow output stream for a remote object (the object appears when it is closed)."""
        if self.local is not None:
            raise TypeError("local files are written through their Path")
        return self._remote("write", "out", self.fs.open_output_stream)

    def delete(self) -> None:
        """Remove a remote object (a write that failed half way)."""
        if self.local is not None:
            self.local.unlink(missing_ok=True)
            return
        with contextlib.suppress(OSError):
            self.fs.delete_file(self.path)

    def _remote(self, verb: str, field: str, call: Callable[[str], T]) -> T:
        """``call(self.path)`` on the remote filesystem; an ``OSError`` (missing object or bucket,
        unreachable store) becomes ``InvalidValue`` naming the URI and the field."""
        try:
            return call(self.path)
        except OSError as exc:
            raise InvalidValue(f"cannot {verb} {self.uri}: {_short(exc)}", field=field) from None

    def __str__(self) -> str:
        return self.uri


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def s3_filesystem(environ: dict[str, str] | None = None) -> S3FileSystem:
    """``S3FileSystem`` configured from the AWS environment variables (endpoint override too)."""
    from pyarrow.fs import S3FileSystem

    env = os.environ if environ is None else environ
    kwargs: dict[str, Any] = {}
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        kwargs["endpoint_override"] = parsed.netloc
        kwargs["scheme"] = parsed.scheme or "https"
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        kwargs["region"] = region
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        kwargs["access_key"] = env["AWS_ACCESS_KEY_ID"]
        kwargs["secret_key"] = env["AWS_SECRET_ACCESS_KEY"]
        if env.get("AWS_SESSION_TOKEN"):
            kwargs["session_token"] = env["AWS_SESSION_TOKEN"]
    return S3FileSystem(**kwargs)


def resolve(target: str | Path | Location) -> Location:
    """The ``Location`` of a local path or URI; a URI pyarrow cannot open raises ``InvalidValue``.

    Args:
        target: ``path/to/file``, ``file:///abs/path``, ``s3://bucket/key``, ``gs://...``, ...
    """
    if isinstance(target, Location):
        return target
    if isinstance(target, Path):
        return Location(uri=str(target), local=target)
    if target.startswith("file://"):
        return Location(uri=target, local=Path(urlparse(target).path))
    if not is_uri(target):
        return Location(uri=target, local=Path(target))
    scheme = target.split("://", 1)[0].lower()
    if scheme in ("s3", "s3a"):
        rest = target.split("://", 1)[1]
        bucket, _, key = rest.partition("/")
        if not bucket or not key:
            raise InvalidValue(f"{target!r} is not s3://bucket/key", field="path")
        try:
            fs = s3_filesystem()
        except (OSError, ValueError) as exc:
            raise InvalidValue(f"cannot open {target}: {_short(exc)}", field="path") from None
        return Location(uri=target, fs=fs, path=f"{bucket}/{key}")
    from pyarrow.fs import FileSystem

    try:
        fs, path = FileSystem.from_uri(target)
    except (OSError, ValueError) as exc:
        raise InvalidValue(f"cannot open {target}: {_short(exc)}", field="path") from None
    return Location(uri=target, fs=fs, path=path)
