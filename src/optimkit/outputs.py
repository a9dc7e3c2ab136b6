"""One way to write results: atomic files, atomic folders, and the check of an output location.

Every command and the trainer write through this module:

- `atomic_write(path, data)` and `atomic_save(path, write)`: a temporary file next to `path`
  (written, flushed, fsynced), then `os.replace` into place. Readers see the old file or the
  new one, never half of one.
- `atomic_folder(out)`: a context manager yielding a temporary sibling folder; on success the
  folder replaces `out` in one rename (an existing `out` is first renamed aside, then removed),
  on failure it is removed. Nothing half-written is ever visible under `out`.
- `check_out(out)`: before any work starts, `out` must be a folder or creatable, writable, not
  the root or the empty string, not a file or below a file (`/dev/null/x`), not a place where
  nothing can be created (`/proc/...`, a read-only mount). A violation is an `OutputError`
  (a ValueError: the CLI prints it as one line and exits 2). It creates nothing.
- `remove_stale(folder)`: temporaries of a process that died (kill -9) are removed by the next
  run. Every temporary is named ``.optimkit-<pid>-<random>-<name>`` and is held under an
  exclusive `flock` by the process writing it, which the kernel releases when that process
  dies; a temporary nobody holds is stale (pid reuse cannot fool it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: temporaries are never taken for stale
    fcntl = None  # type: ignore[assignment]

#: every temporary file and folder starts with this
PREFIX = ".optimkit-"
_OURS = re.compile(r"^\.optimkit-\d+-[0-9a-f]{8}-")
_LEGACY = re.compile(r"^\.optimkit-[a-z0-9_]{8}$")  # tempfile.mkdtemp names of older versions
#: a temporary younger than this is never removed (created, not yet locked)
_GRACE_S = 2.0


class OutputError(ValueError):
    """An output location that cannot be used: a one-line message naming it."""


def temp_name(name: str) -> str:
    """The name of a temporary for `name`: ``.optimkit-<pid>-<random>-<name>``."""
    return f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{name}"


def _lock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


# ----------------------------------------------------------------------------------- files
def atomic_save(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary path next to `path`, then replace `path` with it.
    The parent folder is created if missing; the file gets mode 0o644."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(temp_name(path.name) + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        _lock(fd)
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    finally:
        os.close(fd)
    return path


def atomic_write(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write `data` (text as UTF-8) to `path` atomically (see `atomic_save`)."""
    raw = data.encode() if isinstance(data, str) else data
    return atomic_save(path, lambda tmp: tmp.write_bytes(raw))


