"""The store contract of tests/unit/test_store.py again, on PostgreSQL (a throw-away server on a free port), and each
extra project's state of its own on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from monitor.config import StateConfig
from monitor.store import open_store

# The unit tier's store tests, collected here again where `opener` (below) opens PostgreSQL.
from tests.unit.test_store import (  # noqa: F401
    T0,
    Opener,
    _run,
    opening,
    test_commit_run_is_atomic,
    test_cursor_kv_and_silences,
    test_outbox_is_unique_per_key_and_channel_and_failures_requeue,
    test_outbox_lifecycle,
    test_previous_run_lineages_and_history_survive_reopen,
)


@pytest.fixture
def opener(postgres_url: str) -> Iterator[Opener]:
    yield from opening(StateConfig.model_validate({"url": postgres_url}))


def test_each_extra_project_has_a_state_of_its_own(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """`projects:` keeps cursors, runs and alert states apart: a file beside the main one on SQLite, a
    schema of its own on PostgreSQL, created on first use."""
    for base in (StateConfig.model_validate({"path": tmp_path / "s.sqlite"}),
                 StateConfig.model_validate({"url": request.getfixturevalue("postgres_url")})):
        main, extra = open_store(base), open_store(base.for_project(202))
        try:
            main.set_cursor(T0)
            main.commit_run(_run("r1", 1))
            assert extra.cursor() is None and not extra.is_processed("r1")
            extra.set_cursor(T0 + timedelta(days=3))
            assert main.cursor() == T0 and extra.cursor() == T0 + timedelta(days=3)
        finally:
            main.close()
            extra.close()
        again = open_store(base.for_project(202))
        assert again.cursor() == T0 + timedelta(days=3)
        again.close()
    assert (tmp_path / "s-202.sqlite").exists()
