"""``python -m messaging.migrations <service_package or messaging> <alembic command> [args]``
against ``DATABASE_URL`` (a synchronous run over asyncpg, for autogenerate)."""

from __future__ import annotations

import asyncio
import os
import sys

from alembic import command
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from . import config


def main() -> None:
    package, action, *args = sys.argv[1:]

    async def go() -> None:
        engine = create_async_engine(os.environ["DATABASE_URL"])
        async with engine.begin() as connection:

            def run(sync_connection: Connection) -> None:
                cfg = config(package, sync_connection)
                if action == "revision":
                    message = args[args.index("-m") + 1] if "-m" in args else "change"
                    command.revision(cfg, message=message, autogenerate=True)
                else:
                    getattr(command, action)(cfg, *args)

            await connection.run_sync(run)
        await engine.dispose()

    asyncio.run(go())


if __name__ == "__main__":
    main()
