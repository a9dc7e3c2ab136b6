"""report.html in a real browser: headless Chromium (Debian's `chromium`) over the DevTools
protocol on a pipe (``--remote-debugging-pipe``, no extra Python package).

The page must load with no console errors or warnings, no uncaught exceptions, no request
that leaves the machine, and show the verdict, the leaderboard rows and plotly's rendered
traces (SVG paths) for the curves, the lr sensitivity and the importances.
"""

from __future__ import annotations

import contextlib
import fcntl
import html
import json
import os
import select
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from optimkit.report import verdict, write_report
from optimkit.report.summary import best_trials, importance_matrix, lr_points
from optimkit.report.synthetic import synthetic_result

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
]
LOCAL_SCHEMES = ("file:", "data:", "about:", "blob:")


def _chromium() -> str | None:
    for candidate in (os.environ.get("OPTIMKIT_CHROMIUM"), "/usr/bin/chromium"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium")


CHROMIUM = _chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is missing: `apt-get install chromium` (`make setup` installs it)",
)


def _high_fd(fd: int) -> int:
    """Move a pipe end above fd 4, so posix_spawn's dup2 onto 3/4 never aliases it."""
    if fd > 4:
        return fd
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 5)
    os.close(fd)
    return new


class DevTools:
    """A minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe``: chromium
    reads NUL-terminated JSON commands on fd 3 and writes responses and events on fd 4."""

    def __init__(self, executable: str, profile: Path, log: Path) -> None:
        cmd_r, cmd_w = map(_high_fd, os.pipe())
        res_r, res_w = map(_high_fd, os.pipe())
        log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        actions = [
            (os.POSIX_SPAWN_DUP2, cmd_r, 3),
            (os.POSIX_SPAWN_DUP2, res_w, 4),
            (os.POSIX_SPAWN_DUP2, log_fd, 1),
            (os.POSIX_SPAWN_DUP2, log_fd, 2),
        ]
        argv = [executable, *FLAGS, f"--user-data-dir={profile}", "about:blank"]
        try:
            self.pid = os.posix_spawn(
                executable, argv, os.environ, file_actions=actions, setpgroup=0
            )
        finally:
            for fd in (cmd_r, res_w, log_fd):
                os.close(fd)
        self.wfd, self.rfd = cmd_w, res_r
        self.buf = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self.wfd, data) :]

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.rfd], [], [], max(left, 0))
            if not ready:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self.rfd, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self.buf += chunk
        message, self.buf = self.buf.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 60) -> dict[str, Any]:  # fmt: skip
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self._send(message)
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._receive(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.call("Browser.close", timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if os.waitpid(self.pid, os.WNOHANG)[0]:
                break
            time.sleep(0.05)
        else:
            os.killpg(self.pid, signal.SIGKILL)  # our own process group, started above
            os.waitpid(self.pid, 0)
        os.close(self.wfd)
        os.close(self.rfd)


# Waits until every plot has drawn, then reports what a reader would see.
PAGE_FACTS = r"""
new Promise((resolve) => {
  const ids = ["curves", "lr-sensitivity", "importance"];
  const drawn = () => ids.every((id) => document.querySelector(`#${id} .main-svg`));
  const t0 = Date.now();
  const facts = () => {
    const q = (sel) => Array.from(document.querySelectorAll(sel));
    const paths = (sel) => q(sel).filter((p) => (p.getAttribute("d") || "").length > 8).length;
    const box = (id) => document.getElementById(id)?.getBoundingClientRect().height || 0;
    return {
      drawn: drawn(),
      verdict: document.getElementById("verdict")?.textContent,
      rows: q("#leaderboard tbody tr").map((tr) =>
        [tr.cells[0].textContent.trim(), tr.cells[1].textContent.trim()]),
      curveLegend: q("#curves .legendtext").map((e) => e.textContent),
      curveLines: q("#curves .scatterlayer .trace").filter((t) => !t.querySelector(".js-fill")
        && (t.querySelector(".js-line")?.getAttribute("d") || "").length > 8).length,
      curveBands: paths("#curves .scatterlayer .trace .js-fill"),
      lrPoints: q("#lr-sensitivity .scatterlayer .trace .points path").length,
      lrTitles: q("#lr-sensitivity .annotation-text").map((e) => e.textContent),
      importanceBars: q("#importance .barlayer .trace path").filter((p) => {
        const m = (p.getAttribute("d") || "").match(/^M([-\d.]+),[-\d.]+V[-\d.]+H([-\d.]+)/);
        return m && Math.abs(m[2] - m[1]) > 0.5;  // a bar with a visible width
      }).length,
      importanceLegend: q("#importance .legendtext").map((e) => e.textContent),
      heights: Object.fromEntries(["leaderboard", ...ids].map((id) => [id, box(id)])),
    };
  };
  (function poll() {
    if (drawn() || Date.now() - t0 > 15000) setTimeout(() => resolve(facts()), 100);
    else setTimeout(poll, 50);
  })();
})
"""


def open_page(path: Path, tmp_path: Path, expression: str = PAGE_FACTS) -> tuple[Any, dict]:
    """Load `path` in headless chromium; return the value of `expression` and the problems:
    console errors/warnings, exceptions, browser log errors, non-local requests."""
    assert CHROMIUM is not None
    browser = DevTools(CHROMIUM, tmp_path / "profile", tmp_path / "chromium.log")
    try:
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.call(f"{domain}.enable", session=session)
        metrics = {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}
        browser.call("Emulation.setDeviceMetricsOverride", metrics, session=session)
        browser.call("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
        browser.wait_event("Page.loadEventFired")
        value = browser.call(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            session=session,
        )["result"].get("value")
    finally:
        browser.close()
    problems: dict[str, list[str]] = {"console": [], "exceptions": [], "log": [], "requests": []}
    for event in browser.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params["type"] in (
            "error",
            "warning",
            "assert",
        ):
            args = " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            problems["console"].append(f"{params['type']}: {args}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            problems["exceptions"].append(details.get("exception", {}).get("description", ""))
        elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
            problems["log"].append(params["entry"]["text"])
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if not url.startswith(LOCAL_SCHEMES):
                problems["requests"].append(url)
    return value, problems


# The last name has markup in it: it must show as typed, never as HTML.
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adam <b>w</b> & co")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    result = synthetic_result(optimizers=OPTIMIZERS, random_state=3)
    out = tmp_path_factory.mktemp("report")
    return result, write_report(result, out, figures=False).html


@needs_chromium
def test_report_loads_cleanly_and_shows_everything(report: tuple[Any, Path], tmp_path: Path):
    result, page = report
    assert html.escape(OPTIMIZERS[-1]) in page.read_text()
    facts, problems = open_page(page, tmp_path)
    assert problems == {"console": [], "exceptions": [], "log": [], "requests": []}
    assert facts["drawn"], "plotly did not draw all three plots"
    assert facts["verdict"] == verdict(result)
    board = result.leaderboard
    assert facts["rows"] == [
        [str(r), o] for r, o in zip(board["rank"], board["optimizer"], strict=True)
    ]
    names = result.optimizers
    # Curves: a legend entry, a mean line and a seed band per optimizer in each of 2 panels.
    assert facts["curveLegend"] == names
    assert facts["curveLines"] == 2 * len(names)
    assert facts["curveBands"] == 2 * len(names)
    # lr sensitivity: one panel per optimizer showing every plotted trial (own in color,
    # others in gray), plus one star per optimizer's best trial.
    points, _ = lr_points(result)
    shown = sum(len(v["complete"]) + len(v["pruned"]) for v in points.values())
    stars = len(best_trials(result))
    assert facts["lrPoints"] == len(names) * shown + stars
    assert [t for t in facts["lrTitles"] if t in names] == names
    # Importance: one visible bar segment per nonzero importance, a legend entry per param.
    frame, _ = importance_matrix(result)
    assert facts["importanceBars"] == int(np.count_nonzero(frame.to_numpy()))
    assert facts["importanceLegend"] == list(frame.columns)
    assert all(h > 150 for h in facts["heights"].values()), facts["heights"]


@needs_chromium
def test_harness_catches_errors_and_network_requests(tmp_path: Path):
    """The checks above can fail: a console error, an exception and a CDN script are seen."""
    page = tmp_path / "bad.html"
    page.write_text(
        "<!DOCTYPE html><html><head><script src='https://cdn.plot.invalid/plotly.js'></script>"
        "</head><body><h1 id='verdict'>x</h1><script>console.error('boom');"
        "undefinedFunction();</script></body></html>"
    )
    value, problems = open_page(page, tmp_path, "document.getElementById('verdict').textContent")
    assert value == "x"
    assert problems["console"] == ["error: boom"]
    assert len(problems["exceptions"]) == 1 and "undefinedFunction" in problems["exceptions"][0]
    assert problems["requests"] == ["https://cdn.plot.invalid/plotly.js"]


@needs_chromium
def test_report_of_a_real_compare_run(tmp_path: Path):
    """The report `optimkit compare` writes (real tuning, real seed re-runs) loads cleanly and
    shows its leaderboard and a curve per optimizer."""
    import pandas as pd
    from typer.testing import CliRunner

    from optimkit.cli import app

    out = tmp_path / "cmp"
    result = CliRunner().invoke(app, ["compare", "--data", "iris", "--model", "softmax",
                                      "--optimizers", "sgd,adagrad,adam", "--trials", "4",
                                      "--epochs", "3", "--seeds", "2", "--population", "4",
                                      "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    facts, problems = open_page(out / "report.html", tmp_path)
    assert problems == {"console": [], "exceptions": [], "log": [], "requests": []}
    assert facts["drawn"], "plotly did not draw all three plots"
    board = pd.read_csv(out / "leaderboard.csv")
    assert facts["rows"] == [[str(r), o] for r, o in zip(board["rank"], board["optimizer"],
                                                           strict=True)]  # fmt: skip
    assert sorted(facts["curveLegend"]) == ["adagrad", "adam", "sgd"]
    assert facts["curveLines"] == 2 * 3
