"""Mini-batch index samplers for one model or a population of K models.

Batch sizes: None or 0 = full batch (batch gradient descent: one batch of every index, in
order), 1 = stochastic (one row per step), any B = mini-batches of B rows. The last partial
batch of an epoch is kept (drop_last=False) or dropped (drop_last=True).

Shared mode (member_seeds=None) yields index tensors of shape [B], one permutation per epoch
for all members. Per-member mode (member_seeds = K seeds) yields [K, B]: member k draws its
own permutation, so X[idx] is a [K, B, ...] batch.

Determinism and resumption: the permutation of epoch e is torch.randperm(n) drawn from a
fresh torch.Generator seeded with epoch_seed(seed, e), so the batch order is a pure function of
(seed, epoch) and does not depend on any global RNG or on the device. The sampler's only state
is (epoch, position); `state_dict()` returns it as tensors and `load_state_dict` restores it, and
iteration then continues with the next batch exactly as an uninterrupted run would.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from optimkit.data.errors import DataError


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit generator seed for (seed, epoch), mixed by numpy's SeedSequence (so nearby
    seeds and epochs give unrelated streams)."""
    state = np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1, dtype=np.uint64)
    return int(state[0]) & (2**63 - 1)


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise DataError(f"{name} must be an int >= {minimum}; got {value!r}")
    return int(value)


