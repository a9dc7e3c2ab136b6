"""Thread pinning shared by the benchmarks."""

from __future__ import annotations

import torch
from threadpoolctl import threadpool_limits


class pinned:
    """Pin torch's intra-op pool and the BLAS/OpenMP pools to `threads` inside the block."""

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def __enter__(self) -> None:
        self.previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        self.limits = threadpool_limits(limits=self.threads)
        self.limits.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.limits.__exit__(*exc)
        torch.set_num_threads(self.previous)
