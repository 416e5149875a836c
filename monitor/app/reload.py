"""Config reload: notice a change (SIGHUP or a new mtime), decide what of it applies, and carry the
projects over to the new config.

An invalid edit is reported and the last good config stays in force; a project whose state location is
unchanged keeps its leader lock, so a reload never hands leadership to a standby by accident. Every section
applies at the next cycle (projects are reopened on the new config: posthog, watch, rules, channels,
delivery, retention...), `schedule` and `server` by the daemon (new trigger, HTTP port reopened), except
what only a restart can change (`plan_reload`): that is logged as `config_reload_needs_restart` and the
old value stays in force, so the daemon never runs half on one state and half on another.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from monitor.app.wiring import Project
from monitor.config import Config, ConfigError, load_config
from monitor.store import Leadership

log = structlog.get_logger()


class ConfigWatch:
    """When to reload: a SIGHUP asked for it, or the file's mtime moved since the last look."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.requested = threading.Event()
        self._mtime = self._stat()

    def _stat(self) -> float | None:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return None

    def changed_config(self, current: Config) -> Config | None:
        """The new config when the file changed to a valid config different from `current`; else None."""
        mtime = self._stat()
        if not self.requested.is_set() and mtime == self._mtime:
            return None
        self.requested.clear()
        self._mtime = mtime
        try:
            cfg = load_config(self.path)
        except ConfigError as exc:
            log.error("config_reload_rejected", path=str(self.path), problems=exc.problems)
            return None
        return None if cfg == current else cfg


@dataclass(frozen=True)
class ReloadPlan:
    """What a reload does. `cfg` is the config to run with: the new one, with what needs a restart kept at
    its running value; `needs_restart` names each such key and why."""

    cfg: Config
    schedule: bool  # the cycle's trigger or misfire grace changed: reschedule the job
    server: bool  # the HTTP port's settings changed: reopen it
    needs_restart: tuple[tuple[str, str], ...]

    def changed(self, old: Config) -> list[str]:
        """The top-level sections that this reload changes."""
        return [name for name in type(old).model_fields if getattr(old, name) != getattr(self.cfg, name)]


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    """Decide a reload from the running and the edited config (pure)."""
    needs: list[tuple[str, str]] = []
    state = new.state
    if not old.state.same_place(new.state):
        # Moving the state mid-run would leave cursors, alert states and the outbox behind: a restart
        # opens the new state from the start (and takes its own leader lock there).
        needs.append(("state", f"the state moves from {old.state.describe()} to {new.state.describe()}"))
        state = state.model_copy(update={"path": old.state.path, "url": old.state.url,
                                         "pg_schema": old.state.pg_schema})
    if old.state.leader_lease_seconds != new.state.leader_lease_seconds:
        needs.append(("state.leader_lease_seconds",
                      "the lease is recorded when the leader lock is taken, and standbys judge the leader by it"))
        state = state.model_copy(update={"leader_lease_seconds": old.state.leader_lease_seconds})
    cfg = new if state == new.state else new.model_copy(update={"state": state})
    return ReloadPlan(cfg=cfg, schedule=old.schedule != cfg.schedule, server=old.server != cfg.server,
                      needs_restart=tuple(needs))


def reconcile_projects(projects: list[Project], cfg: Config,
                       open_project: Callable[[Config, Leadership | None], Project]) -> list[Project]:
    """The projects of `cfg`, each reopened on its new config; removed ones closed and their locks released."""
    old = {p.key: p for p in projects}
    fresh: list[Project] = []
    for c in cfg.per_project():
        prev = old.pop((c.posthog.host, c.posthog.project_id), None)
        keep_lock = prev is not None and prev.cfg.state.same_place(c.state)
        if prev is not None:
            prev.close()
            if not keep_lock:
                prev.leader.release()
        project = open_project(c, prev.leader if prev is not None and keep_lock else None)
        if prev is not None and c.watch != prev.cfg.watch:
            # Newly watched jobs or levels have runs behind the cursor: look back over the whole window
            # once (runs already processed are skipped by id), so nothing of theirs is skipped.
            project.monitor.rewind_cursor()
        fresh.append(project)
    for gone in old.values():  # projects removed from the config
        gone.close()
        gone.leader.release()
    return fresh