class BatchSampler:
    """Yields the index batches of one epoch per iteration; see the module docstring.

    n: rows to sample from. batch_size: None/0 (full batch), or B >= 1.
    seed: the shared permutation's seed. member_seeds: K seeds (a sequence or a 1-D integer
    tensor) for per-member permutations, or None for shared batches.
    shuffle: False keeps the natural order every epoch. device: where the indices are put.
    """

    def __init__(
        self,
        n: int,
        batch_size: int | None = None,
        *,
        seed: int = 0,
        member_seeds: Sequence[int] | torch.Tensor | None = None,
        shuffle: bool = True,
        drop_last: bool = False,
        device: str | torch.device = "cpu",
    ) -> None:
        self.n = _check_int("n", n, 1)
        self.batch_size = (
            None if batch_size in (None, 0) else _check_int("batch_size", batch_size, 0)
        )
        self.seed = _check_int("seed", seed, 0)
        if member_seeds is not None:
            seeds = (
                member_seeds.tolist() if isinstance(member_seeds, torch.Tensor) else member_seeds
            )
            seeds = list(seeds)
            if not seeds:
                raise DataError("member_seeds must hold one seed per member (K >= 1); got none")
            member_seeds = [_check_int("member_seeds[k]", s, 0) for s in seeds]
        self.member_seeds: list[int] | None = member_seeds
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.device = torch.device(device)
        if self.drop_last and self.batch_size is not None and self.batch_size > self.n:
            raise DataError(
                f"batch_size={self.batch_size} > n={self.n} with drop_last=True leaves no batch"
            )
        self.epoch = 0
        self.position = 0

    # ------------------------------------------------------------------ shape of an epoch
    @property
    def full_batch(self) -> bool:
        return self.batch_size is None

    @property
    def population(self) -> int | None:
        """K in per-member mode, None in shared mode."""
        return None if self.member_seeds is None else len(self.member_seeds)

    @property
    def step_size(self) -> int:
        """Rows per (full) batch."""
        return self.n if self.batch_size is None else min(self.batch_size, self.n)

    @property
    def num_batches(self) -> int:
        """Batches per epoch."""
        if self.batch_size is None:
            return 1
        return self.n // self.step_size if self.drop_last else math.ceil(self.n / self.step_size)

    def __len__(self) -> int:
        return self.num_batches

    # ------------------------------------------------------------------ order
    def generator(self, epoch: int, member: int | None = None) -> torch.Generator:
        """The CPU generator that draws epoch `epoch`'s permutation (of `member`, if given)."""
        seed = self.seed if member is None else self.member_seeds[member]  # type: ignore[index]
        return torch.Generator().manual_seed(epoch_seed(seed, epoch))

    def permutation(self, epoch: int) -> torch.Tensor:
        """The order of rows in epoch `epoch`: [n], or [K, n] per member."""
        ordered = self.full_batch or not self.shuffle
        if self.member_seeds is None:
            perm = (
                torch.arange(self.n)
                if ordered
                else torch.randperm(self.n, generator=self.generator(epoch))
            )
        elif ordered:
            perm = torch.arange(self.n).expand(len(self.member_seeds), self.n)
        else:
            perm = torch.stack(
                [
                    torch.randperm(self.n, generator=self.generator(epoch, k))
                    for k in range(len(self.member_seeds))
                ]
            )
        return perm.to(self.device)

    def batches(self, epoch: int, start: int = 0) -> Iterator[torch.Tensor]:
        """Batches start, start+1, ... of epoch `epoch` (does not touch the sampler state)."""
        perm = self.permutation(epoch)
        size = self.step_size
        for b in range(start, self.num_batches):
            yield perm[..., b * size : (b + 1) * size]

    def __iter__(self) -> Iterator[torch.Tensor]:
        """The rest of the current epoch; afterwards the sampler points at the next epoch."""
        if self.position >= self.num_batches:
            self.epoch, self.position = self.epoch + 1, 0
        epoch, start = self.epoch, self.position
        for b, idx in enumerate(self.batches(epoch, start), start=start):
            self.position = b + 1
            yield idx
        self.epoch, self.position = epoch + 1, 0

    # ------------------------------------------------------------------ member slots
    def reset_members(self, mask: torch.Tensor) -> None:
        """Nothing to reset: member k's order is a pure function of (its seed, the epoch);
        a new trial in slot k sets its seed with `set_member_seed`."""

    def copy_member(self, src: int, dst: int) -> None:
        """Member dst draws member src's batches from the next epoch on (per-member mode;
        shared batches are the same for every member already)."""
        if self.member_seeds is not None:
            self.member_seeds[dst] = self.member_seeds[src]

    def set_member_seed(self, k: int, seed: int) -> None:
        """Member k's batch seed (per-member mode; nothing in shared mode)."""
        if self.member_seeds is not None:
            self.member_seeds[k] = _check_int("seed", seed, 0)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Position (epoch, next batch) and configuration, as tensors."""
        return {
            "epoch": torch.tensor(self.epoch, dtype=torch.int64),
            "position": torch.tensor(self.position, dtype=torch.int64),
            "seed": torch.tensor(self.seed, dtype=torch.int64),
            "member_seeds": torch.tensor(self.member_seeds or [], dtype=torch.int64),
            "n": torch.tensor(self.n, dtype=torch.int64),
            "batch_size": torch.tensor(self.batch_size or 0, dtype=torch.int64),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Resume at the saved position; the configuration must match the saved one."""
        mine = self.state_dict()
        saved = torch.as_tensor(state["member_seeds"], dtype=torch.int64)
        adopt = self.member_seeds is not None and saved.shape == mine["member_seeds"].shape
        if adopt:  # member seeds are state: slots change them (copy_member, set_member_seed)
            mine["member_seeds"] = saved
        for key in ("seed", "member_seeds", "n", "batch_size"):
            if not torch.equal(torch.as_tensor(state[key], dtype=torch.int64), mine[key]):
                raise DataError(
                    f"sampler state has {key}={torch.as_tensor(state[key]).tolist()}, but this "
                    f"sampler has {mine[key].tolist()}"
                )
        if adopt:
            self.member_seeds = [int(s) for s in saved.tolist()]
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])

    def __repr__(self) -> str:
        return (
            f"BatchSampler(n={self.n}, batch_size={self.batch_size}, seed={self.seed}, "
            f"population={self.population}, shuffle={self.shuffle}, drop_last={self.drop_last})"
        )
