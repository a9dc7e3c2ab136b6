"""Build a tournament report from synthetic but realistic inputs, to look at the design.

    python examples/report_demo.py [OUT_DIR] [--screenshot PNG] [--seed N]

writes OUT_DIR/leaderboard.csv, OUT_DIR/report.html and OUT_DIR/figures/*.png (default
OUT_DIR: ./report-demo). With --screenshot, headless Chromium (Debian's `chromium`) renders
the page at 1280 px wide into PNG (the picture in the README, docs/report.png). The numbers
come from `optimkit.report.synthetic` and are not measurements: `optimkit compare` makes the
real thing.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from optimkit.report import write_report
from optimkit.report.synthetic import synthetic_result

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--hide-scrollbars",
    "--virtual-time-budget=5000",
]


def screenshot(html: Path, png: Path, width: int = 1280, height: int = 2400) -> None:
    """Render `html` in headless Chromium and save the top `height` pixels to `png`."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        sys.exit("screenshot: chromium is not installed (apt-get install chromium)")
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                f"--screenshot={png.resolve()}",
                html.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", nargs="?", default="report-demo", type=Path)
    parser.add_argument("--screenshot", type=Path, help="also save a PNG of the rendered page")
    parser.add_argument("--height", type=int, default=2400, help="screenshot height in pixels")
    parser.add_argument("--seed", type=int, default=1, help="random state of the synthetic data")
    args = parser.parse_args()
    result = synthetic_result(random_state=args.seed)
    paths = write_report(result, args.out_dir)
    print(f"{paths.html}\n{paths.leaderboard_csv}")
    for path in paths.figures.values():
        print(path)
    if args.screenshot:
        screenshot(paths.html, args.screenshot, height=args.height)
        print(args.screenshot)


if __name__ == "__main__":
    main()
