"""The output directory of a build: its run state, its lock, and which files in it are mathaug's.

Rules this module keeps:

- mathaug writes only into an empty directory or one that holds its own run (``.mathaug/run.json``); anything
  else is refused with a message that names no destructive flag.
- ``--fresh`` removes only what mathaug wrote there: the files the manifest lists (shards, dropped-table files,
  the card when it is unchanged), the manifest, and the run's work files. Everything else stays, byte for byte.
- One build at a time per directory: ``run_lock`` holds ``fcntl.flock`` on ``.mathaug/lock`` for the whole
  build. The OS drops the lock when its process dies, so a killed build never blocks the next one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline import __version__
from pipeline.io.publish import (
    PUBLISHED,
    WORK_DIR,
    live_target,
    mathaug_wrote,
    remove_unpublished_generations,
)
from pipeline.io.shards import MANIFEST, atomic_write_bytes, owned_files, read_manifest, sha256_file
from pipeline.recipe import Recipe

STATE_FILE = "run.json"
LOCK_FILE = "lock"
CARD = "README.md"
# work files --fresh discards; the request cache and dedup indexes stay (they are keyed by content)
FRESH_WORK = ("stages", STATE_FILE, "generations")


class BuildError(RuntimeError):
    pass


class IncompatibleRunError(BuildError):
    """The output directory holds a run of a different recipe; names the keys that differ."""


class RunLockedError(BuildError):
    """Another process is building into the same output directory."""


@dataclass
class RunState:
    out_dir: Path
    run_id: str
    recipe: Recipe
    limit: int | None
    created_at: datetime

    @property
    def work_dir(self) -> Path:
        return self.out_dir / WORK_DIR


# ------------------------------------------------------------------------------------------------ checks


def check_out_dir(out_dir: Path) -> None:
    """Read-only: refuse an ``--out`` that is a file, or that this user cannot create or write."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise BuildError(f"--out {out_dir} is a file, not a directory; choose a directory")
    existing = out_dir
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise BuildError(f"--out {out_dir}: {existing} is a file, so the directory cannot be created there")
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        raise BuildError(f"--out {out_dir}: {existing} is on a read-only file system; choose another --out")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BuildError(f"--out {out_dir}: no permission to write in {existing}; choose another --out")


def _state_payload(recipe: Recipe, limit: int | None) -> dict[str, Any]:
    return {"recipe": recipe.model_dump(mode="json", by_alias=True), "limit": limit}


def _upgraded_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """A stored run's payload as this version of mathaug reads it: a recipe option added since the run started
    takes its default, so upgrading mathaug does not make every existing run "a different recipe"."""
    try:
        recipe = Recipe.model_validate(payload["recipe"])
    except Exception:  # noqa: BLE001 - an option was removed or changed type: compare as stored
        return payload
    return {**payload, "recipe": recipe.model_dump(mode="json", by_alias=True)}


def _diff_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [d for k in keys for d in _diff_keys(old.get(k), new.get(k), f"{prefix}{k}.")]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(old, new)) for d in _diff_keys(a, b, f"{prefix}{i}.")]
    return [] if old == new else [prefix.rstrip(".")]


def read_state(out_dir: Path) -> dict[str, Any] | None:
    path = Path(out_dir) / WORK_DIR / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else None


def check_run_dir(
    recipe: Recipe, out_dir: Path, limit: int | None = None, fresh: bool = False, resume: bool = True
) -> dict[str, Any] | None:
    """Read-only: the run state ``out_dir`` holds (None if none, or when ``fresh`` discards it), or the refusal
    ``prepare_run`` would raise. Callers (the flow, the CLI) refuse a directory before starting anything."""
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    state = read_state(out_dir)
    if state is None:
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name != WORK_DIR) if out_dir.is_dir() else []
        if foreign:
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise BuildError(
                f"{out_dir} is not empty ({shown}) and holds no mathaug run; mathaug writes only into an empty "
                "directory or one of its own runs: choose another --out"
            )
        return None
    if fresh:
        return None
    if not resume:
        raise BuildError(
            f"{out_dir} already holds run {state.get('run_id')} (started {state.get('created_at')}); "
            "resume it (drop --no-resume), discard that run with --fresh, or choose another --out."
        )
    differing = _diff_keys(_upgraded_payload(state["payload"]), _state_payload(recipe, limit))
    if differing:
        raise IncompatibleRunError(
            f"{out_dir} holds a run of a different recipe (differs in: {', '.join(differing[:12])}). "
            "Use --fresh to discard that run (only the files mathaug wrote), or choose another --out."
        )
    return state


# ------------------------------------------------------------------------------------------------ ownership


def card_is_ours(out_dir: Path, manifest: dict[str, Any] | None) -> bool:
    """Whether ``OUT/README.md`` is absent or is the card the last build wrote, unchanged since."""
    path = Path(out_dir) / CARD
    if not path.exists():
        return True
    if manifest is None:
        return False
    card = manifest.get("card")
    if isinstance(card, dict):
        return sha256_file(path) == card.get("sha256")
    head = path.read_text(encoding="utf-8", errors="replace")[:4000]  # manifests from before cards were listed
    return head.startswith("---\n") and "- mathaug\n" in head and "Built with mathaug" in head


