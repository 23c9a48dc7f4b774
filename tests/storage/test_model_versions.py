"""The model-version registry: exactly one active version, also under concurrency; rollback."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from storage import model_versions as registry
from storage.database import Database
from storage.errors import DuplicateError, NoPreviousVersionError, NotFoundError
from storage.tables import ModelVersion


def _register(db: Database, *names: str) -> None:
    with db.begin() as session:
        for name in names:
            registry.register_version(session, name, f"models/{name}", metrics={"bleu": 1.0})


def _active_count(db: Database) -> int:
    with db.session() as session:
        return session.execute(
            select(func.count()).select_from(ModelVersion).where(ModelVersion.is_active.is_(True))
        ).scalar_one()


def test_registered_versions_start_inactive_and_keep_their_details(database: Database) -> None:
    _register(database, "base")
    with database.begin() as session:
        child = registry.register_version(
            session, "ft-1", "models/ft-1", metrics={"loss": 2.5, "bleu": 3.1}, parent="base"
        )
    with database.session() as session:
        base = registry.get_version(session, "base")
        assert child.parent_id == base.id
        assert child.metrics == {"loss": 2.5, "bleu": 3.1}
        assert not child.is_active and registry.get_active_version(session) is None
        assert [v.name for v in registry.list_versions(session)] == ["base", "ft-1"]


def test_names_are_unique_and_unknown_names_are_reported(database: Database) -> None:
    _register(database, "base")
    with pytest.raises(DuplicateError, match="'base' exists"), database.begin() as session:
        registry.register_version(session, "base", "elsewhere")
    with pytest.raises(NotFoundError), database.begin() as session:
        registry.register_version(session, "ft", "x", parent="missing")
    with pytest.raises(NotFoundError), database.begin() as session:
        registry.activate_version(session, "missing")


def test_activation_leaves_exactly_one_active(database: Database) -> None:
    _register(database, "a", "b", "c")
    for name in ("a", "b", "c", "a", "a"):
        with database.begin() as session:
            assert registry.activate_version(session, name).is_active
        with database.session() as session:
            active = registry.get_active_version(session)
            assert active is not None and active.name == name
        assert _active_count(database) == 1


def test_the_database_itself_refuses_a_second_active_version(database: Database) -> None:
    _register(database, "a", "b")
    with database.begin() as session:
        registry.activate_version(session, "a")
    with pytest.raises(IntegrityError), database.begin() as session:
        session.execute(update(ModelVersion).where(ModelVersion.name == "b").values(is_active=True))
    assert _active_count(database) == 1


def test_rollback_walks_back_through_the_activations(database: Database) -> None:
    _register(database, "a", "b", "c")
    for name in ("a", "b", "c"):
        with database.begin() as session:
            registry.activate_version(session, name)
    with database.begin() as session:
        assert registry.rollback_version(session).name == "b"
    with database.begin() as session:
        assert registry.rollback_version(session).name == "a"
        active = registry.get_active_version(session)
        assert active is not None and active.name == "a"
    with pytest.raises(NoPreviousVersionError), database.begin() as session:
        registry.rollback_version(session)
    with database.session() as session:
        history = registry.activation_history(session)
    assert [(a.version_name, a.rolled_back) for a in history] == [
        ("c", True),
        ("b", True),
        ("a", False),
    ]


def test_rollback_after_reactivating_an_old_version_returns_the_one_before(
    database: Database,
) -> None:
    _register(database, "a", "b")
    for name in ("a", "b", "a"):
        with database.begin() as session:
            registry.activate_version(session, name)
    with database.begin() as session:
        assert registry.rollback_version(session).name == "b"
    with database.begin() as session:
        assert registry.rollback_version(session).name == "a"


def test_nothing_to_roll_back_to_without_history(database: Database) -> None:
    _register(database, "a")
    with pytest.raises(NoPreviousVersionError), database.begin() as session:
        registry.rollback_version(session)
    with database.begin() as session:
        registry.activate_version(session, "a")
    with pytest.raises(NoPreviousVersionError), database.begin() as session:
        registry.rollback_version(session)
    assert _active_count(database) == 1


@pytest.mark.slow  # threads racing
def test_concurrent_activations_never_leave_zero_or_two_active(database: Database) -> None:
    names = [f"v{i}" for i in range(4)]
    _register(database, *names)
    with database.begin() as session:
        registry.activate_version(session, names[0])
    rounds = 25
    start = threading.Barrier(3)
    done = threading.Event()
    errors: list[BaseException] = []
    seen_counts: set[int] = set()

    def activator(offset: int) -> None:
        try:
            start.wait()
            for i in range(rounds):
                with database.begin() as session:
                    if i % 5 == 4:
                        registry.rollback_version(session)
                    else:
                        registry.activate_version(session, names[(i + offset) % len(names)])
        except BaseException as exc:
            errors.append(exc)

    def watcher() -> None:
        start.wait()
        while not done.is_set():
            seen_counts.add(_active_count(database))

    threads = [threading.Thread(target=activator, args=(k,)) for k in (1, 2)]
    observer = threading.Thread(target=watcher)
    for thread in [*threads, observer]:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    observer.join()
    assert errors == []
    assert seen_counts == {1}
    assert _active_count(database) == 1
