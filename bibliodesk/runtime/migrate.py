"""Alembic migrations, one history per service, applied at start-up.

Each service keeps ``services/<svc>/store/migrations/`` (env.py + versions/). ``upgrade`` runs
them under a PostgreSQL advisory lock, so several replicas starting at once migrate exactly once.

    python -m bibliodesk.runtime.migrate revision <service> -m "what changed"

autogenerates a new revision from the service's tables (against a scratch SQLite database).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
from pathlib import Path
from typing import Any

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, text

from .db import Database


def _config(script_location: Path, metadata: MetaData) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.attributes["target_metadata"] = metadata
    return cfg


def upgrade(db: Database, script_location: Path, metadata: MetaData, *, service: str) -> None:
    cfg = _config(script_location, metadata)
    with db.write_engine.begin() as connection:
        if db.dialect == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": f"migrate:{service}"}
            )
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


def _render_item(kind: str, obj: Any, autogen_context: Any) -> str | bool:
    """Renders bibliodesk column types with their import (autogenerate)."""
    if kind == "type" and type(obj).__module__.startswith("bibliodesk."):
        autogen_context.imports.add(f"import {type(obj).__module__}")
        return f"{type(obj).__module__}.{type(obj).__name__}()"
    return False


def run_env() -> None:
    """Body of every service's migrations/env.py."""
    config = context.config
    connection: Any = config.attributes.get("connection")
    metadata = config.attributes["target_metadata"]
    if connection is None:
        raise RuntimeError("migrations run through bibliodesk.runtime.migrate, with a connection")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=_render_item,  # type: ignore[arg-type]
    )
    with context.begin_transaction():
        context.run_migrations()


def _revision(service: str, message: str) -> None:
    module = importlib.import_module(f"services.{service}.module")
    spec = module.MODULE
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{tmp}/scratch.db", name="scratch")
        cfg = _config(Path(spec.migrations), spec.metadata)
        with db.write_engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")
            command.revision(cfg, message=message, autogenerate=True)
        db.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bibliodesk.runtime.migrate")
    sub = parser.add_subparsers(dest="command", required=True)
    rev = sub.add_parser("revision", help="autogenerate a migration for a service")
    rev.add_argument("service")
    rev.add_argument("-m", "--message", required=True)
    args = parser.parse_args(argv)
    _revision(args.service, args.message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
