"""Remote sources through fsspec: `s3://`, `gs://`, `http(s)://`, `memory://` and any other
protocol fsspec knows, listed and read by streaming, never written.

A source given as a URL is recorded as that URL (``s3://bucket/comics``) and each file as
its path inside it, exactly like a folder: its `image_id` is its content's SHA-256, so a
file copied from a local disk to a bucket keeps its id. Credentials are never taken from
lamina's arguments or written into the store: each protocol's library finds them in its
own standard environment or config (s3fs: `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`,
`AWS_PROFILE` and `~/.aws/credentials`; gcsfs: `GOOGLE_APPLICATION_CREDENTIALS` or
gcloud's application-default credentials). A URL that carries a user, a password or a
query string (a signed URL) is refused, because the URL is what the store records.

The listing is one snapshot taken at the start of a scan (`walk_remote`); a file that
changes or goes away before it is read is recorded as such, and the next scan lists it
again (`open_checked`).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

from lamina.core.errors import SourceError

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")

# The package each common protocol needs, and the extra of lamina that installs it.
_PACKAGES = {
    "s3": ("s3fs", "s3"),
    "s3a": ("s3fs", "s3"),
    "gs": ("gcsfs", "gcs"),
    "gcs": ("gcsfs", "gcs"),
    "http": ("aiohttp", "remote"),
    "https": ("aiohttp", "remote"),
}

# Where each protocol's library looks for credentials (named in the error when they are
# missing or refused).
CREDENTIALS = {
    "s3": "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE with "
    "~/.aws/credentials, or an instance role); AWS_ENDPOINT_URL for an S3-compatible server",
    "gs": "GOOGLE_APPLICATION_CREDENTIALS (a service-account JSON file) or "
    "~/.config/gcloud/application_default_credentials.json "
    "(`gcloud auth application-default login`)",
}
CREDENTIALS["s3a"] = CREDENTIALS["s3"]
CREDENTIALS["gcs"] = CREDENTIALS["gs"]

# Names botocore / google-auth give their missing-credential errors.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NO_CREDENTIALS = ("NoCredentialsError", "PartialCredentialsError", "DefaultCredentialsError")


def is_url(path: str | Any) -> bool:
    """Whether `path` is a URL of a remote filesystem (`scheme://...`, not `file://`).

    Example:
        >>> is_url("s3://bucket/comics"), is_url("/data/comics"), is_url("file:///data")
        (True, False, False)
    """
    if not isinstance(path, str):
        return False
    match = _SCHEME.match(path)
    return match is not None and match.group(1).lower() != "file"


def protocol_of(url: str) -> str:
    """The URL's protocol, lower-case.

    Example:
        >>> protocol_of("S3://bucket/x")
        's3'
    """
    match = _SCHEME.match(url)
    return match.group(1).lower() if match else "file"


def check_url(url: str) -> str:
    """`url` as a source: refused with a clear error when it carries credentials or a query
    (both would be recorded in the store), else returned without a trailing '/'.

    Example:
        >>> check_url("s3://bucket/comics/"), check_url("memory:///")
        ('s3://bucket/comics', 'memory://')
    """
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        shown = url.replace(parts.netloc, parts.hostname or "HOST", 1)
        raise SourceError(
            f"the source {shown} carries a user name or password; lamina records each "
            "source's URL in the store and never stores a secret",
            hint="give the URL without credentials and let the protocol's library find them "
            f"in its own environment or config ({_where(protocol_of(url))})",
        )
    if parts.query or parts.fragment:
        raise SourceError(
            f"the source {url.split('?')[0]}?… has a query string (a signed URL, a token); "
            "lamina records each source's URL in the store and never stores a secret",
            hint="give the URL of the folder (prefix) without '?…'",
        )
    root = url.rstrip("/")
    # A filesystem's root keeps its "//": "memory:" would be no URL (a local path).
    return f"{root}//" if root.endswith(":") else root


def _where(protocol: str) -> str:
    return CREDENTIALS.get(protocol, "see the fsspec backend's documentation")


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem for `url` and the path inside it, with a clear error when
    the protocol is unknown or its package is not installed.

    Example:
        >>> fs, path = filesystem("memory://bucket/comics")
        >>> type(fs).__name__, path
        ('MemoryFileSystem', '/bucket/comics')
    """
    protocol = protocol_of(url)
    try:
        import fsspec
    except ImportError:
        raise SourceError(
            f"{protocol}:// sources need fsspec", hint="pip install 'lamina[remote]'"
        ) from None
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except ImportError as exc:
        package, extra = _PACKAGES.get(protocol, (None, None))
        hint = (
            f"pip install 'lamina[{extra}]' (installs {package})"
            if package
            else f"install the fsspec backend for {protocol}://"
        )
        message = f"{protocol}:// sources need {package or 'a backend'}: {exc}"
        raise SourceError(message, hint=hint) from None
    except ValueError as exc:
        raise SourceError(
            f"{url}: {exc}", hint="use a protocol fsspec knows: s3://, gs://, http(s)://, …"
        ) from None
    return fs, path


