"""Per-member, per-epoch training history, exportable as a DataFrame, CSV or JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor


class History:
    """Epoch records of K members: train loss, val loss and metrics, lr, status, time.

    Records of members that had stopped or failed before an epoch are kept out, so each
    member's curve ends where it stopped training.

    The records are a log per slot (`to_frame`, `curve`). Member slots: `reset_members` and
    `copy_member` change no record; they are logged as events (``events``: ("reset", k, k,
    at) or ("copy", src, dst, at), `at` = the number of records before it), so `path(k)`
    follows member k's state back through the copies it came from (the path that led to its
    weights: after a copy i -> j, ``path(j)`` is ``path(i)``).
    """

    def __init__(self, members: int) -> None:
        self.members = members
        self.records: list[dict[str, Any]] = []
        self.events: list[tuple[str, int, int, int]] = []

    def append(
        self,
        *,
        epoch: Tensor,
        trained: Tensor,
        train_loss: Tensor,
        val: dict[str, Tensor],
        lr: Tensor,
        status: Tensor,
        seconds: float,
    ) -> None:
        """One epoch: each member's own epoch number [K] and whether it trained [K]."""
        record: dict[str, Any] = {
            "epoch": epoch.detach().cpu().clone(),
            "train_loss": train_loss.detach().cpu().to(torch.float64),
            **{f"val_{n}": v.detach().cpu().to(torch.float64) for n, v in val.items()},
            "lr": lr.detach().cpu(),
            "status": status.detach().cpu().clone(),
            "trained": trained.detach().cpu().clone(),
            "seconds": seconds,
        }
        self.records.append(record)

    def to_frame(self) -> pd.DataFrame:
        """Long format: one row per (member, epoch) that the member trained."""
        from optimkit.train.record import STATUS_NAMES

        rows = []
        for rec in self.records:
            for k in range(self.members):
                if not bool(rec["trained"][k]):
                    continue
                row: dict[str, Any] = {"member": k, "epoch": int(rec["epoch"][k])}
                for key, value in rec.items():
                    if key in ("epoch", "trained", "seconds"):
                        continue
                    if key == "status":
                        row[key] = STATUS_NAMES[int(value[k])]
                    else:
                        row[key] = float(value[k])
                row["seconds"] = rec["seconds"]
                rows.append(row)
        return pd.DataFrame(rows)

    def to_csv(self, path: str | Path) -> None:
        self.to_frame().to_csv(path, index=False)

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_frame().to_dict(orient="records"), indent=1))

    def curve(self, key: str) -> Tensor:
        """[epochs, K] values of one recorded quantity (NaN where a member did not train)."""
        values = torch.stack([r[key] for r in self.records])
        trained = torch.stack([r["trained"] for r in self.records])
        return torch.where(trained, values.to(torch.float64), torch.nan)

    # ----------------------------------------------------------------- member slots
    def reset_members(self, mask: Tensor) -> None:
        """Log a fresh start of the masked members (their `path` begins here)."""
        at = len(self.records)
        self.events += [("reset", k, k, at) for k in torch.nonzero(mask).flatten().tolist()]

    def copy_member(self, src: int, dst: int) -> None:
        """Log that member dst took member src's state (its `path` continues src's)."""
        self.events.append(("copy", int(src), int(dst), len(self.records)))

    def ancestors(self, k: int) -> list[int | None]:
        """For each record, the slot that held member k's state then (None before a reset)."""
        owner: int | None = k
        pending = sorted(self.events, key=lambda e: e[3])
        out: list[int | None] = [None] * len(self.records)
        for r in range(len(self.records) - 1, -1, -1):
            while pending and pending[-1][3] > r:
                kind, src, dst, _ = pending.pop()
                if owner == dst:
                    owner = src if kind == "copy" else None
            out[r] = owner
        return out

    def path(self, key: str, k: int) -> Tensor:
        """[epochs] values of one recorded quantity along member k's `ancestors` (NaN where
        no ancestor trained)."""
        values = torch.full((len(self.records),), torch.nan, dtype=torch.float64)
        for r, (rec, slot) in enumerate(zip(self.records, self.ancestors(k), strict=True)):
            if slot is not None and bool(rec["trained"][slot]):
                values[r] = float(rec[key][slot])
        return values

    def state_dict(self) -> dict[str, Any]:
        return {"members": self.members, "records": self.records, "events": list(self.events)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.members, self.records = state["members"], list(state["records"])
        self.events = [tuple(e) for e in state.get("events", [])]  # type: ignore[misc]
