"""Publish outputs atomically: build a new version directory, then switch a pointer to it.

`<root>/<version>/` is written under a temporary name and renamed when complete; the pointer
(`<workdir>/data` or `<workdir>/model`) is a relative symlink replaced with `os.replace`, so a
reader sees either the old complete version or the new one, never a mix. Killing the writer at
any moment leaves the previous version in place and in use.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

PARTIAL_PREFIX = ".partial-"
# A partial directory older than this belongs to a killed run, not a concurrent one.
STALE_PARTIAL_SECONDS = 3600


def new_version_name() -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def version_name(directory: Path) -> str:
    """The version a (possibly still partial) version directory will be published as."""
    name = directory.name
    if name.startswith(PARTIAL_PREFIX):
        name = name.removeprefix(PARTIAL_PREFIX).rsplit(".", 1)[0]
    return name


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    for item in path.rglob("*"):
        if item.is_file():
            with open(item, "rb") as fh:
                os.fsync(fh.fileno())
    fsync_dir(path)


def prepare_workdir(workdir: Path, pointer: str, pointer_error: type[Exception]) -> None:
    """Fail before any work when outputs could not be published: the workdir is not a writable
    folder, or the pointer (`data`, `model`) is a real directory rather than reco's link."""
    from .errors import ConfigError

    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(
            f"workdir {str(workdir)!r} is a file, not a folder; set workdir to a folder"
        )
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe = workdir / f".write-test-{secrets.token_hex(4)}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"workdir {str(workdir)!r} is not writable ({exc.strerror}); set workdir to a folder "
            "you can write to"
        ) from None
    link = workdir / pointer
    if link.exists() and not link.is_symlink():
        raise pointer_error(
            f"{link} is a real directory, not reco's pointer to a version; move it away and rerun"
        )


def publish_version(root: Path, pointer: Path, build: Callable[[Path], None], keep: int) -> Path:
    """Run `build(tmp_dir)`, then make the result the version `pointer` points at."""
    root.mkdir(parents=True, exist_ok=True)
    name = new_version_name()
    # The writer's pid in the name lets a later run tell a killed writer from a running one.
    partial = root / f"{PARTIAL_PREFIX}{name}.{os.getpid()}"
    partial.mkdir()
    try:
        build(partial)
        fsync_tree(partial)
        final = root / name
        os.rename(partial, final)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    switch_pointer(pointer, final)
    prune(root, pointer, keep)
    return final


def switch_pointer(pointer: Path, target: Path) -> None:
    if pointer.exists() and not pointer.is_symlink():
        # prepare_workdir() checks this up front; this guards a race with another process.
        raise FileExistsError(f"{pointer} is a real directory, not reco's pointer")
    tmp = pointer.with_name(f".{pointer.name}.{secrets.token_hex(4)}.tmp")
    os.symlink(os.path.relpath(target, pointer.parent), tmp)
    os.replace(tmp, pointer)
    fsync_dir(pointer.parent)


def current_version(pointer: Path) -> Path | None:
    if not pointer.is_symlink():
        return None
    return pointer.resolve()


def prune(root: Path, pointer: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` versions; never the one in use."""
    in_use = current_version(pointer)
    versions = sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.name,
    )
    removed = []
    for old in versions[:-keep] if keep > 0 else versions:
        if in_use is not None and old.resolve() == in_use:
            continue
        shutil.rmtree(old, ignore_errors=True)
        removed.append(old)
    for partial in root.glob(f"{PARTIAL_PREFIX}*"):
        if _abandoned(partial):
            shutil.rmtree(partial, ignore_errors=True)
    return removed


def _abandoned(partial: Path) -> bool:
    """A partial version whose writer is gone (killed), or that is too old to be in progress."""
    pid_text = partial.name.rsplit(".", 1)[-1]
    if pid_text.isdigit():
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # alive, another user's
        else:
            return False
    return time.time() - partial.stat().st_mtime > STALE_PARTIAL_SECONDS


def atomic_write_text(path: Path, text: str) -> None:
    """Write a single file via a temporary name and rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
