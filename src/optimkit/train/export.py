"""Export one member as a plain nn.Module state_dict plus its configuration; load it back.

A folder holds ``model.pt`` (the state_dict, the model spec, the task, the class labels, the
fitted preprocessor and target scaling) and ``model.json`` (the same spec and the member's
hyperparameters, human-readable). `load_model` rebuilds the module and `predict` maps raw
feature rows through the same preprocessing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from optimkit.data import Dataset
from optimkit.models import build_model
from optimkit.outputs import atomic_save, atomic_write


def export_member(trainer: Any, k: int, folder: str | os.PathLike) -> Path:
    """Write member k of a fitted `PopulationTrainer` (its kept weights) to `folder`."""
    return export_module(
        trainer.population.member(k), trainer.population.member_spec(k), trainer.dataset,
        folder, hyperparameters=trainer.members[k], optimizer=trainer.config.optimizer,
    )  # fmt: skip


def export_module(
    module: nn.Module,
    spec: Any,
    dataset: Dataset,
    folder: str | os.PathLike,
    *,
    hyperparameters: dict[str, Any],
    optimizer: str,
) -> Path:
    """Write a plain module, the spec that rebuilds it and the dataset's preprocessing."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not isinstance(spec.model, str):
        raise ValueError("model: only models given by name or import path can be exported")
    info = {
        "model": spec.model,
        "options": _jsonable(dict(spec.options)),
        "n_features": spec.n_features,
        "n_outputs": spec.n_outputs,
        "task": dataset.task,
        "dataset": dataset.name,
        "classes": None if dataset.classes is None else [_plain(c) for c in dataset.classes],
        "feature_names": list(dataset.feature_names),
        "hyperparameters": _jsonable(hyperparameters),
        "optimizer": optimizer,
    }
    payload = {
        "info": info,
        "state_dict": module.state_dict(),
        "preprocessor": dataset.preprocessor,
        "target_mean": dataset.target_mean,
        "target_scale": dataset.target_scale,
        "metadata": dataset.metadata,
    }
    atomic_save(folder / "model.pt", lambda path: torch.save(payload, path))
    atomic_write(folder / "model.json", json.dumps(info, indent=2))
    return folder


@dataclass
class ExportedModel:
    """A loaded export: the plain module and what is needed to predict on raw rows."""

    module: nn.Module
    info: dict[str, Any]
    preprocessor: Any
    target_mean: float
    target_scale: float

    def inputs(self, X: pd.DataFrame | np.ndarray) -> torch.Tensor:
        dtype = next(self.module.parameters()).dtype
        if self.preprocessor is None:
            return torch.as_tensor(np.asarray(X), dtype=dtype)
        return torch.as_tensor(self.preprocessor.transform(X), dtype=dtype)

    def scores(self, X: pd.DataFrame | np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return self.module.eval()(self.inputs(X))

    def predict(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Class labels (classification) or values in the target's units (regression)."""
        out = self.scores(X)
        if self.info["task"] == "classification":
            idx = (out[:, 0] > 0).long() if out.shape[1] == 1 else out.argmax(1)
            return np.asarray(self.info["classes"], dtype=object)[idx.numpy()]
        return (out[:, 0] * self.target_scale + self.target_mean).numpy()

    def predict_proba(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        if self.info["task"] != "classification":
            raise ValueError("predict_proba: only for classification models")
        out = self.scores(X)
        if out.shape[1] == 1:
            p = torch.sigmoid(out[:, 0])
            return torch.stack([1 - p, p], dim=1).numpy()
        return torch.softmax(out, dim=1).numpy()


def load_model(folder: str | os.PathLike) -> ExportedModel:
    """Load an export written by `export_member`."""
    path = Path(folder) / "model.pt"
    if not path.is_file():
        raise ValueError(f"model: no exported model at {str(path)!r}")
    payload = torch.load(path, map_location="cpu", weights_only=False)
    info = payload["info"]
    module = build_model(info["model"], info["n_features"], info["n_outputs"], **info["options"])
    dtype = next(iter(payload["state_dict"].values())).dtype
    module = module.to(dtype)
    module.load_state_dict(payload["state_dict"])
    return ExportedModel(module.eval(), info, payload["preprocessor"], payload["target_mean"],
                         payload["target_scale"])  # fmt: skip


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return _plain(value)
