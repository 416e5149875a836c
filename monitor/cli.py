"""Every command of `cluster-monitor`. Thin: parse arguments, call one function, map errors to exit codes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import msgspec
import typer

from monitor import logs
from monitor.config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from monitor.daemon import Daemon
    from monitor.store.base import Store

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Watch PostHog LLM clustering runs; alert on Slack and email when AI traffic changes.")

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="YAML config file")]


def _load(path: Path):  # type: ignore[no-untyped-def]
    try:
        return load_config(path)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc


def _daemon(config: Path) -> Daemon:
    """The daemon of a config, or exit 2 with why not (invalid config, state store unreachable)."""
    from monitor.daemon import Daemon
    from monitor.store import StoreError

    cfg = _load(config)
    try:
        return Daemon(config, cfg=cfg)
    except StoreError as exc:
        typer.echo(f"cluster-monitor: {exc}", err=True)
        raise typer.Exit(2) from exc


def _open_store(cfg: Config) -> Store:
    """The configured store, or exit 2 with why it cannot be opened (PostgreSQL down, driver missing)."""
    from monitor.store import StoreError, open_store

    try:
        return open_store(cfg.state)
    except StoreError as exc:
        typer.echo(f"cluster-monitor: {exc}", err=True)
        raise typer.Exit(2) from exc


@app.command()
def run(config: ConfigOpt, log_level: str = "info") -> None:
    """Run the daemon: poll on the configured schedule until SIGTERM or SIGINT."""
    logs.configure(log_level)
    daemon = _daemon(config)
    daemon.install_signals()
    raise typer.Exit(daemon.serve())


@app.command()
def once(config: ConfigOpt, log_level: str = "info") -> None:
    """Run one cycle and exit: 0 when it succeeded, 1 when any part of it failed (it is retried next time).

    On PostgreSQL it takes the leader lock first, like a daemon replica: while another replica leads it does
    nothing and exits 0 (that replica does the work)."""
    logs.configure(log_level)
    daemon = _daemon(config)
    try:
        result = daemon.run_cycle()
    finally:
        daemon.close()
    assert result is not None  # nothing else holds this fresh daemon's cycle lock
    if result.standby:
        typer.echo("cluster-monitor once: another replica holds the leader lock; nothing to do", err=True)
        raise typer.Exit(0)
    raise typer.Exit(0 if result.ok else 1)


@app.command()
def replay(
    config: ConfigOpt,
    days: Annotated[int | None, typer.Option(help="look back this many days (default: posthog.lookback_days)")] = None,
    at: Annotated[str | None, typer.Option(help="evaluate as of this ISO time (default: now, or --until)")] = None,
    since: Annotated[str | None, typer.Option(help="only runs that landed at or after this ISO time")] = None,
    until: Annotated[str | None, typer.Option(help="only runs that landed at or before this ISO time")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one notification per line, as JSON")] = False,
    log_level: str = "warning",
) -> None:
    """Dry run over history: print the notifications the config would have sent; send nothing, store nothing."""
    logs.configure(log_level)
    from datetime import UTC, datetime

    from monitor.replay import print_notices
    from monitor.replay import replay as run_replay

    def when(text: str | None) -> datetime | None:
        if not text:
            return None
        try:
            t = datetime.fromisoformat(text)
        except ValueError as exc:
            raise typer.BadParameter(f"{text!r} is not an ISO time (2026-11-01 or 2026-11-01T03:00:00Z)") from exc
        return t if t.tzinfo else t.replace(tzinfo=UTC)

    cfg = _load(config)
    lo, hi = when(since), when(until)
    now = when(at) or hi or datetime.now(UTC)
    if lo is not None and days is None:
        days = max(1, (now - lo).days + 1)
    result = run_replay(cfg, days=days, clock=lambda: now, since=lo, until=hi)
    from monitor.daemon import load_templates

    print_notices(result.notices, sys.stdout, as_json=as_json, templates=load_templates())
    if not as_json:
        typer.echo(f"{len(result.processed)} runs replayed, {len(result.notices)} notifications would have been sent"
                   + (f"; {len(result.failed)} runs failed" if result.failed else ""), err=True)
    raise typer.Exit(0 if result.ok else 1)


@app.command()
def diff(
    prev: Annotated[Path, typer.Argument(help="previous run: a run event's properties as JSON")],
    new: Annotated[Path, typer.Argument(help="new run: a run event's properties as JSON")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    explain: Annotated[bool, typer.Option("--explain", help="show the signal scores behind each match")] = False,
    threshold: float = 0.5,
    embeddings: Annotated[Path | None, typer.Option(
        "--embeddings", help="JSON lines {\"document_id\": ..., \"embedding\": [...]} from PostHog's "
        "raw_document_embeddings, for the items of either run: match in PostHog's embedding space too")] = None,
) -> None:
    """Compare two runs of one job: matched, new, disappeared, split and merged clusters."""
    from monitor.matching import embeddings as emb
    from monitor.matching import match_runs
    from monitor.reports import render_diff
    from monitor.runs import RunParseError, load_run_file

    try:
        a = load_run_file(prev.read_bytes())
        b = load_run_file(new.read_bytes())
        rows = emb.read_rows(embeddings.read_bytes(), str(embeddings)) if embeddings else None
    except (OSError, RunParseError, emb.EmbeddingRowsError) as exc:
        typer.echo(f"cluster-monitor diff: {exc}", err=True)
        raise typer.Exit(2) from exc
    pv = nv = None
    if rows is not None:
        from monitor.posthog.queries import EMBEDDING_ITEMS_PER_CLUSTER

        # The cluster means the daemon's query computes: over each cluster's best-ranked items.
        pv = emb.vectors_from_items(a, rows, per_cluster=EMBEDDING_ITEMS_PER_CLUSTER)
        nv = emb.vectors_from_items(b, rows, per_cluster=EMBEDDING_ITEMS_PER_CLUSTER)
        if not as_json:
            typer.echo(f"embeddings: {len(pv)} of {sum(not c.is_noise for c in a.clusters)} previous and {len(nv)} "
                       f"of {sum(not c.is_noise for c in b.clusters)} new clusters have a mean", err=True)
    d = match_runs(a, b, threshold=threshold, explain=explain, prev_vectors=pv, new_vectors=nv)
    if as_json:
        sys.stdout.buffer.write(msgspec.json.encode(d) + b"\n")
    else:
        typer.echo(render_diff(a, b, d, explain=explain))


@app.command("check-config")
def check_config(config: ConfigOpt) -> None:
    """Validate the config (and templates) without sending anything."""
    cfg = _load(config)
    from monitor.daemon import load_templates
    from monitor.notify.render import check_templates

    problems = check_templates(load_templates())
    if problems:
        for p in problems:
            typer.echo(p, err=True)
        raise typer.Exit(2)
    typer.echo(f"{config}: ok (project {cfg.posthog.project_id} on {cfg.posthog.host}; "
               f"channels: {', '.join(c for c in ('slack', 'email') if getattr(cfg, c)) or 'none'})")
    typer.echo(f"state: {cfg.state.replicas()}")


@app.command()
def history(
    config: ConfigOpt,
    lineage: Annotated[str | None, typer.Option(help="lineage id")] = None,
    title: Annotated[str | None, typer.Option(help="find lineages whose latest title contains this text")] = None,
    limit: int = 30,
) -> None:
    """A cluster lineage's sizes, costs and titles over runs."""
    from monitor.reports import show_history

    cfg = _load(config)
    store = _open_store(cfg)
    try:
        typer.echo(show_history(store, lineage=lineage, title=title, limit=limit))
    finally:
        store.close()


