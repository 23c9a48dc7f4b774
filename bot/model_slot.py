"""Which model answers: the active version in the registry, reloaded without a restart.

`ModelSlot.current()` hands out one immutable `LoadedModel` (responder + version name). A batch of
requests takes one snapshot, so every reply is made by exactly one version and is stored with its
name. `refresh()` checks the registry and, when another version became active, loads it fully
before swapping the reference (in-flight batches finish on the old one). A version whose files are
in the database is fetched into the local cache and verified by SHA-256 first (`bot.model_files`);
one that fails the check is refused with one log line, and the current one keeps answering.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from bot.model_files import ModelFiles, UnverifiedModelError
from config import DecodingSettings
from nlp.decoding_recipe import choose_decoding
from nlp.responder import Responder
from storage import model_versions
from storage.database import Database
from storage.model_versions import VersionInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    responder: Responder
    version: str


class ModelSlot:
    def __init__(
        self,
        default_dir: Path,
        decoding: DecodingSettings,
        db: Database | None = None,
        check_every_s: float = 2.0,
        blocklist_path: Path | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        """`cache_dir`: where versions stored in the database are fetched to (None: they are
        read from their registered directory, which only the host that trained them has)."""
        self.default_dir = Path(default_dir)
        self.decoding = decoding
        self.blocklist_path = blocklist_path
        self.db = db
        self.files = ModelFiles(db, cache_dir, self.default_dir) if db is not None else None
        self.check_every_s = check_every_s
        self._lock = threading.Lock()
        self._last_check = 0.0
        self._failed: str | None = None  # a version that would not load is not retried
        self._registry_down = False  # said once per outage, not once per check
        self._loaded = self._load_active()

    def current(self) -> LoadedModel:
        """The model in use now; never touches the database (safe on the event loop)."""
        return self._loaded

    def refresh_if_due(self) -> LoadedModel:
        """`current()`, after a registry check when the last one is older than `check_every_s`.
        Blocking: call it from a worker thread."""
        if time.monotonic() - self._last_check >= self.check_every_s:
            self.refresh()
        return self._loaded

    def refresh(self) -> bool:
        """Switch to the registry's active version if it changed; True when it did."""
        with self._lock:
            self._last_check = time.monotonic()
            try:
                active = self._active_in_registry()
            except SQLAlchemyError as exc:
                # The check is for freshness only: the model in hand keeps answering, and the
                # next check tries again (storing the replies has its own outage handling).
                self._registry_unreachable(exc)
                return False
            self._registry_reachable()
            if active is None or active.name in (self._loaded.version, self._failed):
                return False
            try:
                loaded = self._load(active)
            except SQLAlchemyError as exc:  # fetching its files: the database, not the version
                self._registry_unreachable(exc)
                return False
            except UnverifiedModelError as exc:  # one line: the reason says it all
                log.error("refusing %s; still answering with %s", exc, self._loaded.version)
                self._failed = active.name
                return False
            except Exception:  # keep answering with the model we have
                log.exception(
                    "could not load model version %s from %s", active.name, active.checkpoint_path
                )
                self._failed = active.name
                return False
            self._loaded = loaded
            log.info("now answering with model version %s", active.name)
            return True

    def _registry_unreachable(self, exc: SQLAlchemyError) -> None:
        if not self._registry_down:
            self._registry_down = True
            log.warning(
                "model registry unreachable (%s); still answering with %s",
                type(exc).__name__,
                self._loaded.version,
            )

    def _registry_reachable(self) -> None:
        if self._registry_down:
            self._registry_down = False
            log.info("model registry reachable again")

    def _active_in_registry(self) -> VersionInfo | None:
        if self.db is None:
            return None
        return self.db.read(model_versions.get_active_version)

    def _load(self, version: VersionInfo) -> LoadedModel:
        assert self.files is not None
        return LoadedModel(self._responder(self.files.directory(version)), version.name)

    def _load_active(self) -> LoadedModel:
        self._last_check = time.monotonic()
        active = self._active_in_registry()
        if active is not None:
            return self._load(active)
        return LoadedModel(self._responder(self.default_dir), self.default_dir.name)

    def _responder(self, path: Path) -> Responder:
        """The model at `path`, decoding as the operator set it or, if they set nothing, as the
        model (or the default model it was retrained from) ships; with the bot's blocklist."""
        decoding = choose_decoding(self.decoding, path, self.default_dir)
        if self.blocklist_path is not None and decoding.blocklist_path is None:
            decoding = decoding.model_copy(update={"blocklist_path": self.blocklist_path})
        return Responder(path, decoding)