def discard_run(out_dir: Path) -> None:
    """``--fresh``: remove the run's files, and only those (see the module docstring)."""
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir)
    owned = set(owned_files(manifest))
    for name in PUBLISHED:
        link = out_dir / name
        target = live_target(out_dir, name)
        folder = target if target is not None else (link if link.is_dir() and not link.is_symlink() else None)
        if folder is None:
            continue
        for entry in folder.iterdir():
            if mathaug_wrote(entry, name, owned, in_generation=target is not None):
                entry.unlink()
        left = list(folder.iterdir())
        if target is not None:
            link.unlink()
            if left:  # the user's files stay where they were: OUT/<name> becomes a plain folder holding them
                link.mkdir()
                for entry in left:
                    os.rename(entry, link / entry.name)
        elif not left:
            folder.rmdir()
    if manifest is not None and card_is_ours(out_dir, manifest):
        (out_dir / CARD).unlink(missing_ok=True)
    if manifest is not None:
        (out_dir / MANIFEST).unlink(missing_ok=True)
    work = out_dir / WORK_DIR
    for name in FRESH_WORK:
        path = work / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def remove_stray_temp_files(out_dir: Path) -> int:
    """Delete what a killed writer leaves: temp files (``.NAME.tmp-PID``) and unpublished generations."""
    out_dir = Path(out_dir)
    removed = remove_unpublished_generations(out_dir)
    folders = [out_dir, out_dir / WORK_DIR, *(out_dir / WORK_DIR / "stages").glob("*")]
    folders += [target for name in PUBLISHED if (target := live_target(out_dir, name)) is not None]
    for folder in folders:
        if folder.is_dir():
            for tmp in folder.glob(".*.tmp-*"):
                tmp.unlink(missing_ok=True)
                removed += 1
    return removed


# ------------------------------------------------------------------------------------------------ the run


def prepare_run(
    recipe: Recipe, out_dir: Path, limit: int | None = None, fresh: bool = False, resume: bool = True
) -> RunState:
    """Open (resume) or start the run in ``out_dir``, holding its lock. Refuses what ``check_run_dir`` refuses.

    ``resume=False`` refuses a directory that already holds a run (never silently starts over in it);
    ``fresh=True`` discards that run explicitly (only the files mathaug wrote).
    """
    out_dir = Path(out_dir)
    state = check_run_dir(recipe, out_dir, limit, fresh=fresh, resume=resume)
    acquire_run_lock(out_dir)
    if fresh and read_state(out_dir) is not None:
        discard_run(out_dir)
    remove_stray_temp_files(out_dir)
    if state is not None:
        return RunState(out_dir, state["run_id"], recipe, limit, datetime.fromisoformat(state["created_at"]))
    now = datetime.now(timezone.utc).replace(microsecond=0)
    run_id = f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    state = {"run_id": run_id, "created_at": now.isoformat(), "mathaug": __version__,
             "fingerprint": recipe.fingerprint(), "payload": _state_payload(recipe, limit)}
    atomic_write_bytes(out_dir / WORK_DIR / STATE_FILE, json.dumps(state, indent=2).encode())
    return RunState(out_dir, run_id, recipe, limit, now)


# ------------------------------------------------------------------------------------------------ the lock

_HELD: dict[Path, list[int]] = {}  # lock path -> [fd, depth]: re-entrant within this process
_HELD_GUARD = threading.Lock()


def _lock_path(out_dir: Path) -> Path:
    return Path(out_dir).resolve() / WORK_DIR / LOCK_FILE


def acquire_run_lock(out_dir: Path) -> None:
    """Take the directory's build lock (or one more hold on it, if this process has it already).

    Fails at once, naming the holder's pid and start time, when another process builds there.
    """
    path = _lock_path(out_dir)
    with _HELD_GUARD:
        if path in _HELD:
            _HELD[path][1] += 1
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _holder(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            raise RunLockedError(
                f"{Path(out_dir)} is being built by another mathaug (pid {holder.get('pid', '?')}, started "
                f"{holder.get('started_at', '?')}); wait for it to finish, or stop it, or choose another --out"
            ) from None
        info = {"pid": os.getpid(), "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        _HELD[path] = [fd, 1]


def release_run_lock(out_dir: Path) -> None:
    """Drop one hold; the last one closes the file, which releases the lock (the file itself stays)."""
    path = _lock_path(out_dir)
    with _HELD_GUARD:
        held = _HELD.get(path)
        if held is None:
            return
        held[1] -= 1
        if held[1] == 0:
            del _HELD[path]
            os.close(held[0])


def holds_run_lock(out_dir: Path) -> bool:
    return _lock_path(out_dir) in _HELD


@contextlib.contextmanager
def run_lock(out_dir: Path) -> Iterator[None]:
    acquire_run_lock(out_dir)
    try:
        yield
    finally:
        release_run_lock(out_dir)


def _holder(fd: int) -> dict[str, Any]:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}


def publish_card(out_dir: Path, text: str, manifest: dict[str, Any]) -> str | None:
    """Write the dataset card to ``OUT/README.md`` and list it in ``manifest`` (before the manifest is written).

    A README.md that is not the card the last build wrote (the user's, or an edited card) is left alone: the new
    card goes to ``.mathaug/README.card.md`` and the returned message says so.
    """
    out_dir = Path(out_dir)
    data = text.encode()
    if card_is_ours(out_dir, read_manifest(out_dir)):
        atomic_write_bytes(out_dir / CARD, data)
        manifest["card"] = {"path": CARD, "sha256": hashlib.sha256(data).hexdigest()}
        return None
    aside = out_dir / WORK_DIR / "README.card.md"
    atomic_write_bytes(aside, data)
    return f"{out_dir / CARD} is not the card mathaug wrote (yours, or edited): left as is; the new card is {aside}"