@app.command()
def outbox(config: ConfigOpt, status: Annotated[str | None, typer.Option(help="pending|sent|failed")] = None,
           retry_failed: Annotated[bool, typer.Option("--retry-failed", help="put failed ones back in the queue "
                                                      "(after fixing the token, channel or mail account)")] = False,
           ) -> None:
    """Notifications waiting, delivered or failed."""
    from datetime import UTC, datetime

    cfg = _load(config)
    store = _open_store(cfg)
    try:
        if retry_failed:
            typer.echo(f"{store.requeue_failed(datetime.now(UTC))} failed notifications queued again; "
                       "the daemon delivers them on its next cycle")
        rows = store.outbox(status)
    finally:
        store.close()
    if not rows:
        typer.echo("outbox is empty" if status is None else f"no {status} notifications")
        return
    for e in rows:
        err = f"  error: {e.last_error}" if e.last_error else ""
        typer.echo(f"#{e.id} {e.status:<7} {e.channel:<5} {e.key} attempts={e.attempts} "
                   f"created={e.created_at:%Y-%m-%d %H:%M:%S}{err}")


silence_app = typer.Typer(no_args_is_help=True, help="Mute notifications of matching alerts for a while.")
app.add_typer(silence_app, name="silence")
_DURATION = {"m": 60, "h": 3600, "d": 86400, "w": 604800}


