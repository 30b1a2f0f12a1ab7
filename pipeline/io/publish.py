"""Atomic publication of an output directory's dataset folders (``data/``, ``dropped/``).

A reader (``datasets.load_dataset("parquet", data_dir=OUT/data)``) must see either the previous complete dataset
or the new one, never a mix or a part. So a build never writes into ``OUT/data``: it writes a *generation*,
``OUT/.mathaug/generations/<id>/{data,dropped}/``, and publishes it by pointing the symlinks ``OUT/data`` and
``OUT/dropped`` at the generation's folders. Each switch is one ``os.replace`` of a symlink (atomic on POSIX);
a build killed before it leaves the published dataset as it was, and its unfinished generation is removed by the
next run. The manifest is written after the switch (by the caller), so it never lists shards readers cannot see.

Files mathaug did not write that a user put inside ``OUT/data`` (which is the live generation's folder) move to
the new generation before the switch: they stay visible and are never deleted. A folder from an older mathaug
(a real ``OUT/data`` directory) is moved aside once, in two renames, and its foreign files move along the same way.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

WORK_DIR = ".mathaug"
GENERATIONS = "generations"
PUBLISHED = ("data", "dropped")


def generations_dir(out_dir: Path) -> Path:
    return Path(out_dir) / WORK_DIR / GENERATIONS


def live_target(out_dir: Path, name: str) -> Path | None:
    """The generation folder ``OUT/<name>`` points at, or None when it is not one of mathaug's links."""
    link = Path(out_dir) / name
    if not link.is_symlink():
        return None
    target = (link.parent / os.readlink(link)).resolve()
    return target if generations_dir(out_dir).resolve() in target.parents else None


def live_generations(out_dir: Path) -> set[Path]:
    return {target.parent for name in PUBLISHED if (target := live_target(out_dir, name)) is not None}


def remove_unpublished_generations(out_dir: Path) -> int:
    """Delete generations no link points at: a killed build's half-written one, or a retired one. Only
    mathaug's own files live there (foreign files are moved out before a generation is retired)."""
    root = generations_dir(out_dir)
    if not root.is_dir():
        return 0
    keep = live_generations(out_dir)
    removed = 0
    for generation in root.iterdir():
        if generation.resolve() not in keep:
            shutil.rmtree(generation, ignore_errors=True)
            removed += 1
    return removed


class Generation:
    """A new version of the published folders, written beside the live one and switched in by ``publish``."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        self.root = generations_dir(self.out_dir) / f"{stamp}-{uuid.uuid4().hex[:8]}"

    def folder(self, name: str) -> Path:
        """``<generation>/<name>``, created on first use."""
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def publish(self, owned: Iterable[str] = ()) -> None:
        """Switch ``OUT/data`` and ``OUT/dropped`` to this generation, one atomic rename each.

        ``owned`` lists paths (relative to OUT, e.g. ``data/train-00000.parquet``) the previous build wrote: in a
        legacy real ``data/`` folder those are left behind to be deleted, everything else moves to the new one.
        """
        owned_set = {str(p) for p in owned}
        for name in PUBLISHED:
            fresh = self.root / name
            if fresh.is_dir():
                self._switch(name, fresh, owned_set)
            elif live_target(self.out_dir, name) is not None:  # e.g. keep_dropped turned off: no stale table
                self._carry_foreign(name, None, owned_set)
        remove_unpublished_generations(self.out_dir)

    def discard(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def _switch(self, name: str, fresh: Path, owned: set[str]) -> None:
        link = self.out_dir / name
        self._carry_foreign(name, fresh, owned)
        if link.exists() and not link.is_symlink():  # a real folder from an older mathaug: move it aside once
            aside = generations_dir(self.out_dir) / f"legacy-{uuid.uuid4().hex[:8]}" / name
            aside.parent.mkdir(parents=True, exist_ok=True)
            os.rename(link, aside)
        tmp = link.with_name(f".{name}.link-{os.getpid()}")
        tmp.unlink(missing_ok=True)
        os.symlink(os.path.relpath(fresh, self.out_dir), tmp)
        os.replace(tmp, link)
        fsync_dir(self.out_dir)

    def _carry_foreign(self, name: str, fresh: Path | None, owned: set[str]) -> None:
        """Move what a user put in the live ``OUT/<name>`` into the new generation (or, with no new folder, turn
        the link into a real folder holding just those files)."""
        link = self.out_dir / name
        current = live_target(self.out_dir, name)
        folder = current if current is not None else (link if link.is_dir() and not link.is_symlink() else None)
        if folder is None:
            return
        in_generation = current is not None  # there only mathaug writes <name>-NNNNN.parquet files
        foreign = [
            entry for entry in folder.iterdir()
            if not mathaug_wrote(entry, name, owned, in_generation)
        ]
        if fresh is None:
            link.unlink()
            if foreign:
                link.mkdir()
                for entry in foreign:
                    os.rename(entry, link / entry.name)
            return
        for entry in foreign:
            if not (fresh / entry.name).exists():  # a name clash keeps the user's file where it was (not deleted)
                os.rename(entry, fresh / entry.name)


def mathaug_wrote(entry: Path, name: str, owned: set[str], in_generation: bool) -> bool:
    """Whether ``OUT/<name>/<entry>`` is mathaug's: listed in the last manifest (``owned``), a writer's temp file,
    or, inside a generation folder (where only mathaug writes), a shard-named ``*-NNNNN.parquet`` file."""
    if f"{name}/{entry.name}" in owned or (entry.name.startswith(".") and ".tmp-" in entry.name):
        return True
    stem, _, number = entry.stem.rpartition("-")
    shard_named = entry.suffix == ".parquet" and bool(stem) and number.isdigit() and len(number) == 5
    return in_generation and shard_named and entry.is_file()


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (the directory entry itself is flushed)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
