"""Test-only entry point: `cluster-monitor run` that SIGKILLs itself between a send and its "sent" mark.

The kill test (`kill_test`: tests/e2e/test_kill.py, `./dev bench reliability`) starts some daemons through this
script instead of `cluster-monitor run`: after its n-th message accepted by a channel, before the outbox
records it as sent, the process dies as a power cut would, the one moment where a crash may repeat a
message. The hook is injected into the Deliverer (`after_send`), so the package holds no crash point.

    python tests/support/crashing_daemon.py --config CONFIG --kill-after-sends N
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable


def _sigkill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def kill_after_sends(n: int, kill: Callable[[], None] = _sigkill_self) -> Callable[[], None]:
    """The Deliverer hook that calls `kill` at the n-th accepted send (n >= 1)."""
    if n < 1:
        raise ValueError(f"--kill-after-sends {n}: expected n >= 1")
    sends = 0

    def after_send() -> None:
        nonlocal sends
        sends += 1
        if sends >= n:
            kill()

    return after_send


def main(argv: list[str] | None = None) -> int:
    from monitor import logs
    from monitor.daemon import Daemon

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--config", required=True)
    ap.add_argument("--kill-after-sends", type=int, required=True, metavar="N")
    args = ap.parse_args(argv)
    logs.configure("info")
    daemon = Daemon(args.config, after_send=kill_after_sends(args.kill_after_sends))
    daemon.install_signals()
    return daemon.serve()


if __name__ == "__main__":
    sys.exit(main())
