"""Two per-member parts of a population run: each member's status and counters, and the
weights it keeps (best on validation, and its last while it ran). Both implement the
member-slot protocol (`optimkit.train.slots`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from optimkit.models import Population
from optimkit.train.slots import copy_row_, where_members

#: member status codes (a [K] int8 tensor)
RUNNING, FINISHED, STOPPED, FAILED = 0, 1, 2, 3
STATUS_NAMES = ("running", "finished", "stopped", "failed")


class MemberRecord:
    """status [K] (int8 codes), failure (a reason per member, "" if none) and epochs [K]
    (epochs each member has trained; a fresh member starts at 0)."""

    def __init__(self, members: int, device: torch.device) -> None:
        self.status = torch.zeros(members, dtype=torch.int8, device=device)
        self.failure: list[str] = [""] * members
        self.epochs = torch.zeros(members, dtype=torch.int64, device=device)

    def set_status(self, mask: Tensor, code: int) -> None:
        self.status = torch.where(mask, code, self.status).to(torch.int8)

    @property
    def running(self) -> Tensor:
        return self.status == RUNNING

    def reset_members(self, mask: Tensor) -> None:
        self.set_status(mask, RUNNING)
        self.epochs = torch.where(mask, 0, self.epochs)
        for k in torch.nonzero(mask).flatten().tolist():
            self.failure[k] = ""

    def copy_member(self, src: int, dst: int) -> None:
        copy_row_(self.status, src, dst)
        copy_row_(self.epochs, src, dst)
        self.failure[dst] = self.failure[src]

    def state_dict(self) -> dict[str, Any]:
        return {"status": self.status.clone(), "failure": list(self.failure),
                "member_epochs": self.epochs.clone()}  # fmt: skip

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.status = state["status"].clone().to(self.status.device)
        self.failure = list(state["failure"])
        self.epochs = state["member_epochs"].clone().to(self.epochs.device)


class KeptWeights:
    """Per member: the parameters and buffers of its best validation epoch, and its last
    parameters while it was running (a stopped or failed member's stay frozen)."""

    def __init__(self, population: Population) -> None:
        self.population = population
        self.best_params = {n: p.detach().clone() for n, p in population.params.items()}
        self.best_buffers = {n: b.clone() for n, b in population.buffers.items()}
        self.final_params = {n: p.detach().clone() for n, p in population.params.items()}

    def update(self, improved: Tensor, running: Tensor) -> None:
        """Keep the current weights as best where `improved`, as last where `running`."""
        for name, p in self.population.params.items():
            self.best_params[name] = where_members(improved, p.detach(), self.best_params[name])
            self.final_params[name] = where_members(running, p.detach(), self.final_params[name])
        for name, b in self.population.buffers.items():
            self.best_buffers[name] = where_members(improved, b, self.best_buffers[name])

    def restore(self, restore_best: bool, never: Tensor) -> None:
        """Put each member's kept weights in place: its best (`restore_best`) or its last;
        members that never improved (`never`) keep their last weights and buffers."""
        kept = self.best_params if restore_best else self.final_params
        with torch.no_grad():
            for name, p in self.population.params.items():
                p.copy_(where_members(never, self.final_params[name], kept[name]))
            if restore_best:
                for name, b in self.population.buffers.items():
                    b.copy_(where_members(never, b, self.best_buffers[name]))

    def member_state(self, k: int, best: bool) -> dict[str, Tensor]:
        """Member k's kept weights and buffers as a plain state_dict."""
        params = self.best_params if best else self.final_params
        buffers = self.best_buffers if best else self.population.buffers
        return {n: t[k] for n, t in (params | buffers).items()}

    def _tensors(self) -> list[Tensor]:
        return [*self.best_params.values(), *self.best_buffers.values(),
                *self.final_params.values()]  # fmt: skip

    def reset_members(self, mask: Tensor) -> None:
        """The masked members keep their current (fresh) weights as best and last."""
        self.update(mask, mask)

    def copy_member(self, src: int, dst: int) -> None:
        for t in self._tensors():
            copy_row_(t, src, dst)

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_params": {n: t.clone() for n, t in self.best_params.items()},
            "best_buffers": {n: t.clone() for n, t in self.best_buffers.items()},
            "final_params": {n: t.clone() for n, t in self.final_params.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best_params = {n: t.clone() for n, t in state["best_params"].items()}
        self.best_buffers = {n: t.clone() for n, t in state["best_buffers"].items()}
        self.final_params = {n: t.clone() for n, t in state["final_params"].items()}
