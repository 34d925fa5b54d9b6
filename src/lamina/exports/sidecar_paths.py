"""Where an original's XMP sidecar goes, and why a path cannot hold one (for
`lamina.exports.sidecars`).

Where a sidecar goes (`sidecar_path`):

* `style="adobe"`: ``photo.jpg`` -> ``photo.xmp`` (Lightroom, Bridge). Two originals that
  differ only by extension (``photo.jpg``, ``photo.png``) would share it: both are reported
  as a clash and left alone (use the darktable style for them).
* `style="darktable"`: ``photo.jpg`` -> ``photo.jpg.xmp`` (darktable, digiKam).
* `sidecar_dir`: the same names in a mirror tree, for read-only collections
  (`mirror_roots`): ``DIR/<rel_path>`` for a store with one source;
  ``DIR/<source folder name>/<rel_path>`` with several. Two sources with the same folder
  name (``/x/A/photos``, ``/x/B/photos``) would share a mirror root, so each of them gets
  ``DIR/<name>-<first 8 hex digits of the SHA-256 of the source's path>/<rel_path>``
  (``photos-1a2b3c4d``): deterministic, the same on every run.

A sidecar the file system cannot hold (a name over `NAME_MAX` bytes, a path too long), a
read-only folder or a path that is not UTF-8 fails that file only (`path_problem`,
`read_only_error`, `write_error`, `is_utf8`).
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

from lamina.core.errors import LaminaError

# The longest file name (in bytes) ext4, XFS, Btrfs, APFS and NTFS allow.
NAME_MAX = 255
STYLES = ("adobe", "darktable")


def sidecar_path(
    original: str | os.PathLike[str],
    *,
    style: str = "adobe",
    sidecar_dir: str | os.PathLike[str] | None = None,
    rel_path: str | None = None,
) -> Path:
    """Where the sidecar of `original` goes (see the module docstring). With `sidecar_dir`,
    `rel_path` (the original's path below the mirror tree's root) is required.

    Example:
        >>> sidecar_path("/photos/a/cat.jpg").as_posix()
        '/photos/a/cat.xmp'
        >>> sidecar_path("/photos/a/cat.jpg", style="darktable").as_posix()
        '/photos/a/cat.jpg.xmp'
        >>> sidecar_path("/photos/a/cat.jpg", sidecar_dir="/xmp", rel_path="a/cat.jpg").as_posix()
        '/xmp/a/cat.xmp'
    """
    if style not in STYLES:
        raise LaminaError(f"unknown sidecar style {style!r}", hint=f"one of: {', '.join(STYLES)}")
    base = Path(original)
    if sidecar_dir is not None:
        if rel_path is None:
            raise ValueError("sidecar_path: a sidecar_dir needs the original's rel_path")
        base = Path(sidecar_dir).absolute() / rel_path
    if style == "darktable":
        return base.with_name(base.name + ".xmp")
    return base.with_suffix(".xmp")


def clash(original: Path, originals: list[str]) -> str:
    """Why the sidecar of `original` is not written: `originals` (it among them) map to it.

    Example:
        >>> clash(Path("/p/a.jpg"), ["/p/a.jpg", "/p/a.png"]).endswith("--style darktable)")
        True
    """
    others = [o for o in originals if o != str(original)] or originals[1:]
    text = (
        f"{len(originals)} originals map to this sidecar, so none is written: "
        f"{original} and {', '.join(others)}"
    )
    paths = [Path(o) for o in originals]
    if len({(p.parent, p.stem) for p in paths}) == 1 and len({p.suffix for p in paths}) > 1:
        text += " (they differ only by extension: use --style darktable)"
    return text


def mirror_roots(sources: list[str]) -> dict[str, str]:
    """Each source's folder below a `sidecar_dir` (see the module docstring): "" for a
    single source, else its folder name, with a hash of its path when names repeat.

    Example:
        >>> mirror_roots(["/x/A/photos"])
        {'/x/A/photos': ''}
        >>> mirror_roots(["/x/A/photos", "/y/scans"])
        {'/x/A/photos': 'photos', '/y/scans': 'scans'}
        >>> sorted(mirror_roots(["/x/A/photos", "/x/B/photos"]).values())
        ['photos-026092a8', 'photos-18b03efc']
    """
    unique = sorted(set(sources))
    if len(unique) <= 1:
        return dict.fromkeys(unique, "")
    names: dict[str, list[str]] = {}
    for source in unique:
        names.setdefault(Path(source).name, []).append(source)
    roots = {}
    for name, same in names.items():
        for source in same:
            if len(same) == 1 and name:
                roots[source] = name
            else:
                digest = hashlib.sha256(source.encode("utf-8", "surrogateescape")).hexdigest()
                roots[source] = f"{name or 'source'}-{digest[:8]}"
    return roots


def is_utf8(path: Path) -> bool:
    """Whether `path` is valid UTF-8 (exiftool's JSON can name only such paths).

    Example:
        >>> is_utf8(Path("café.xmp")), is_utf8(Path(os.fsdecode(b"caf\\xe9.xmp")))
        (True, False)
    """
    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def read_only_error(path: Path) -> str:
    """The error of a sidecar whose folder cannot be written.

    Example:
        >>> read_only_error(Path("/ro/a.xmp")).split(":")[0]
        'the folder /ro is read-only'
    """
    return (
        f"the folder {path.parent} is read-only: nothing was written there (write the "
        "sidecars elsewhere with --sidecar-dir DIR)"
    )


def path_problem(original: Path, sidecar: Path) -> str | None:
    """Why the file system cannot hold a file at `sidecar` (its name or path is too
    long) or cannot even look there, else None. Checked per file, so one such name fails
    only its own sidecar.

    Example:
        >>> path_problem(Path("/p/a.jpg"), Path("/p/a.xmp")) is None
        True
        >>> path_problem(Path("/p/a.jpg"), Path("/p/" + "a" * 300 + ".xmp"))[:40]
        "the sidecar's name would be 304 bytes, m"
    """
    size = len(os.fsencode(sidecar.name))
    if size > NAME_MAX:
        fix = (
            "use --style adobe (photo.xmp)"
            if sidecar.name == original.name + ".xmp"
            else "rename the original"
        )
        return (
            f"the sidecar's name would be {size} bytes, more than the {NAME_MAX} a file "
            f"system allows: {fix}"
        )
    try:
        os.lstat(sidecar)
    except (FileNotFoundError, NotADirectoryError):
        pass  # not there yet (or its folder is a file: reported when writing)
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            return f"the sidecar path is too long for the file system: {exc.strerror}"
        return f"cannot look at the sidecar path: {exc.strerror or exc}"
    return None


def write_error(path: Path, exc: OSError) -> str:
    """The error of a sidecar that could not be written, with what to do about it.

    Example:
        >>> write_error(Path("/p/a.xmp"), PermissionError(13, "Permission denied"))[:40]
        'cannot write /p/a.xmp: Permission denied'
    """
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENAMETOOLONG:
        return f"cannot write {path}: {reason} (shorten the original's name or folder)"
    return (
        f"cannot write {path}: {reason} (a read-only folder? write the sidecars elsewhere "
        "with --sidecar-dir DIR)"
    )
