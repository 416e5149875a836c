"""The kill test's crash hook (tests/support/crashing_daemon.py) counts sends and fires at the n-th."""

from __future__ import annotations

import pytest

from tests.support.crashing_daemon import kill_after_sends


def test_crash_hook_kills_at_the_nth_send_and_refuses_zero() -> None:
    kills: list[int] = []
    hook = kill_after_sends(2, kill=lambda: kills.append(1))
    hook()
    assert kills == []
    hook()
    assert kills == [1]
    with pytest.raises(ValueError, match="kill-after-sends"):
        kill_after_sends(0)
