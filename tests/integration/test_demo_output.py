"""The demo's drift scenario, delivered: every Slack message and email, compared with what main delivered
before the cycle became stages (tests/data/demo_drift_output.json, written by main at 4ad792b). A refactor
keeps this output as it is; a change meant to alter it regenerates the file (`python -m
tests.integration.test_demo_output`) and says why.

The demo's own loop, without its timing: its config, its local PostHog on the virtual clock, one cycle per
released day, delivery through slack-sdk to the local Slack endpoint and over SMTP to the local server.
Slack messages and the emails' plain text are kept whole (loopback ports masked); the HTML and any image
by digest, so the file stays small.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from monitor.daemon import Daemon
from monitor.local import demo
from monitor.local.posthog.run import start_local_posthog
from monitor.local.slack import LocalSlack
from monitor.local.smtp import LocalSMTP

GOLDEN = Path(__file__).parents[1] / "data" / "demo_drift_output.json"
END = datetime(2026, 11, 20, tzinfo=UTC)
_LOOPBACK = re.compile(r"127\.0\.0\.1:\d+")


def _text(content: str) -> str:
    return _LOOPBACK.sub("127.0.0.1:PORT", content)


def _part(part: EmailMessage) -> str:
    content = part.get_content()
    if part.get_content_type() == "text/plain":
        return _text(content)
    data = _text(content).encode() if isinstance(content, str) else bytes(content)
    return f"{part.get_content_type()} sha256:{hashlib.sha256(data).hexdigest()}"


def delivered(tmp: Path) -> dict[str, Any]:
    server, ds = start_local_posthog(scenario="drift", days=14, project_id=1, api_key=demo.API_KEY, end=END)
    slack = LocalSlack.start()
    smtp = LocalSMTP.start()
    try:
        emitted = sorted(r["emitted_at"] for r in ds.runs)
        last = max(emitted) + timedelta(hours=1)
        server.clock.set(min(emitted) + timedelta(days=demo.BASELINE_DAYS - 1, hours=1))
        cfg = tmp / "config.yaml"
        demo._config(cfg, server.url, slack, smtp, tmp / "state.sqlite")
        daemon = Daemon(cfg, clock=lambda: server.clock.now() or END)
        try:
            while True:
                result = daemon.run_cycle()
                assert result is not None and result.ok, result
                now = server.clock.now()
                assert now is not None
                if now >= last:
                    break
                server.clock.set(now + timedelta(days=1))
        finally:
            daemon.close()
        return {
            # Not the message's: its Slack timestamp, and the sending process (the local endpoint's "sender").
            "slack": [json.loads(_text(json.dumps({k: v for k, v in m.items() if k not in ("ts", "sender")},
                                                  sort_keys=True)))
                      for m in slack.messages],
            "mail": [{"subject": m["Subject"], "to": m["To"],
                      "parts": [_part(p) for p in m.walk() if not p.is_multipart()]}
                     for m in smtp.messages],
        }
    finally:
        slack.stop()
        smtp.stop()
        server.stop()


def test_the_demo_delivers_what_it_delivered_before(tmp_path: Path) -> None:
    got = delivered(tmp_path)
    want = json.loads(GOLDEN.read_text())
    assert (len(got["slack"]), len(got["mail"])) == (len(want["slack"]), len(want["mail"]))
    for i, (g, w) in enumerate(zip(got["slack"], want["slack"], strict=True)):
        assert g == w, f"Slack message #{i + 1} differs"
    for i, (g, w) in enumerate(zip(got["mail"], want["mail"], strict=True)):
        assert g == w, f"email #{i + 1} ({w['subject']}) differs"


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        GOLDEN.write_text(json.dumps(delivered(Path(d)), indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    print(f"wrote {GOLDEN}")
