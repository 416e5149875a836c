"""`./dev bench NAME [args]` runs bench/NAME.py (its main()); `./dev bench` lists them."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main() -> int:
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))
    if len(sys.argv) < 2 or sys.argv[1] not in names:
        print("usage: ./dev bench NAME [args]   NAME: " + ", ".join(names))
        return 2
    mod = importlib.import_module(f"bench.{sys.argv[1]}")
    sys.argv = [f"bench.{sys.argv[1]}", *sys.argv[2:]]
    return int(mod.main() or 0)


if __name__ == "__main__":
    raise SystemExit(main())
