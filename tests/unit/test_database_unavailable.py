"""A request that could not reach the database is refused with 503, not failed with 500."""

from __future__ import annotations

import sqlalchemy.exc

from messaging.database import unavailable as _database_unavailable


class Orig(Exception):
    pass


def test_connection_failures_count_as_unavailable_and_other_errors_do_not():
    too_many = sqlalchemy.exc.DBAPIError("connect", None, Orig("sorry, too many clients already"))
    starting = sqlalchemy.exc.DBAPIError("connect", None, Orig("the database system is starting up"))
    lost = sqlalchemy.exc.DBAPIError("SELECT 1", None, Orig("connection was closed"), connection_invalidated=True)
    constraint = sqlalchemy.exc.IntegrityError("INSERT", None, Orig("duplicate key value violates unique constraint"))
    assert all(
        _database_unavailable(e) for e in (too_many, starting, lost, ConnectionRefusedError(), sqlalchemy.exc.TimeoutError())
    )
    assert not any(_database_unavailable(e) for e in (constraint, ValueError("bug")))