def _duration_seconds(text: str) -> float:
    """'90m', '4h', '2d', '1w'."""
    text = text.strip().lower()
    if len(text) < 2 or text[-1] not in _DURATION or not text[:-1].replace(".", "", 1).isdigit():
        raise typer.BadParameter(f"{text!r}: use a number and a unit, like 90m, 4h, 2d or 1w")
    return float(text[:-1]) * _DURATION[text[-1]]


@silence_app.command("add")
def silence_add(
    config: ConfigOpt,
    kind: Annotated[list[str] | None, typer.Option(help="alert kind (repeatable), e.g. share_shift")] = None,
    severity: Annotated[list[str] | None, typer.Option(help="critical, warning or info (repeatable)")] = None,
    job: Annotated[str | None, typer.Option(help="glob on the job name")] = None,
    level: Annotated[str | None, typer.Option(help="trace or generation")] = None,
    title: Annotated[str | None, typer.Option(help="glob on the cluster title")] = None,
    for_: Annotated[str | None, typer.Option("--for", help="how long, e.g. 4h or 2d")] = None,
    until: Annotated[str | None, typer.Option(help="ISO time it ends (UTC if no zone)")] = None,
    comment: Annotated[str, typer.Option(help="why: shown in logs and `silence list`")] = "",
) -> None:
    """Add a silence; the running daemon applies it from its next run."""
    from datetime import UTC, datetime, timedelta

    from pydantic import ValidationError

    from monitor.config import Silence
    cfg = _load(config)
    now = datetime.now(UTC)
    if for_ and until:
        raise typer.BadParameter("give --for or --until, not both")
    end = now + timedelta(seconds=_duration_seconds(for_)) if for_ else (
        datetime.fromisoformat(until) if until else None)
    spec = {"kinds": kind or [], "severities": severity or [], "job": job, "level": level, "title": title,
            "until": end.isoformat() if end else None, "comment": comment}
    try:
        silence = Silence.model_validate(spec)
    except ValidationError as exc:
        typer.echo(f"cluster-monitor silence add: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}", err=True)
        raise typer.Exit(2) from exc
    if not any((silence.kinds, silence.severities, job, level, title)):
        typer.echo("cluster-monitor silence add: say what to mute (--kind, --severity, --job, --level or --title)",
                   err=True)
        raise typer.Exit(2)
    store = _open_store(cfg)
    try:
        sid = store.add_silence(silence.model_dump(mode="json"), now)
    finally:
        store.close()
    typer.echo(f"silence #{sid} added" + (f", until {silence.until:%Y-%m-%d %H:%M} UTC" if silence.until else ""))


@silence_app.command("list")
def silence_list(config: ConfigOpt) -> None:
    """Silences from the CLI (and those in the config file), with whether each is still active."""
    from datetime import UTC, datetime

    from monitor.config import Silence
    cfg = _load(config)
    store = _open_store(cfg)
    try:
        rows = [(f"#{sid}", Silence.model_validate(spec)) for sid, spec in store.silences()]
    finally:
        store.close()
    rows += [("config", s) for s in cfg.silences]
    if not rows:
        typer.echo("no silences")
        return
    now = datetime.now(UTC)
    for label, s in rows:
        state = "expired" if s.until is not None and s.until <= now else "active"
        what = ", ".join(f"{k}={v}" for k, v in (("kinds", ",".join(s.kinds)), ("severities", ",".join(s.severities)),
                                                  ("job", s.job), ("level", s.level), ("title", s.title)) if v)
        until = f"until {s.until:%Y-%m-%d %H:%M} UTC" if s.until else "until removed"
        typer.echo(f"{label:<7} {state:<8} {what}  {until}  {s.comment}")


