"""Run options shared by `optimkit train` (and later `tune`/`compare`), validated with pydantic.

Every command-line flag is also a key of the YAML config file given with ``-c``; flags given on
the command line override the file. Several comma-separated values of a per-member
hyperparameter (``--lr 1e-3,3e-3 --weight-decay 0,1e-4``) make a population: their product.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from optimkit.data import DataError

#: per-member hyperparameters (lists on the command line) -> optimizer argument name
MEMBER_KEYS = ("lr", "weight_decay", "momentum", "dampening", "alpha", "eps", "lr_decay",
               "clip_grad_norm", "clip_grad_value", "l1", "beta1", "beta2", "seed")  # fmt: skip

#: model options passed on when given
MODEL_KEYS = ("hidden", "activation", "init", "batch_norm", "dropout", "residual")


THREADS_HELP = (
    "CPU threads (default 1: small steps run fastest on one; 2+ pays off from "
    "about 64 MLP members, or for convolutional models)."
)
COMPILE_HELP = "Run the optimizer step through torch.compile (one fused loop; compiles once)."
AUTOCAST_HELP = "bfloat16 matrix products (mixed precision: faster on CPUs with AVX512-BF16)."


class UsageError(ValueError):
    """A bad flag, config key or file: printed without a traceback, exit code 2."""


def _floats(value: Any) -> Any:
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not parts:
            raise ValueError("expected one or more comma-separated numbers")
        return parts
    if isinstance(value, int | float):
        return [value]
    return value


class RunOptions(BaseModel):
    """Data, model and run options shared by train, tune and compare."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    data: str = "digits"
    target: str | None = None
    task: Literal["classification", "regression"] | None = None
    impute: Literal["mean", "median", "most_frequent"] | None = None
    val_fraction: float = Field(0.15, gt=0, lt=1)
    test_fraction: float = Field(0.15, gt=0, lt=1)
    pca: float | None = Field(None, gt=0)
    select_k: int | None = Field(None, ge=1)

    model: str = "mlp"
    hidden: list[int] | None = None
    activation: str | None = None
    init: str | None = None
    batch_norm: bool | None = None
    dropout: float | None = Field(None, ge=0, lt=1)
    residual: bool | None = None

    loss: str | None = None
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(64, ge=0)
    schedule: str | None = None
    patience: int | None = Field(None, ge=1)
    min_delta: float = Field(0.0, ge=0)
    device: Literal["cpu", "cuda"] = "cpu"
    threads: int = Field(1, ge=1)
    dtype: Literal["float32", "float64"] = "float32"
    compile: bool = False  # TrainConfig's opt-in speed paths: a torch.compile'd optimizer step
    autocast: bool = False  # and bfloat16 autocast
    out: Path | None = None
    overwrite: bool = False

    _widths = field_validator("hidden", mode="before")(_floats)

    def model_options(self) -> dict[str, Any]:
        opts = {k: getattr(self, k) for k in MODEL_KEYS if getattr(self, k) is not None}
        if "hidden" in opts:
            opts["hidden"] = tuple(opts["hidden"])
        return opts


class TrainOptions(RunOptions):
    """Options of `optimkit train` (see `optimkit train --help` for each)."""

    optimizer: str = "adam"
    lr: list[float] = [1e-3]
    weight_decay: list[float] | None = None
    momentum: list[float] | None = None
    dampening: list[float] | None = None
    alpha: list[float] | None = None
    eps: list[float] | None = None
    lr_decay: list[float] | None = None
    beta1: list[float] | None = None
    beta2: list[float] | None = None
    nesterov: bool | None = None
    amsgrad: bool | None = None
    centered: bool | None = None
    clip_grad_norm: list[float] | None = None
    clip_grad_value: list[float] | None = None
    l1: list[float] | None = None
    seed: list[int] = [0]
    per_member_batches: bool = False
    monitor: str = "val_loss"
    checkpoint_every: int | None = Field(None, ge=1)
    resume: bool = False

    _split = field_validator(
        "lr", "weight_decay", "momentum", "dampening", "alpha", "eps", "lr_decay", "beta1",
        "beta2", "clip_grad_norm", "clip_grad_value", "l1", "seed", mode="before",
    )(_floats)  # fmt: skip

    def members(self) -> list[dict[str, Any]]:
        """The population: the product of every per-member list."""
        given = {k: getattr(self, k) for k in MEMBER_KEYS if getattr(self, k) is not None}
        names = list(given)
        out = []
        for values in itertools.product(*(given[n] for n in names)):
            m = dict(zip(names, values, strict=True))
            if "beta1" in m or "beta2" in m:
                m["betas"] = (m.pop("beta1", 0.9), m.pop("beta2", 0.999))
            for flag in ("nesterov", "amsgrad", "centered"):
                if getattr(self, flag) is not None:
                    m[flag] = getattr(self, flag)
            out.append(m)
        return out


def _names(value: Any) -> Any:
    if isinstance(value, str):
        return [p.strip() for p in value.split(",") if p.strip()]
    return value


class TuneOptions(RunOptions):
    """Options of `optimkit tune`: the search, its budget and its storage."""

    optimizer: str | None = "adam"
    space: dict[str, Any] | None = None
    trials: int = Field(64, ge=1)
    timeout: float | None = Field(None, gt=0)
    sampler: str = "tpe"
    pruner: str = "none"
    population: int = Field(64, ge=1)
    storage: str | None = None
    study_name: str | None = None
    metric: str | None = None
    objectives: list[str] = ["metric"]
    target_value: float | None = None
    seed: int = 0
    grid_points: int = Field(4, ge=1)

    _objectives = field_validator("objectives", mode="before")(_names)


class CompareOptions(TuneOptions):
    """Options of `optimkit compare`: a tournament of optimizers under one tuning budget."""

    optimizers: list[str] = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"]
    trials: int = Field(16, ge=1)
    population: int = Field(16, ge=1)
    epochs: int = Field(10, ge=1)
    seeds: int = Field(5, ge=1)
    optimizer: str | None = None

    _optimizers = field_validator("optimizers", mode="before")(_names)


def load_options(config: Path | None, flags: dict[str, Any], cls=TrainOptions) -> Any:
    """Merge a YAML config file with the flags given on the command line (flags win)."""
    values: dict[str, Any] = {}
    if config is not None:
        if not config.is_file():
            raise UsageError(f"config: no file {str(config)!r}")
        try:
            loaded = yaml.safe_load(config.read_text())
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise UsageError(f"config {str(config)!r}: not valid YAML{where}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise UsageError(f"config {str(config)!r}: expected a mapping of option: value")
        values = {str(k).replace("-", "_"): v for k, v in loaded.items()}
    values.update({k: v for k, v in flags.items() if v is not None})
    try:
        return cls(**values)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"]) or "options"
            where = f" (in {config})" if config is not None and flags.get(key) is None else ""
            problems.append(f"{key}: {err['msg']}{where}")
        raise UsageError("; ".join(problems)) from None


def as_usage_error(e: Exception) -> UsageError:
    if isinstance(e, UsageError):
        return e
    if isinstance(e, DataError | ValueError):
        return UsageError(str(e))
    raise e