def remote_error(url: str, exc: BaseException) -> SourceError:
    """The error a user can act on for `exc`, raised while reaching `url`: missing or
    refused credentials name the variables and files the protocol's library reads.

    Example:
        >>> remote_error("s3://b/x", PermissionError("Access Denied")).hint[:31]
        'set AWS_ACCESS_KEY_ID and AWS_S'
    """
    protocol = protocol_of(url)
    name = type(exc).__name__
    chain = [name, *(type(c).__name__ for c in (exc.__cause__, exc.__context__) if c)]
    if any(n in _NO_CREDENTIALS for n in chain):
        return SourceError(
            f"no credentials for {url} ({name}: {exc})",
            hint=f"set {_where(protocol)}; lamina never stores them",
        )
    if isinstance(exc, PermissionError):
        return SourceError(
            f"access to {url} was refused: {exc}",
            hint=f"set {_where(protocol)}, for an identity allowed to list and read it",
        )
    if isinstance(exc, FileNotFoundError):
        what = "bucket or prefix" if protocol in CREDENTIALS else "location"
        return SourceError(
            f"the source {url} does not exist (no such {what})",
            hint="check the bucket name and prefix, and that the credentials in use can see it",
        )
    return SourceError(
        f"cannot reach the source {url}: {name}: {exc}",
        hint="check the URL, the network and the endpoint (AWS_ENDPOINT_URL for S3-compatible "
        "servers)",
    )


def check_remote_source(url: str) -> str:
    """`url` checked as a source folder: allowed (`check_url`), its protocol installed,
    and a folder (prefix) that exists and lists. Returns the URL as recorded.

    Example:
        >>> check_remote_source("memory://no-such-bucket")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        lamina.core.errors.SourceError: the source memory://no-such-bucket does not exist ...
    """
    url = check_url(url)
    fs, path = filesystem(url)
    try:
        fs.invalidate_cache()
        exists = fs.isdir(path)
    except Exception as exc:
        raise remote_error(url, exc) from exc
    if not exists:
        raise remote_error(url, FileNotFoundError(url))
    return url


def mtime_ns(info: dict[str, Any]) -> int | None:
    """A listing entry's modification time in ns, from whichever key the backend uses
    (local `mtime`, S3 `LastModified`, GCS `updated`, HTTP `Last-Modified`, memory
    `created`); None when it gives none.

    Example:
        >>> mtime_ns({"Last-Modified": "Sat, 05 Dec 2026 21:08:40 GMT"})
        1796504920000000000
    """
    for key in ("mtime", "LastModified", "last_modified", "updated", "Last-Modified", "created"):
        value = info.get(key)
        if value is None:
            continue
        # Microseconds: the finest any of them keeps, and one float or datetime of the same
        # moment gives the same number (a listing and an info call may differ in type).
        if isinstance(value, (int, float)):
            return round(value * 1e6) * 1000 if value < 1e12 else int(value)
        if isinstance(value, str):
            try:
                value = (
                    parsedate_to_datetime(value)
                    if key == "Last-Modified"
                    else datetime.fromisoformat(value.replace("Z", "+00:00"))
                )
            except (TypeError, ValueError):
                continue
        if isinstance(value, datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=UTC)
            return (value - _EPOCH) // timedelta(microseconds=1) * 1000
    return None


def _size(fs: Any, name: str, entry: dict[str, Any]) -> tuple[int | None, int | None]:
    """An entry's size and mtime; one more request (HEAD) where the listing gives no size
    (an HTTP index page)."""
    size = entry.get("size")
    if size is None:
        entry = fs.info(name)
        size = entry.get("size")
    return (None if size is None else int(size)), mtime_ns(entry)


# Keys per page of a paged listing (S3's ListObjectsV2 gives at most 1,000 a request).
LIST_PAGE = 1000


def _s3_pages(fs: Any, path: str) -> Iterator[list[dict[str, Any]]]:
    """The objects under `path` of an s3fs filesystem, a page at a time, in key order
    (ListObjectsV2 without a delimiter returns keys in UTF-8 byte order, which is the
    code-point order Python sorts by): memory is one page, not the whole listing that
    `find` builds (~1.2 KB a key)."""
    from fsspec.asyn import sync

    bucket, key, _version = fs.split_path(path)
    prefix = f"{key.rstrip('/')}/" if key else ""
    # s3fs's own page iterator (each page one request through its retrying `_call_s3`,
    # with its credentials and endpoint), driven on its event loop a page at a time.
    objects = fs._iterdir(bucket, delimiter="", prefix=prefix)

    async def take(n: int) -> list[dict[str, Any]]:
        page: list[dict[str, Any]] = []
        try:
            while len(page) < n:
                page.append(await objects.__anext__())
        except StopAsyncIteration:
            pass
        return page

    while page := sync(fs.loop, take, LIST_PAGE):
        yield page