@silence_app.command("remove")
def silence_remove(config: ConfigOpt,
                   silence_id: Annotated[int, typer.Argument(help="the number `list` shows")]) -> None:
    """Remove a silence added from the CLI (silences in the config file are removed by editing it)."""
    cfg = _load(config)
    store = _open_store(cfg)
    try:
        removed = store.remove_silence(silence_id)
    finally:
        store.close()
    if not removed:
        typer.echo(f"no silence #{silence_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"silence #{silence_id} removed")


@app.command("test-notify")
def test_notify(
    config: ConfigOpt,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the sample as Slack and email would show it; "
                                                           "send nothing")] = False,
) -> None:
    """Send a sample notification to every configured channel."""
    logs.configure("info")
    from monitor.daemon import build_notifiers, load_templates
    from monitor.notify.sample import sample_notification

    cfg = _load(config)
    if dry_run:
        from zoneinfo import ZoneInfo

        from monitor.notify.render import render_email, render_slack

        sample, tz, templates = sample_notification(cfg), ZoneInfo(cfg.timezone), load_templates()
        slack = render_slack(sample, tz=tz, templates=templates)
        email = render_email(sample, tz=tz, templates=templates)
        typer.echo(f"--- slack ({len(slack.blocks)} blocks)\n{slack.text}\n--- email: {email.subject}\n{email.text}")
        raise typer.Exit(0)
    notifiers = build_notifiers(cfg)
    if not notifiers:
        typer.echo("no channel configured (slack, email)", err=True)
        raise typer.Exit(2)
    failed = False
    for name, n in notifiers.items():
        r = n.send(sample_notification(cfg))
        typer.echo(f"{name}: {'sent' if r.ok else 'FAILED: ' + str(r.error)}")
        failed |= not r.ok
    raise typer.Exit(1 if failed else 0)


@app.command("local-posthog")
def local_posthog(
    host: str = "127.0.0.1",
    port: int = 8010,
    scenario: str = "drift",
    seed: int = 7,
    days: int = 14,
    api_key: Annotated[str, typer.Option(envvar="LOCAL_POSTHOG_API_KEY")] = "phx_local_key",
    query_log: Annotated[Path | None, typer.Option(help="one JSON line per request")] = None,
    project_id: int = 1,
    scale: float = 1.0,
    timezone: Annotated[str, typer.Option(help="the project's timezone (IANA name): HogQL renders and reads "
                                               "datetimes in it, as PostHog does")] = "UTC",
    release: Annotated[str, typer.Option(help="'current', or 'old': only older self-hosted releases' "
                                              "HogQL functions")] = "current",
    rate_limits: Annotated[str, typer.Option(help="'off', 'default' (240/min and 2,400/h per key) or "
                                                  "'legacy' (120/h)")] = "off",
    evaluations: Annotated[bool, typer.Option(help="also $ai_evaluation events and daily evaluation-level "
                                                   "clustering runs")] = False,
) -> None:
    """Serve a PostHog-compatible API on real ClickHouse, loaded with generated LLM traffic and runs."""
    logs.configure("info")
    from monitor.local.posthog.run import serve_forever

    if release not in ("current", "old") or rate_limits not in ("off", "default", "legacy"):
        raise typer.BadParameter("--release is current|old; --rate-limits is off|default|legacy")
    serve_forever(host=host, port=port, scenario=scenario, seed=seed, days=days, api_key=api_key,
                  query_log=query_log, project_id=project_id, scale=scale, timezone=timezone,
                  release=release, rate_limits=rate_limits, evaluations=evaluations)  # type: ignore[arg-type]


@app.command()
def demo(
    seconds: Annotated[float, typer.Option("--for", help="stop after this many seconds (0: until Ctrl-C)")] = 75.0,
    step: Annotated[float, typer.Option(help="seconds of wall time per simulated day")] = 3.0,
) -> None:
    """Everything local: PostHog-compatible server with drifting runs, Slack endpoint, SMTP server, daemon."""
    logs.configure("warning")
    from monitor.local.demo import run_demo

    raise typer.Exit(run_demo(seconds=seconds, step=step))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