# --------------------------------------------------------------------------------- folders
@contextlib.contextmanager
def staging_folder(parent: str | os.PathLike[str], name: str) -> Iterator[Path]:
    """A new empty temporary folder in `parent` (created if missing), held under this
    process's lock while the block runs and removed after it (whatever it still holds)."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale(parent)
    staging = parent / temp_name(name)
    staging.mkdir()
    fd = os.open(staging, os.O_RDONLY)
    try:
        _lock(fd)
        yield staging
    finally:
        os.close(fd)
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def atomic_folder(out: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary folder next to `out`; when the block ends without an error it
    becomes `out` (replacing an existing `out` whole), otherwise it is removed."""
    out = Path(out)
    with staging_folder(out.parent, out.name) as staging:
        yield staging
        old = None
        if out.is_symlink() or (out.exists() and not out.is_dir()):
            out.unlink()
        elif out.exists():
            old = out.with_name(temp_name("old-" + out.name))
            os.replace(out, old)
        os.replace(staging, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def discard_on_error(
    *paths: str | os.PathLike[str], errors: tuple[type[BaseException], ...] = (ValueError,)
) -> Iterator[None]:
    """Remove what the block created at `paths` when it raises one of `errors`: a path that
    did not exist (a folder with the parents made for it), or the new entries of a folder that
    did. A run refused before it trained leaves nothing behind."""
    before: list[tuple[Path, Path | None, set[str] | None]] = []
    for p in paths:
        path = Path(os.path.abspath(p))
        top = None
        probe = path
        while not os.path.lexists(probe) and probe.parent != probe:
            top, probe = probe, probe.parent
        entries = set(os.listdir(path)) if top is None and path.is_dir() else None
        before.append((path, top, entries))
    try:
        yield
    except errors:
        for path, top, entries in before:
            with contextlib.suppress(OSError):
                if top is not None and os.path.lexists(top):
                    _remove(top)
                    for extra in (".lock", "-journal", "-wal", "-shm"):  # storage siblings
                        side = path.with_name(path.name + extra)
                        if os.path.lexists(side):
                            _remove(side)
                elif entries is not None:
                    for name in set(os.listdir(path)) - entries:
                        _remove(path / name)
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_stale(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporaries in `folder` left by processes that died; return them."""
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        if not entry.name.startswith(PREFIX):
            continue
        path = Path(entry.path)
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if now - st.st_mtime < _GRACE_S:
            continue
        if _OURS.match(entry.name):
            if not _unheld(path):
                continue
        elif not (_LEGACY.match(entry.name) and entry.is_dir(follow_symlinks=False)):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed


def _unheld(path: Path) -> bool:
    """True when no live process holds `path`'s lock."""
    if fcntl is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)  # closing releases the lock taken here
    return True


# --------------------------------------------------------------------------- the location
def check_out(
    out: str | os.PathLike[str] | None, *, option: str = "out", replaces: bool = False
) -> Path:
    """`out` checked before any work: a folder or creatable, writable, not the root, not the
    empty string, not a file, not below a file. ``replaces=True`` (the command replaces the
    folder as a whole) also refuses the working folder and its parents. Creates nothing;
    removes stale temporaries (see `remove_stale`) next to and inside `out`."""
    if out is None or str(out).strip() == "":
        raise OutputError(f"{option}: expected a folder, got ''")
    raw = str(out)
    path = Path(os.path.abspath(os.path.expanduser(raw)))
    shown = repr(raw)
    if path == Path(path.anchor):
        raise OutputError(f"{option}: {shown} is the root folder; give a folder to write into")
    if replaces:
        cwd = Path.cwd()
        if path == cwd or path in cwd.parents:
            raise OutputError(f"{option}: {shown} holds the working folder; give a folder of "
                              "its own")  # fmt: skip
    # the first existing ancestor (or out itself) must be a folder we can create things in
    probe = path
    while not os.path.lexists(probe):
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.is_symlink() and not probe.exists():
        raise OutputError(f"{option}: {shown}: {str(probe)!r} is a broken link")
    if not probe.is_dir():
        what = "is a file" if probe == path else f"is below {str(probe)!r}, which is a file"
        if probe == path:
            what += ", not a folder"
        raise OutputError(f"{option}: {shown} {what}")
    _check_writable(probe, option, shown)
    remove_stale(path.parent)
    if path.is_dir():
        remove_stale(path)
    return Path(out)


def _check_writable(folder: Path, option: str, shown: str) -> None:
    """Create and remove a folder in `folder` (root ignores permission bits: only trying
    tells)."""
    trial = folder / temp_name("probe")
    try:
        trial.mkdir()
    except OSError as e:
        reasons = {errno.EACCES: "permission denied", errno.EPERM: "permission denied",
                   errno.EROFS: "read-only file system",
                   errno.ENOENT: "the file system does not allow it"}  # fmt: skip
        reason = reasons.get(e.errno or 0, e.strerror or type(e).__name__)
        raise OutputError(f"{option}: {shown} is not writable (nothing can be created in "
                          f"{str(folder)!r}: {reason})") from None  # fmt: skip
    with contextlib.suppress(OSError):
        trial.rmdir()


__all__ = [
    "PREFIX",
    "OutputError",
    "atomic_folder",
    "atomic_save",
    "atomic_write",
    "check_out",
    "discard_on_error",
    "remove_stale",
    "staging_folder",
    "temp_name",
]
