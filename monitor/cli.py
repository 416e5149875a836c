"""Every command of `cluster-monitor`. Thin: parse arguments, call one function, map errors to exit codes.

Exit codes: 0 done, 1 the work failed (retried later, or a health check failed), 2 bad input (arguments,
config, unreachable state store). Bad input never shows a traceback: usage errors are one line naming the
command and the option (see _OneLineErrors), and an unexpected exception is one line too, its traceback
shown only with CLUSTER_MONITOR_DEBUG=1.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
import typer
from typer.core import TyperGroup

from monitor import logs
from monitor.config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from monitor.daemon import Daemon
    from monitor.store.base import Store

# typer vendors click from 0.20 on: its exception class is reached through a public one, whichever it is.
_ClickException: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


class _OneLineErrors(TyperGroup):
    """Usage errors as one line (`cluster-monitor silence add: Invalid value for '--for': ...`), exit 2,
    instead of click's usage block or rich's panel; any other exception as one line, exit 1."""

    def main(self, *args: Any, **extra: Any) -> Any:
        standalone = extra.pop("standalone_mode", True)
        extra["standalone_mode"] = False
        if not standalone:
            return super().main(*args, **extra)
        try:
            rv = super().main(*args, **extra)
        except _ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            where = ctx.command_path if ctx is not None else "cluster-monitor"
            # typer words a bad choice "Value error, 'x' is not one of ...": the prefix says nothing to people.
            message = " ".join(exc.format_message().replace("Value error, ", "").split())  # type: ignore[attr-defined]
            typer.echo(f"{where}: {message} (--help for usage)", err=True)
            sys.exit(getattr(exc, "exit_code", 2))
        except typer.Abort:
            typer.echo("cluster-monitor: aborted", err=True)
            sys.exit(1)
        except Exception as exc:
            if os.environ.get("CLUSTER_MONITOR_DEBUG"):
                raise
            typer.echo(f"cluster-monitor: unexpected error: {type(exc).__name__}: {' '.join(str(exc).split())} "
                       "(CLUSTER_MONITOR_DEBUG=1 shows where)", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(cls=_OneLineErrors, add_completion=False, no_args_is_help=True,
                  pretty_exceptions_enable=False,
                  help="Watch PostHog LLM clustering runs; alert on Slack and email when AI traffic changes.")

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", envvar="CLUSTER_MONITOR_CONFIG", show_envvar=True,
                                         help="YAML config file")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output (shape in README.md)")]


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


LogLevelOpt = Annotated[LogLevel, typer.Option(help="least severe log events shown", case_sensitive=False)]


class OutboxStatus(StrEnum):
    pending = "pending"
    sent = "sent"
    failed = "failed"


class Severity(StrEnum):
    critical = "critical"
    warning = "warning"
    info = "info"


class Level(StrEnum):
    trace = "trace"
    generation = "generation"


def _version(value: bool) -> None:
    if value:
        from monitor.telemetry import version

        typer.echo(f"cluster-monitor {version()}")
        raise typer.Exit(0)


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="print the version and exit")] = False) -> None:
    """Watch PostHog LLM clustering runs; alert on Slack and email when AI traffic changes."""


def _load(path: Path, warnings: list[str] | None = None) -> Config:
    try:
        return load_config(path, warnings=warnings)
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


def _open_store(cfg: Config, *, existing: bool = False) -> Store:
    """The configured store, or exit 2 with why it cannot be opened (PostgreSQL down, driver missing, a
    path that cannot be a database). `existing`: a SQLite file that is not there yet is an error (a
    command that only reads would otherwise report an empty state created by the typo in state.path)."""
    import sqlite3

    from monitor.store import StoreError, open_store

    if existing and cfg.state.url is None and cfg.state.path is not None and not cfg.state.path.exists():
        typer.echo(f"cluster-monitor: no state at {cfg.state.path} yet: has the daemon run with this config?",
                   err=True)
        raise typer.Exit(2)
    try:
        return open_store(cfg.state)
    except StoreError as exc:  # its message names the database (without the password)
        typer.echo(f"cluster-monitor: {exc}", err=True)
        raise typer.Exit(2) from exc
    except (sqlite3.Error, OSError) as exc:
        typer.echo(f"cluster-monitor: cannot open the state file {cfg.state.describe()}: {exc}", err=True)
        raise typer.Exit(2) from exc


@app.command()
def run(config: ConfigOpt, log_level: LogLevelOpt = LogLevel.info) -> None:
    """Run the daemon: poll on the configured schedule until SIGTERM or SIGINT."""
    logs.configure(log_level.value)
    daemon = _daemon(config)
    daemon.install_signals()
    code = daemon.serve()
    if code != 0:
        # Work was abandoned and a worker thread may be stuck for good: the interpreter would wait for it
        # at exit. Nothing is lost by leaving now (see monitor/daemon.py): flush the logs and go.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise typer.Exit(0)


@app.command()
def once(config: ConfigOpt, log_level: LogLevelOpt = LogLevel.info) -> None:
    """Run one cycle and exit: 0 when it succeeded, 1 when any part of it failed (it is retried next time).

    On PostgreSQL it takes the leader lock first, like a daemon replica: while another replica leads it does
    nothing and exits 0 (that replica does the work)."""
    logs.configure(log_level.value)
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
    days: Annotated[int | None, typer.Option(
        min=1, help="look back this many days (default: posthog.lookback_days)")] = None,
    at: Annotated[str | None, typer.Option(
        help="evaluate as of this ISO time (default: now, or --until); without an offset, in the project's "
             "timezone")] = None,
    since: Annotated[str | None, typer.Option(
        help="only runs that landed at or after this ISO time; without an offset, in the project's timezone "
             "(PostHog's project setting, as PostHog shows times)")] = None,
    until: Annotated[str | None, typer.Option(
        help="only runs that landed at or before this ISO time; without an offset, in the project's "
             "timezone")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one notification per line, as JSON")] = False,
    log_level: LogLevelOpt = LogLevel.warning,
) -> None:
    """Dry run over history: print the notifications the config would have sent; send nothing, store nothing."""
    logs.configure(log_level.value)
    from monitor.replay import print_notices
    from monitor.replay import replay as run_replay

    cfg = _load(config)
    given = {opt: _iso_time(text, opt, naive=None) for opt, text in
             (("--since", since), ("--until", until), ("--at", at)) if text}
    given = _in_project_zone(cfg, given)
    lo, hi, at_time = given.get("--since"), given.get("--until"), given.get("--at")
    now = at_time or hi or datetime.now(UTC)
    if lo is not None and days is None:
        days = max(1, (now - lo).days + 1)
    result = run_replay(cfg, days=days, clock=lambda: now, since=lo, until=hi)
    from monitor.app.wiring import load_templates

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
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="least similarity of a match")] = 0.5,
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
def check_config(config: ConfigOpt, offline: Annotated[bool, typer.Option(
        "--offline", help="do not ask PostHog whether each watched level has a clustering job")] = False) -> None:
    """Validate the config (and templates) without sending anything; with PostHog reachable, also check that
    each watched level has an enabled clustering job."""
    warnings: list[str] = []
    cfg = _load(config, warnings)
    for w in warnings:
        typer.echo(f"warning: {w}", err=True)
    from monitor.app.wiring import load_templates
    from monitor.notify.render import check_templates

    problems = check_templates(load_templates())
    if problems:
        for p in problems:
            typer.echo(p, err=True)
        raise typer.Exit(2)
    typer.echo(f"{config}: ok (project {cfg.posthog.project_id} on {cfg.posthog.host}; "
               f"channels: {', '.join(c for c in ('slack', 'email') if getattr(cfg, c)) or 'none'})")
    typer.echo(f"state: {cfg.state.replicas()}")
    if offline:
        typer.echo("jobs: not checked (--offline)")
    else:
        _check_jobs(cfg)


def _check_jobs(cfg: Config) -> None:
    """Each project's watched levels against its clustering jobs on PostHog, when PostHog answers. A
    warning, not a failure: jobs are made in PostHog, perhaps after the monitor is configured."""
    from monitor.app.wiring import build_client
    from monitor.posthog.client import PostHogError
    from monitor.stages.discover import levels_without_job

    for c in cfg.per_project():
        pid, host = c.posthog.project_id, c.posthog.host
        try:
            with build_client(c, max_retries=0, timeout=min(c.posthog.timeout_seconds, 10.0)) as client:
                jobs = client.clustering_jobs()
        except (PostHogError, OSError) as exc:
            typer.echo(f"jobs: could not check project {pid}'s clustering jobs on {host}: {exc}")
            continue
        missing = levels_without_job(c.watch, jobs)
        for level in missing:
            among = f" among the jobs watch.jobs names ({', '.join(c.watch.jobs)})" if c.watch.jobs else ""
            typer.echo(f"warning: project {pid} watches level {level!r} but has no enabled {level}-level "
                       f"clustering job{among}: no {level} run will come", err=True)
        if not missing:
            typer.echo(f"jobs: project {pid}: every watched level ({', '.join(c.watch.levels)}) has an "
                       f"enabled clustering job")


@app.command()
def history(
    config: ConfigOpt,
    lineage: Annotated[str | None, typer.Option(help="lineage id")] = None,
    title: Annotated[str | None, typer.Option(help="find lineages whose latest title contains this text")] = None,
    limit: Annotated[int, typer.Option(min=1, help="runs per lineage, newest")] = 30,
    as_json: JsonOpt = False,
) -> None:
    """A cluster lineage's sizes, costs and titles over runs."""
    from monitor.reports import show_history
    from monitor.status import lineage_history, to_json

    cfg = _load(config)
    store = _open_store(cfg, existing=True)
    try:
        if as_json:
            ids = [lineage] if lineage else store.find_lineages(title or "", limit=20)
            sys.stdout.buffer.write(to_json([lineage_history(lid, store.history(lid, limit)) for lid in ids]))
        else:
            typer.echo(show_history(store, lineage=lineage, title=title, limit=limit))
    finally:
        store.close()


