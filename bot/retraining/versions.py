"""Model versions on disk and in the registry: version zero, new version directories, promotion.

- Version zero: with nothing active in the registry, the shipped model directory
  (`settings.model_dir`) is registered as "default" and activated, so every retrained version
  has a parent and a rollback always has somewhere to go.
- A promoted candidate gets a directory of its own under `settings.versions_dir`, never an
  existing one. The worker wrote it completely (atomically) into its work directory; it is moved
  into place with one rename, and only then registered (with its files, so that every replica on
  any host can fetch it: `bot.model_files`), activated and its run finished, all in ONE database
  transaction. If that transaction fails, the directory is removed again: nothing ever points at
  a half-written checkpoint, and an unregistered directory is never left behind.
- A version is used where it lies on this host (`checkpoint_dir`): version zero in this process's
  shipped model directory, a version with stored files in the local cache, fetched and verified.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from bot import model_files
from bot.retraining.gate import Scores
from bot.retraining.runs import RunMetrics
from config import Settings
from nlp.checkpoint import METRICS, read_config
from storage import model_versions, training_runs
from storage.database import Database
from storage.errors import NotFoundError
from storage.model_versions import VersionInfo

VERSION_ZERO = model_files.VERSION_ZERO


def ensure_active_version(settings: Settings, db: Database) -> VersionInfo:
    """The active version, registering and activating version zero when none is active; its
    `checkpoint_path` is where its checkpoint lies on this host (`checkpoint_dir`)."""
    with db.begin() as session:
        active = model_versions.get_active_version(session)
        if active is None:
            try:
                zero = model_versions.get_version(session, VERSION_ZERO)
            except NotFoundError:
                directory = settings.model_dir.resolve()
                read_config(directory)  # a missing or broken shipped model is an error here
                zero = model_versions.register_version(
                    session, VERSION_ZERO, str(directory), metrics=_checkpoint_metrics(directory)
                )
            active = model_versions.activate_version(session, zero.name)
    return dataclasses.replace(active, checkpoint_path=str(checkpoint_dir(settings, db, active)))


def checkpoint_dir(settings: Settings, db: Database, version: VersionInfo) -> Path:
    """Where `version`'s checkpoint lies on this host: fetched from the database into the local
    cache and verified when its files are stored there (raises `UnverifiedModelError`)."""
    files = model_files.ModelFiles(db, model_files.model_cache_dir(settings), settings.model_dir)
    return files.directory(version)


def active_checkpoint_dir(settings: Settings, db: Database) -> Path:
    """The directory the bot answers with: the active version's, else `settings.model_dir`."""
    active = db.read(model_versions.get_active_version)
    return checkpoint_dir(settings, db, active) if active is not None else settings.model_dir


def _checkpoint_metrics(directory: Path) -> dict[str, Any] | None:
    try:
        metrics = json.loads((directory / METRICS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) and metrics else None


def new_version_dir(settings: Settings, run_id: int, now: datetime | None = None) -> Path:
    """A directory name no version has used: `r<run>-<UTC time>`, suffixed if ever needed."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    base = settings.versions_dir / f"r{run_id}-{stamp}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def promote(
    db: Database,
    staged: Path,
    target: Path,
    *,
    parent: str,
    run_id: int,
    scores: Scores,
    run_metrics: RunMetrics,
    new_pairs: int,
    total_pairs: int,
    last_message_id: int | None,
    last_taught_pair_id: int | None,
) -> VersionInfo:
    """Move the staged checkpoint to `target`, then register + activate it (with its `scores`)
    and finish the run in one transaction (see the module docstring)."""
    if target.exists():
        raise FileExistsError(f"version directory {target} exists already")
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, target)
    model_files.fsync_dir(target.parent)
    name = target.name

    def register(session: Session) -> VersionInfo:
        version = model_versions.register_version(
            session,
            name,
            str(target.resolve()),
            metrics={**scores.as_dict(), "parent": parent, "run": run_id},
            parent=parent,
            files=files,
        )
        training_runs.finish_run(
            session,
            run_id,
            new_pairs=new_pairs,
            total_pairs=total_pairs,
            metrics=run_metrics.model_copy(update={"candidate_version": name}).stored(),
            model_version_id=version.id,
            last_message_id=last_message_id,
            last_taught_pair_id=last_taught_pair_id,
        )
        return model_versions.activate_version(session, name)

    try:
        files = model_files.read_checkpoint_files(target)
        return db.transact(register)
    except BaseException:
        if not _registered(db, name):
            shutil.rmtree(target, ignore_errors=True)
        raise


def _registered(db: Database, name: str) -> bool:
    try:
        db.read(model_versions.get_version, name)
    except NotFoundError:
        return False
    except Exception:  # the database is unreachable: keep the directory, it is harmless
        return True
    return True
