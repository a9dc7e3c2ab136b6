"""Run every benchmark: import each ``benchmarks/bench_*.py`` and call its ``main()``."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path


def main() -> None:
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]))
    for name in (n for n in names if n.startswith("bench_")):
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"=== benchmarks.{name} ===", flush=True)
        module.main()


if __name__ == "__main__":
    main()
