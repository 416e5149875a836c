"""The state store behind one interface: SQLite for one replica, PostgreSQL for replicas sharing state.

Everything that opens the store goes through `open_store`, so the backend is a line of config
(`state.path` or `state.url`) and nothing else.
"""

from __future__ import annotations

from monitor.config import StateConfig
from monitor.store.base import AlwaysLeader, Leadership, Store, StoreError


def _no_driver(exc: ImportError) -> StoreError:
    return StoreError(f"state.url needs the PostgreSQL driver: pip install 'cluster-monitor[postgres]' ({exc})")


def open_store(state: StateConfig) -> Store:
    if state.url is not None:
        try:
            from monitor.store.postgres import PostgresStore
        except ImportError as exc:
            raise _no_driver(exc) from exc
        return PostgresStore(state.url.get_secret_value(), schema=state.pg_schema)
    from monitor.store.sqlite import SQLiteStore

    assert state.path is not None
    return SQLiteStore(state.path)


def open_leadership(state: StateConfig, project_id: int) -> Leadership:
    """The advisory lock of the project on PostgreSQL; on SQLite the state file's lock, taken now: the one
    replica always leads, and a second process on the same file is refused (StoreError)."""
    if state.url is None:
        assert state.path is not None
        if str(state.path) == ":memory:":
            return AlwaysLeader()
        from monitor.store.filelock import SingleReplica

        return SingleReplica(state.path)
    try:
        from monitor.store.leader import PostgresLeadership, lock_key
    except ImportError as exc:
        raise _no_driver(exc) from exc
    return PostgresLeadership(state.url.get_secret_value(), lock_key(project_id),
                              lease_seconds=state.leader_lease_seconds, store_schema=state.pg_schema)


__all__ = ["Leadership", "Store", "StoreError", "open_leadership", "open_store"]