@app.command()
def outbox(config: ConfigOpt,
           status: Annotated[OutboxStatus | None, typer.Option(help="only these", case_sensitive=False)] = None,
           retry_failed: Annotated[bool, typer.Option("--retry-failed", help="put failed ones back in the queue "
                                                      "(after fixing the token, channel or mail account)")] = False,
           as_json: JsonOpt = False,
           ) -> None:
    """Notifications waiting, delivered or failed."""
    from monitor.status import outbox_view, to_json

    cfg = _load(config)
    store = _open_store(cfg, existing=True)
    try:
        if retry_failed:
            typer.echo(f"{store.requeue_failed(datetime.now(UTC))} failed notifications queued again; "
                       "the daemon delivers them on its next cycle", err=as_json)
        rows = store.outbox(status.value if status else None)
    finally:
        store.close()
    if as_json:
        sys.stdout.buffer.write(to_json([outbox_view(e) for e in rows]))
        return
    if not rows:
        typer.echo("outbox is empty" if status is None else f"no {status.value} notifications")
        return
    for e in rows:
        err = f"  error: {e.last_error}" if e.last_error else ""
        typer.echo(f"#{e.id} {e.status:<7} {e.channel:<5} {e.key} attempts={e.attempts} "
                   f"created={e.created_at:%Y-%m-%d %H:%M:%S}{err}")


