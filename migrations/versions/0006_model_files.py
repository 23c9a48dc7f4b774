"""Model files: a model version's checkpoint files, stored with its registry row.

`model_files`: one row per file of a version (model.safetensors, config.json, vocab.json, ...):
its name, SHA-256, size and content (bytea on PostgreSQL, BLOB on SQLite). A promoted version was
a directory on the disk of the process that trained it; with its files in the database, a replica
on any host fetches them into a local cache, verifies every digest, and serves the version. The
shipped default model (version zero) stays on disk and has no rows here.

One row per file rather than one archive per version: each file is verified and written on its
own, and a reader holds one file in memory at a time. Keyed by (version, name); the rows go with
their version (ON DELETE CASCADE). A downgrade drops the stored files: each version is then
served from its `checkpoint_path`, which exists only on the host that trained it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "model_files",
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_model_files_model_version_id_model_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("model_version_id", "name", name=op.f("pk_model_files")),
    )


def downgrade() -> None:
    op.drop_table("model_files")