def _listed(fs: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, details) of every object under `path`, in name order: paged where the
    backend allows it (s3fs), else one `find` (memory://, gs://, http(s)://: held whole)."""
    if type(fs).__name__ == "S3FileSystem" and hasattr(fs, "_iterdir"):
        for page in _s3_pages(fs, path):
            for info in page:
                yield info["name"], info
        return
    found = fs.find(path, detail=True, withdirs=False)
    for name in sorted(found):
        yield name, found[name]


def walk_remote(url: str) -> Iterator[tuple[str, int | None, int | None]]:
    """The files under `url` as (path inside it, size, mtime_ns), in path order: one
    listing, taken now (no cached listing is reused), so that a scan works on one snapshot.
    An S3 listing is read a page (1,000 keys) at a time as the scan consumes it, so the
    scan's memory does not grow with the number of keys.

    Example:
        >>> list(walk_remote("memory://bucket/comics"))  # doctest: +SKIP
        [('Vol 01/p001.jpg', 20817, 1796504967326720000)]
    """
    fs, path = filesystem(url)
    root = path.rstrip("/")
    # Names come back in the backend's own spelling of `path` (fsspec strips the protocol
    # the same way for both); a name not under it is left out.
    base = fs._strip_protocol(root).rstrip("/") + "/"
    quoted = protocol_of(url) in ("http", "https")  # an index page's links are %-quoted
    try:
        fs.invalidate_cache()  # a listing cached by an earlier scan is not this snapshot
        listed = _listed(fs, path)
        for name, entry in listed:
            if not name.startswith(base) or name.endswith("/"):
                continue
            rel = unquote(name[len(base) :]) if quoted else name[len(base) :]
            if not rel:
                continue
            try:
                size, mtime = _size(fs, name, entry)
            except FileNotFoundError:
                continue  # gone between the listing and its size: not in this snapshot
            yield rel, size, mtime
    except Exception as exc:
        raise remote_error(url, exc) from exc


def open_remote(url: str) -> BinaryIO:
    """Open the remote file `url` for reading, as a stream (buffered range reads where
    the backend has them). Raises FileNotFoundError when it is not there.

    Example:
        >>> open_remote("memory://bucket/comics/p001.jpg").read(3)  # doctest: +SKIP
        b'\\xff\\xd8\\xff'
    """
    fs, path = filesystem(url)
    f: BinaryIO = fs.open(path, "rb")
    return f


def open_seekable(url: str, max_bytes: int) -> BinaryIO:
    """Open the remote file `url` for random access (an archive's index is at its end):
    range reads where the server allows them, else (an HTTP server without range
    requests) its bytes in memory when they are at most `max_bytes`; OSError otherwise.

    Example:
        >>> open_seekable("memory://bucket/Vol 01.cbz", 1 << 30).seek(-22, 2)  # doctest: +SKIP
        5120
    """
    f = open_remote(url)
    try:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - 1))
        f.read(1)  # the backend's range read (fsspec raises here when the server has none)
        f.seek(0)
        return f
    except ValueError:
        f.close()
    info = remote_info(url)
    size = int(info.get("size") or 0)
    if size > max_bytes:
        raise OSError(
            f"{url}: the server does not allow range requests, and at {size} bytes the "
            f"archive is over {max_bytes} to read into memory"
        )
    with open_remote(url) as whole:
        return io.BytesIO(whole.read())


def remote_info(url: str) -> dict[str, Any]:
    """The backend's facts about the file `url` (size, mtime, …); FileNotFoundError when
    it is not there.

    Example:
        >>> remote_info("memory://bucket/comics/p001.jpg")["size"]  # doctest: +SKIP
        20817
    """
    fs, path = filesystem(url)
    info: dict[str, Any] = fs.info(path)
    return info


def _opened_info(f: Any) -> dict[str, Any]:
    """What an open remote file already knows about itself (no further request): its
    details where the backend fetched them at open (s3fs, gcsfs: one HEAD, with the
    mtime), else its size; a memory:// file's size and time."""
    details = getattr(f, "_details", None)
    if isinstance(details, dict):
        return details
    if hasattr(f, "getbuffer"):  # memory://: a BytesIO with a creation time
        return {"size": len(f.getbuffer()), "created": getattr(f, "created", None)}
    size = getattr(f, "size", None)
    return {} if size is None else {"size": size}


def open_checked(url: str, size: int | None, mtime: int | None) -> tuple[BinaryIO | None, str]:
    """Open the remote file `url` if it is still as the scan's listing saw it (its size,
    and its mtime where the backend gives one at open): (the file, ""), else (None, what
    changed). The scan records such a file `unreadable / changed_during_scan`; the next
    scan lists and reads it again.

    Example:
        >>> open_checked("memory://bucket/gone.jpg", 10, None)
        (None, 'gone since the listing')
    """
    try:
        f = open_remote(url)
    except FileNotFoundError:
        return None, "gone since the listing"
    info = _opened_info(f)
    now_size, now_mtime = info.get("size"), mtime_ns(info)
    changed = ""
    if size is not None and now_size is not None and int(now_size) != size:
        changed = f"listed at {size} bytes, {now_size} bytes when opened"
    elif mtime is not None and now_mtime is not None and now_mtime != mtime:
        changed = "modified since the listing"
    if changed:
        f.close()
        return None, changed
    return f, ""
