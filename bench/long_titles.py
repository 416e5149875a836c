"""Long text through the whole path of a run, in CPU time: parse, diff, rules, charts, then Slack and email
rendered and delivered (to the local Slack endpoint and a local SMTP server).

A crafted 4,000-character title once took 86 s in the email chart (text shortened one character at a time,
re-measured each time). Every stage is now linear in its input and display text is bounded, so a 1 MB
title, description, job name and model name (and a 100 KB run id) should cost about what a short one
does. Baseline in the same run: the same path with short text. CPU is process time (every thread of
this process, the local Slack and SMTP servers' included).
"""

from __future__ import annotations

import argparse

from monitor.local.slack import LocalSlack
from monitor.local.smtp import LocalSMTP
from monitor.notify.email import EmailNotifier
from monitor.notify.slack import SlackNotifier
from tests.support.long_titles import PathResult, through_pipeline


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    slack, smtp = LocalSlack.start(), LocalSMTP.start()
    try:
        slack_n = SlackNotifier(webhook_url=slack.webhook_url)
        email_n = EmailNotifier(host="127.0.0.1", port=smtp.port, security="none", sender="m@x.test",
                                recipients=["t@x.test"])
        sizes = [("short (baseline)", 40), ("1 KB", 1_000), ("100 KB", 100_000), ("1 MB", 1_000_000)]
        print(f"{'title, description, job and model name':<40} {'parse':>7} {'diff':>7} {'rules':>7} "
              f"{'slack':>7} {'email':>7} {'total':>8} {'vs baseline':>11}")
        base = 0.0
        for label, size in sizes:
            text = ("Ωmega заголовок 日本語 *bold* <!channel> " + "x" * size)[:max(size, 40)]
            best: PathResult | None = None
            for _ in range(args.repeat):
                r = through_pipeline(text, job_name=text, model=text, run_label="r" * min(size, 100_000),
                                     slack=slack_n, email=email_n)
                best = r if best is None or r.total < best.total else best
            assert best is not None
            base = base or best.total
            c = best.cpu
            print(f"{label:<40} " + " ".join(f"{c[s] * 1000:>5.0f}ms" for s in
                                             ("parse", "diff", "rules", "slack", "email"))
                  + f" {best.total * 1000:>6.0f}ms {best.total / base:>10.1f}x")
    finally:
        slack.stop()
        smtp.stop()
    return 0
