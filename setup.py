"""One build step pyproject.toml cannot declare: ship the top-level templates/ inside the package.

People edit templates/ at the top of the repository; a wheel (and the wheel pip builds from the sdist,
which carries templates/ through MANIFEST.in) gets them as package data in monitor/templates/, where
monitor.notify.render looks first. An editable install gets nothing copied: render falls back to the
checkout's templates/. No second copy is committed.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

TEMPLATES = Path(__file__).resolve().parent / "templates"


class BuildPyWithTemplates(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        if not TEMPLATES.is_dir():
            raise FileNotFoundError(f"{TEMPLATES}: the templates to ship are missing (is this a complete sdist?)")
        for src in sorted(TEMPLATES.rglob("*.j2")):
            dest = Path(self.build_lib, "monitor", "templates", src.relative_to(TEMPLATES))
            self.mkpath(str(dest.parent))
            self.copy_file(str(src), str(dest))


setup(cmdclass={"build_py": BuildPyWithTemplates})
