"""The model-version registry: register checkpoints, activate exactly one, roll back.

Exactly one active version, also under concurrent activations, rests on three things:
- a partial unique index (`is_active` where true) makes two active rows impossible in the data;
- activation deactivates the old row before activating the new one, in one transaction, so a
  reader sees either the old or the new active version, never none or two;
- activations and rollbacks are serialised: on PostgreSQL by locking every registry row
  (`SELECT ... FOR UPDATE`, in id order so two lockers cannot deadlock) before reading the active
  version; on SQLite by the write transaction itself (`Database.begin()` is `BEGIN IMMEDIATE`).
  Without this, two activations would both read "A is active" and the second would hit the index.
Call these functions inside `Database.begin()`.

Rollback uses `model_activations` as an undo stack: each activation pushes an entry; a rollback
marks the newest entries of the current version as rolled back and re-activates the version of the
entry below them. Rolling back twice after A -> B -> C gives B, then A.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from storage.database import execute_dml
from storage.dialects import upsert_insert
from storage.errors import DuplicateError, NoPreviousVersionError, NotFoundError
from storage.model_files import store_files
from storage.storable_text import check_storable
from storage.tables import ModelActivation, ModelVersion, utcnow


@dataclass(frozen=True)
class VersionInfo:
    id: int
    name: str
    checkpoint_path: str
    created_at: datetime
    metrics: dict[str, Any] | None
    is_active: bool
    parent_id: int | None


@dataclass(frozen=True)
class Activation:
    version_name: str
    activated_at: datetime
    rolled_back: bool


_COLUMNS = (
    ModelVersion.id,
    ModelVersion.name,
    ModelVersion.checkpoint_path,
    ModelVersion.created_at,
    ModelVersion.metrics,
    ModelVersion.is_active,
    ModelVersion.parent_id,
)


def register_version(
    session: Session,
    name: str,
    checkpoint_path: str,
    *,
    metrics: dict[str, Any] | None = None,
    parent: str | None = None,
    files: Mapping[str, bytes] | None = None,
) -> VersionInfo:
    """Add an inactive version; `parent` names the version it was fine-tuned from. `files`
    (name -> content: its checkpoint directory) are stored with it, so that any host can serve
    it; without them it is served from `checkpoint_path`, on the host that has that directory."""
    check_storable(name, field="version name")
    parent_id = get_version(session, parent).id if parent is not None else None
    inserted = session.execute(
        upsert_insert(session, ModelVersion)
        .values(
            name=name,
            checkpoint_path=check_storable(str(checkpoint_path), field="checkpoint path"),
            metrics=metrics,
            parent_id=parent_id,
            created_at=utcnow(),
            is_active=False,
        )
        .on_conflict_do_nothing(index_elements=["name"])
        .returning(ModelVersion.id)
    ).scalar()
    if inserted is None:
        raise DuplicateError(f"a model version named {name!r} exists already")
    if files:
        store_files(session, inserted, files)
    return _get_by_id(session, inserted)


def get_version(session: Session, name: str) -> VersionInfo:
    row = session.execute(select(*_COLUMNS).where(ModelVersion.name == name)).first()
    if row is None:
        raise NotFoundError(f"no model version named {name!r}")
    return VersionInfo(*row)


def _get_by_id(session: Session, version_id: int) -> VersionInfo:
    return VersionInfo(
        *session.execute(select(*_COLUMNS).where(ModelVersion.id == version_id)).one()
    )


def list_versions(session: Session) -> list[VersionInfo]:
    """Every registered version, oldest first."""
    return [
        VersionInfo(*row) for row in session.execute(select(*_COLUMNS).order_by(ModelVersion.id))
    ]


def get_active_version(session: Session) -> VersionInfo | None:
    row = session.execute(select(*_COLUMNS).where(ModelVersion.is_active.is_(True))).first()
    return None if row is None else VersionInfo(*row)


def set_metrics(session: Session, name: str, metrics: dict[str, Any]) -> None:
    """Replace a version's metrics (e.g. after evaluating it on a new held-out set)."""
    updated = execute_dml(
        session, update(ModelVersion).where(ModelVersion.name == name).values(metrics=metrics)
    )
    if updated == 0:
        raise NotFoundError(f"no model version named {name!r}")


def activate_version(session: Session, name: str) -> VersionInfo:
    """Make `name` the one active version and push it on the activation history."""
    _lock_registry(session)
    target = get_version(session, name)
    if target.is_active:
        return target
    _switch_active(session, target.id)
    session.execute(
        insert(ModelActivation).values(model_version_id=target.id, activated_at=utcnow())
    )
    return _get_by_id(session, target.id)


def rollback_version(session: Session) -> VersionInfo:
    """Re-activate the version that was active before the current one; returns it."""
    _lock_registry(session)
    active = get_active_version(session)
    current_id = active.id if active is not None else None
    stack = session.execute(
        select(ModelActivation.id, ModelActivation.model_version_id)
        .where(ModelActivation.rolled_back.is_(False))
        .order_by(ModelActivation.id.desc())
    ).all()
    popped: list[int] = []
    for entry_id, version_id in stack:
        if version_id != current_id:
            break
        popped.append(entry_id)
    else:
        raise NoPreviousVersionError("no earlier model version was active: nothing to roll back to")
    target_id = stack[len(popped)].model_version_id
    if popped:
        session.execute(
            update(ModelActivation)
            .where(ModelActivation.id.in_(popped))
            .values(rolled_back=True)
            .execution_options(synchronize_session=False)
        )
    _switch_active(session, target_id)
    return _get_by_id(session, target_id)


def activation_history(session: Session) -> list[Activation]:
    """Every activation, newest first; `rolled_back` ones were undone by a rollback."""
    rows = session.execute(
        select(ModelVersion.name, ModelActivation.activated_at, ModelActivation.rolled_back)
        .join(ModelVersion, ModelVersion.id == ModelActivation.model_version_id)
        .order_by(ModelActivation.id.desc())
    ).all()
    return [Activation(*row) for row in rows]


def _lock_registry(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(ModelVersion.id).order_by(ModelVersion.id).with_for_update()).all()


def _switch_active(session: Session, version_id: int) -> None:
    # Two statements, old one off first: PostgreSQL checks a unique index row by row, so one
    # UPDATE flipping both rows could see two active rows midway and fail.
    session.execute(
        update(ModelVersion)
        .where(ModelVersion.is_active.is_(True), ModelVersion.id != version_id)
        .values(is_active=False)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(ModelVersion)
        .where(ModelVersion.id == version_id)
        .values(is_active=True)
        .execution_options(synchronize_session=False)
    )