@app.command()
def runs(
    config: ConfigOpt,
    action: Annotated[str | None, typer.Argument(help="`retry` to give a quarantined or failing run another go",
                                                 show_default=False)] = None,
    run_id: Annotated[str | None, typer.Argument(help="the run id, with `retry`", show_default=False)] = None,
    retry: Annotated[str | None, typer.Option("--retry", metavar="RUN_ID", help="same as `runs retry RUN_ID`")] = None,
    quarantined: Annotated[bool, typer.Option("--quarantined", help="only quarantined runs")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Runs that failed to parse or process: still retried, or quarantined after schedule.run_attempts
    failures; `runs retry RUN_ID` (after a fix) lets the daemon take one again at its next cycle."""
    from monitor.status import failed_run_line, failed_run_view, to_json

    if action is not None and action != "retry":
        raise typer.BadParameter(f"{action!r}: the only action is `retry RUN_ID`", param_hint="ACTION")
    if action == "retry" and not run_id:
        raise typer.BadParameter("`runs retry` needs the run id: `runs retry RUN_ID`", param_hint="RUN_ID")
    target = (retry or run_id) if (retry or action == "retry") else None
    cfg = _load(config)
    store = _open_store(cfg, existing=True)
    try:
        if target is not None:
            forgotten = store.retry_run(target)
            if forgotten is None:
                typer.echo(f"cluster-monitor: run {target!r} has not failed (see `runs`)", err=True)
                raise typer.Exit(1)
            typer.echo(f"run {target} ({forgotten.job_name}, {forgotten.level}) will be tried again at the "
                       "daemon's next cycle", err=as_json)
        rows = store.run_failures(quarantined=True if quarantined else None)
    finally:
        store.close()
    views = [failed_run_view(f) for f in rows]
    if as_json:
        sys.stdout.buffer.write(to_json(views))
        return
    if target is not None:
        return
    if not views:
        typer.echo("no quarantined runs" if quarantined else "no failed runs")
    for v in views:
        typer.echo(failed_run_line(v))


silence_app = typer.Typer(no_args_is_help=True, help="Mute notifications of matching alerts for a while.")
app.add_typer(silence_app, name="silence")
_DURATION = {"m": 60, "h": 3600, "d": 86400, "w": 604800}
DEFAULT_SILENCE = "24h"
_TIME_FORMATS = "an ISO date or time, like 2026-12-05, 2026-12-05T18:00 or 2026-12-05T18:00:00+01:00 (UTC if no zone)"


def _duration_seconds(text: str) -> float:
    """'90m', '4h', '2d', '1w'."""
    t = text.strip().lower()
    if len(t) < 2 or t[-1] not in _DURATION or not t[:-1].replace(".", "", 1).isdigit() or float(t[:-1]) <= 0:
        raise typer.BadParameter(f"{text!r}: use a positive number and a unit (m, h, d, w), like 90m, 4h, 2d or 1w",
                                 param_hint="'--for'")
    return float(t[:-1]) * _DURATION[t[-1]]


def _iso_time(text: str, option: str = "--until", *, naive: tzinfo | None = UTC) -> datetime:
    """`naive`: the zone of a time given without an offset (None: leave it naive for the caller)."""
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r} is not a time: use {_TIME_FORMATS}", param_hint=f"'{option}'") from exc
    return t if t.tzinfo or naive is None else t.replace(tzinfo=naive)


def _in_project_zone(cfg: Config, given: dict[str, datetime]) -> dict[str, datetime]:
    """Replay's bounds: as given when they have an offset; else on the project's wall clock, the zone
    PostHog shows the project's times in (read from PostHog once; each reading said on stderr)."""
    naive = [opt for opt, t in given.items() if t.tzinfo is None]
    if not naive:
        return given
    from monitor.posthog.client import PostHogError
    from monitor.replay import project_zone

    try:
        zone = project_zone(cfg)
    except PostHogError as exc:
        t = given[naive[0]]
        typer.echo(f"cluster-monitor replay: {naive[0]} {t.isoformat()} has no offset and the project's timezone "
                   f"could not be read from PostHog ({exc}): give the offset, e.g. {t.isoformat()}+00:00", err=True)
        raise typer.Exit(2) from exc
    out = dict(given)
    for opt in naive:
        out[opt] = given[opt].replace(tzinfo=zone)
        typer.echo(f"replay: {opt} {given[opt].isoformat()} read in the project's timezone {zone.key}: "
                   f"{out[opt].astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC", err=True)
    return out


@silence_app.command("add")
def silence_add(
    config: ConfigOpt,
    kind: Annotated[list[str] | None, typer.Option(
        help="alert kind or rule name (repeatable), e.g. share_shift")] = None,
    severity: Annotated[list[Severity] | None, typer.Option(help="repeatable", case_sensitive=False)] = None,
    job: Annotated[str | None, typer.Option(help="glob on the job name")] = None,
    level: Annotated[Level | None, typer.Option(help="clustering level", case_sensitive=False)] = None,
    title: Annotated[str | None, typer.Option(help="glob on the cluster title")] = None,
    lineage: Annotated[str | None, typer.Option(
        help="one cluster lineage, across its renames (`history` shows the ids)")] = None,
    for_: Annotated[str | None, typer.Option(
        "--for", help=f"how long, e.g. 4h or 2d (default {DEFAULT_SILENCE})")] = None,
    until: Annotated[str | None, typer.Option(help="when it ends: " + _TIME_FORMATS)] = None,
    comment: Annotated[str, typer.Option(help="why: shown in logs and `silence list`")] = "",
) -> None:
    """Add a silence (for 24h unless --for or --until says otherwise); the running daemon applies it from its
    next run."""
    from pydantic import ValidationError

    from monitor.config import Silence
    cfg = _load(config)
    now = datetime.now(UTC)
    if for_ and until:
        raise typer.BadParameter("give --for or --until, not both", param_hint="'--for' / '--until'")
    end = _iso_time(until) if until else now + timedelta(seconds=_duration_seconds(for_ or DEFAULT_SILENCE))
    if end <= now:
        raise typer.BadParameter(f"{until!r} is in the past", param_hint="'--until'")
    from monitor.kinds import unknown_kind

    for k in kind or []:
        why = unknown_kind(k, [r.name for r in cfg.rules])
        if why is not None:
            raise typer.BadParameter(why, param_hint="'--kind'")
    spec = {"kinds": kind or [], "severities": [s.value for s in severity or []], "job": job,
            "level": level.value if level else None, "title": title, "lineage": lineage, "until": end.isoformat(),
            "comment": comment}
    try:
        silence = Silence.model_validate(spec)
    except ValidationError as exc:
        from monitor.config import plain_message

        err = exc.errors()[0]
        typer.echo(f"cluster-monitor silence add: {'.'.join(map(str, err['loc']))}: {plain_message(err)}", err=True)
        raise typer.Exit(2) from exc
    if not any((silence.kinds, silence.severities, job, level, title, lineage)):
        typer.echo("cluster-monitor silence add: say what to mute (--kind, --severity, --job, --level, --title or "
                   "--lineage)",
                   err=True)
        raise typer.Exit(2)
    store = _open_store(cfg)
    try:
        sid = store.add_silence(silence.model_dump(mode="json"), now)
    finally:
        store.close()
    assert silence.until is not None
    typer.echo(f"silence #{sid} added, until {silence.until.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
               + ("" if for_ or until else f" (the default {DEFAULT_SILENCE}; --for or --until to choose)"))


@silence_app.command("list")
def silence_list(config: ConfigOpt, as_json: JsonOpt = False) -> None:
    """Silences from the CLI (and those in the config file), with whether each is still active."""
    from monitor.status import silence_line, silence_views, to_json

    cfg = _load(config)
    store = _open_store(cfg)
    try:
        stored = store.silences()
    finally:
        store.close()
    views = silence_views(stored, cfg.silences, datetime.now(UTC))
    if as_json:
        sys.stdout.buffer.write(to_json(views))
    elif not views:
        typer.echo("no silences")
    else:
        for v in views:
            typer.echo(silence_line(v))


@silence_app.command("remove")
def silence_remove(config: ConfigOpt,
                   silence_id: Annotated[int, typer.Argument(min=1, help="the number `list` shows")]) -> None:
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


@app.command()
def status(config: ConfigOpt, as_json: JsonOpt = False) -> None:
    """What fires, what is silenced or acknowledged, each job's last run, the outbox: read from the state
    store only, so it is safe beside a running daemon."""
    from monitor.status import Status, collect, render, to_json
    from monitor.telemetry import version

    cfg = _load(config)
    now = datetime.now(UTC)
    projects = []
    for pcfg in cfg.per_project():
        store = _open_store(pcfg, existing=True)
        try:
            projects.append(collect(pcfg, store, now))
        finally:
            store.close()
    result = Status(version=version(), generated_at=now, projects=projects)
    if as_json:
        sys.stdout.buffer.write(to_json(result))
    else:
        typer.echo(render(result))


@app.command()
def ack(
    config: ConfigOpt,
    fingerprint: Annotated[str, typer.Argument(help="the alert's id, as `status` shows it")],
    by: Annotated[str, typer.Option(help="who takes it (default: $USER)")] = "",
    comment: Annotated[str, typer.Option(help="shown in `status`")] = "",
) -> None:
    """Acknowledge a firing alert: someone is on it. `status` shows who, until the alert resolves."""
    from monitor.status import firing_states

    cfg = _load(config)
    store = _open_store(cfg, existing=True)
    try:
        if fingerprint not in {st.fingerprint for st in firing_states(store)}:
            typer.echo(f"cluster-monitor ack: no firing alert {fingerprint!r} (`status` lists them)", err=True)
            raise typer.Exit(2)
        who = by or os.environ.get("USER") or "cli"
        store.acknowledge(fingerprint, who, datetime.now(UTC), comment)
    finally:
        store.close()
    typer.echo(f"alert {fingerprint} acknowledged by {who}")


@app.command()
def healthcheck(
    config: ConfigOpt,
    ready: Annotated[bool, typer.Option("--ready", help="ask /readyz (a cycle succeeded lately) instead of "
                                        "/healthz (the process answers)")] = False,
    timeout: Annotated[float, typer.Option(min=0.1, help="seconds to wait for the answer")] = 4.0,
) -> None:
    """Exit 0 when the daemon of this config answers on server.host:server.port, 1 otherwise: the
    container's HEALTHCHECK, so the port is the config's and never a second copy of it."""
    import urllib.error
    import urllib.request

    try:
        cfg = _load(config)
    except typer.Exit as exc:
        raise typer.Exit(1) from exc  # Docker reserves exit code 2
    srv = cfg.server
    if srv.port is None:
        typer.echo(f"{config}: server.port is not set, so the daemon serves no health endpoint; set it "
                   "(e.g. 9464)", err=True)
        raise typer.Exit(1)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(srv.host, srv.host)
    url = f"http://{f'[{host}]' if ':' in host else host}:{srv.port}/{'readyz' if ready else 'healthz'}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            body = resp.read(200).decode(errors="replace").strip()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        typer.echo(f"{url}: {getattr(exc, 'code', '')} {reason}".replace(":  ", ": "), err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"{url}: {body}")


@app.command("test-notify")
def test_notify(
    config: ConfigOpt,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the sample as Slack and email would show it; "
                                                           "send nothing")] = False,
) -> None:
    """Send a sample notification to every configured channel."""
    logs.configure("info")
    from monitor.app.wiring import build_notifiers, load_templates
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
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8010,
    scenario: str = "drift",
    seed: int = 7,
    days: Annotated[int, typer.Option(min=1)] = 14,
    api_key: Annotated[str, typer.Option(envvar="LOCAL_POSTHOG_API_KEY")] = "phx_local_key",
    query_log: Annotated[Path | None, typer.Option(help="one JSON line per request")] = None,
    project_id: Annotated[int, typer.Option(min=1)] = 1,
    scale: Annotated[float, typer.Option(min=0.001)] = 1.0,
    timezone: Annotated[str, typer.Option(help="the project's timezone (IANA name): HogQL renders and reads "
                                               "datetimes in it, as PostHog does")] = "UTC",
    release: Annotated[str, typer.Option(help="'current', or 'old': only older self-hosted releases' "
                                              "HogQL functions")] = "current",
    rate_limits: Annotated[str, typer.Option(help="'off', 'default' (240/min and 2,400/h per key) or "
                                                  "'legacy' (120/h)")] = "off",
    evaluations: Annotated[bool | None, typer.Option(
        "--evaluations/--no-evaluations",
        help="$ai_evaluation events and daily evaluation-level clustering runs (default: on in scenarios with "
             "evaluation changes, e.g. drift)")] = None,
    item_overlap: Annotated[float | None, typer.Option(
        min=0.0, max=1.0, help="fraction of each run's items taken from the previous run of its job (0: none, "
        "as for a busy team; default: what uniform sampling gives)")] = None,
) -> None:
    """Serve a PostHog-compatible API on real ClickHouse, loaded with generated LLM traffic and runs."""
    logs.configure("info")
    from monitor.local.posthog.run import serve_forever

    if release not in ("current", "old") or rate_limits not in ("off", "default", "legacy"):
        raise typer.BadParameter("--release is current|old; --rate-limits is off|default|legacy")
    try:
        serve_forever(host=host, port=port, scenario=scenario, seed=seed, days=days, api_key=api_key,
                      query_log=query_log, project_id=project_id, scale=scale, timezone=timezone,
                      release=release, rate_limits=rate_limits, evaluations=evaluations,  # type: ignore[arg-type]
                      item_overlap=item_overlap)
    except ValueError as exc:  # an unknown scenario or timezone, say: raised before anything is served
        typer.echo(f"cluster-monitor local-posthog: {exc}", err=True)
        raise typer.Exit(2) from exc


@app.command()
def demo(
    seconds: Annotated[float, typer.Option(
        "--for", min=0, help="stop after this many seconds (0: until Ctrl-C)")] = 75.0,
    step: Annotated[float, typer.Option(min=0.01, help="seconds of wall time per simulated day")] = 3.0,
) -> None:
    """Everything local: PostHog-compatible server with drifting runs, Slack endpoint, SMTP server, daemon."""
    logs.configure("warning")
    from monitor.local.demo import run_demo

    raise typer.Exit(run_demo(seconds=seconds, step=step))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
