"""Every conversation kept through SQLAlchemy 2, on SQLite or PostgreSQL; schema under Alembic.

One module per thing kept: `models` (the schema), `database` (engine, sessions, and why they are
synchronous), `conversations`, `feedback`, `teaching`, `exports`, `privacy`, `retention`,
`model_versions`, `training_runs`, `schema` (migrations at run time), `errors`.
"""

from storage.database import Database
from storage.errors import StorageError

__all__ = ["Database", "StorageError"]
