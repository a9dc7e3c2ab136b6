"""This machine's memory bandwidth, measured with torch: the floor of a streaming step.

Run: ``.venv/bin/python -m benchmarks.bandwidth [--mb 256] [--threads 1] [--repeats 9]``.

Two streams over float32 tensors of ``--mb`` MiB each (far larger than the last-level cache):

* **copy**: ``dst.copy_(src)``, counted as 2 x its size (read src, write dst: STREAM's "copy"
  convention). The CPU reads each destination line before overwriting it (write-allocate),
  uncounted, so this understates what the memory system delivers to in-place updates.
* **update**: ``dst.add_(src, alpha=0.5)``, counted as 3 x its size (read src, read and write
  dst). Every write lands on a line just read, as in an optimizer step (parameters and state
  are updated in place), so this is the rate a single-pass step can reach; `bench_optim` uses
  it as its floor and prints the copy rate next to it.

Each figure is the median over ``--repeats`` passes, after two warm-up passes that fault the
pages in, with this process's CPU time or wall time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from benchmarks.threads import pinned

CLOCKS: dict[str, Callable[[], float]] = {"cpu": time.process_time, "wall": time.perf_counter}


def _median_seconds(fn: Callable[[], object], repeats: int, clock: Callable[[], float]) -> float:
    fn()  # warm-up: fault the pages in
    fn()
    times = []
    for _ in range(max(1, repeats)):
        start = clock()
        fn()
        times.append(clock() - start)
    return max(statistics.median(times), 1e-9)


def measure(
    nbytes: int = 256 << 20, repeats: int = 9, clock: Callable[[], float] = time.perf_counter
) -> dict[str, float]:
    """Bytes per second of the ``copy`` and ``update`` streams on tensors of `nbytes` each."""
    n = max(1, nbytes // 4)
    src, dst = torch.randn(n), torch.randn(n)
    size = 4 * n
    copy = 2 * size / _median_seconds(lambda: dst.copy_(src), repeats, clock)
    update = 3 * size / _median_seconds(lambda: dst.add_(src, alpha=0.5), repeats, clock)
    return {"copy": copy, "update": update}


def describe(bw: dict[str, float]) -> str:
    return (
        f"copy {bw['copy'] / 1e9:.1f} GB/s (copy_: read + write), update "
        f"{bw['update'] / 1e9:.1f} GB/s (in-place add_: 2 reads + 1 write)"
    )


def main(mb: int = 256, threads: int = 1, repeats: int = 9, clock: str = "cpu") -> None:
    with pinned(threads):
        bw = measure(mb << 20, repeats, CLOCKS[clock])
    print(f"{describe(bw)}; {mb} MiB float32, {threads} thread(s), median of {repeats}, "
          f"{clock} clock")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu")
    args = parser.parse_args()
    main(args.mb, args.threads, args.repeats, args.clock)
