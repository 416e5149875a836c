"""Config reload: notice a change (SIGHUP or a new mtime), and carry the projects over to the new config.

An invalid edit is reported and the last good config stays in force; a project whose state location is
unchanged keeps its leader lock, so a reload never hands leadership to a standby by accident.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
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
