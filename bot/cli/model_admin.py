"""`chatbot model list | activate NAME | rollback`: the model-version registry.

Running bots (Telegram, console) follow the registry: an activation or rollback here is what they
answer with a few seconds later, without a restart.
"""

from __future__ import annotations

import argparse

from config import Settings
from storage.database import Database


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("model", help="list, activate or roll back model versions")
    commands = parser.add_subparsers(dest="model_command", required=True, metavar="COMMAND")
    commands.add_parser("list", help="every registered version, the active one marked '*'")
    activate = commands.add_parser("activate", help="answer with version NAME from now on")
    activate.add_argument("name", metavar="NAME")
    commands.add_parser("rollback", help="go back to the version active before the current one")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from storage import schema_revision

    db = Database.from_settings(settings)
    try:
        schema_revision.ensure_schema(db, settings.storage.auto_upgrade)
        if args.model_command == "list":
            _list(db)
        elif args.model_command == "activate":
            _activate(db, args.name, settings)
        else:
            _rollback(db)
    finally:
        db.dispose()
    return 0


def _list(db: Database) -> None:
    from storage import model_versions

    versions = db.read(model_versions.list_versions)
    if not versions:
        print("no model versions registered (the bot answers with the model directory)")
        return
    names = {v.id: v.name for v in versions}
    for v in versions:
        parent = f" from {names.get(v.parent_id, '?')}" if v.parent_id is not None else ""
        ppl = ""
        if v.metrics and v.metrics.get("base_ppl") is not None:
            ppl = f" base ppl {v.metrics['base_ppl']:.3f}"
            if v.metrics.get("new_ppl") is not None:
                ppl += f", new-pair ppl {v.metrics['new_ppl']:.3f}"
        print(
            f"{'*' if v.is_active else ' '} {v.name}  {v.created_at:%Y-%m-%d %H:%M} UTC"
            f"{parent}{ppl}  {v.checkpoint_path}"
        )


def _activate(db: Database, name: str, settings: Settings) -> None:
    from bot.retraining.versions import checkpoint_dir
    from nlp.checkpoint import read_config
    from storage import model_versions

    version = db.read(model_versions.get_version, name)
    # Never activate a missing, broken or (stored in the database) unverified checkpoint.
    read_config(checkpoint_dir(settings, db, version))
    db.transact(model_versions.activate_version, name)
    print(f"active model version: {name}")


def _rollback(db: Database) -> None:
    from storage import model_versions

    version = db.transact(model_versions.rollback_version)
    print(f"rolled back: active model version is {version.name}")
