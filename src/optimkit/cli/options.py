"""The options of `optimkit train`, `tune` and `compare`: one declaration, validated with pydantic.

Each option is a field of one pydantic model, declared once with its help text and its panel
(`Field(description=..., json_schema_extra={"group": ...})`); the command-line flags are
generated from the fields (`optimkit.cli.command`), and every field is also a key of the YAML
config file given with ``-c`` (flags override the file). `SharedOptions` holds what the three
commands share (data, model, training, output, speed). The optimizer hyperparameter flags of
`optimkit train` (``--lr``, ``--beta1``, ``--momentum``, ...) are generated from the optimizer
database: every hyperparameter of every optimizer gets its flag, and a value is checked against
the chosen optimizer's declaration (does it take it, is it in the valid range). Several
comma-separated values of a per-member hyperparameter (``--lr 1e-3,3e-3 --weight-decay
0,1e-4``) make a population: their product.
"""

from __future__ import annotations

import itertools
import math
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from optimkit.data import DataError
from optimkit.optim.base import SHARED_HYPERPARAMETERS
from optimkit.optim.database import COMPARE_DEFAULTS, OPTIMIZERS, entry
from optimkit.optim.spec import Hyperparameter, OptimizerSpec

#: the optimizer `train` and `tune` use when none is given (a config default, not knowledge
#: about the optimizer: everything else comes from the database)
DEFAULT_OPTIMIZER = "adam"

#: model options passed on when given
MODEL_KEYS = ("hidden", "activation", "init", "batch_norm", "dropout", "residual")

#: seeds are numpy/torch generator seeds
MAX_SEED = 2**32 - 1

THREADS_HELP = (
    "CPU threads (default 1: small steps run fastest on one; 2+ pays off from "
    "about 64 MLP members, or for convolutional models)."
)
COMPILE_HELP = "Run the optimizer step through torch.compile (one fused loop; compiles once)."
AUTOCAST_HELP = "bfloat16 matrix products (mixed precision: faster on CPUs with AVX512-BF16)."


class UsageError(ValueError):
    """A bad flag, config key or file: printed without a traceback, exit code 2."""


def _opt(
    default: Any, help: str, group: str, flags: tuple[str, ...] | None = None, **kw: Any
) -> Any:
    """A field: its default, help text, help panel, flag spellings if not the usual ones (and
    pydantic constraints)."""
    extra: dict[str, Any] = {"group": group}
    if flags is not None:
        extra["flags"] = list(flags)
    return Field(default, description=help, json_schema_extra=extra, **kw)


# ------------------------------------------------------------------------ strict list values
def items(key: str, value: Any) -> list[Any]:
    """A list option's items: a comma-separated string, a YAML list or one value. An empty
    item is an error naming the option."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
        if not value.strip():
            raise ValueError(f"{key}: expected one or more comma-separated values, got ''")
        if any(not p for p in parts):
            raise ValueError(f"{key}: empty item in {value!r}")
        return parts
    if isinstance(value, list | tuple):
        if not value:
            raise ValueError(f"{key}: expected one or more values, got an empty list")
        for i, v in enumerate(value):
            if v is None or (isinstance(v, str) and not v.strip()):
                raise ValueError(f"{key}: item {i + 1} is empty")
        return list(value)
    return [value]


def number(key: str, v: Any) -> float:
    """A finite number from a list item (no bools)."""
    if isinstance(v, bool):
        raise ValueError(f"{key}: expected a number, got {v!r}")
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            raise ValueError(f"{key}: {v!r} is not a number") from None
    if not isinstance(v, int | float):
        raise ValueError(f"{key}: expected a number, got {v!r}")
    if not math.isfinite(v):
        raise ValueError(f"{key}: expected a finite number, got {v!r}")
    return float(v)


def integer(key: str, v: Any) -> int:
    """An integer from a list item (no bools, no fractions)."""
    if isinstance(v, bool):
        raise ValueError(f"{key}: expected an integer, got {v!r}")
    if isinstance(v, str):
        try:
            return int(v.strip())
        except ValueError:
            raise ValueError(f"{key}: {v!r} is not an integer") from None
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if not isinstance(v, int):
        raise ValueError(f"{key}: expected an integer, got {v!r}")
    return v


def _numbers(key: str, value: Any) -> list[float] | None:
    return None if value is None else [number(key, v) for v in items(key, value)]


def _integers(key: str, value: Any) -> list[int] | None:
    return None if value is None else [integer(key, v) for v in items(key, value)]


def _names(key: str, value: Any) -> list[str] | None:
    if value is None:
        return None
    out = []
    for v in items(key, value):
        if not isinstance(v, str):
            raise ValueError(f"{key}: expected names, got {v!r}")
        out.append(v.strip())
    return out


def _takes_bool(annotation: Any) -> bool:
    if annotation is bool or annotation is Any:
        return True
    return any(_takes_bool(a) for a in typing.get_args(annotation))


# ---------------------------------------------------------------------------------- models
class Options(BaseModel):
    """Strict options: unknown keys are errors, and a bool is not a number."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    @model_validator(mode="before")
    @classmethod
    def _no_bools_for_numbers(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            for key, value in data.items():
                f = cls.model_fields.get(key)
                if f is not None and isinstance(value, bool) and not _takes_bool(f.annotation):
                    raise ValueError(f"{key}: expected {_expected(f.annotation)}, got {value!r}")
        return data


def _expected(annotation: Any) -> str:
    args = {a for a in typing.get_args(annotation) if a is not type(None)} or {annotation}
    if args <= {int}:
        return "an integer"
    if args <= {int, float}:
        return "a number"
    return "a value of its type"


DATA, MODEL, TRAINING, OUTPUT, SPEED = "Data", "Model", "Training", "Output", "Speed"
OPTIMIZER, SEARCH = "Optimizer", "Search"


class SharedOptions(Options):
    """Data, model, training, output and speed options: the same in train, tune and compare."""

    data: str = _opt("digits", "Built-in dataset name or a .csv/.parquet file.", DATA)
    target: str | None = _opt(None, "Target column of a CSV/Parquet file.", DATA)
    task: Literal["classification", "regression"] | None = _opt(
        None, "classification | regression (default: inferred).", DATA
    )
    impute: Literal["mean", "median", "most_frequent"] | None = _opt(
        None, "mean | median | most_frequent for missing values.", DATA
    )
    val_fraction: float = _opt(0.15, "Validation fraction of the rows.", DATA, gt=0, lt=1)
    test_fraction: float = _opt(0.15, "Test fraction of the rows.", DATA, gt=0, lt=1)
    pca: float | None = _opt(
        None, "PCA to N components, or a variance fraction < 1.", DATA, gt=0, allow_inf_nan=False
    )
    select_k: int | None = _opt(None, "Keep the k best features (univariate test).", DATA, ge=1)

    model: str = _opt(
        "mlp", "linear | logistic | softmax | mlp | cnn | mf | pkg.mod:factory", MODEL
    )
    hidden: list[int] | None = _opt(None, "MLP widths, e.g. 128,64.", MODEL)
    activation: str | None = _opt(None, "relu | tanh | gelu | ...", MODEL)
    init: str | None = _opt(None, "xavier | he | orthogonal | torch", MODEL)
    batch_norm: bool | None = _opt(None, "Batch normalization between layers.", MODEL)
    dropout: float | None = _opt(None, "Dropout rate.", MODEL, ge=0, lt=1)
    residual: bool | None = _opt(None, "Residual connections.", MODEL)

    loss: str | None = _opt(None, "Loss name (default: by task).", TRAINING)
    epochs: int = _opt(20, "Epochs (default 20).", TRAINING, ge=1)
    batch_size: int = _opt(64, "Mini-batch size; 0 = full batch, 1 = stochastic.", TRAINING, ge=0)
    schedule: str | None = _opt(
        None, "cosine | step | exponential | onecycle | plateau | ...", TRAINING
    )
    patience: int | None = _opt(None, "Early-stopping patience in epochs.", TRAINING, ge=1)
    min_delta: float = _opt(
        0.0, "Smallest improvement that resets the patience.", TRAINING, ge=0, allow_inf_nan=False
    )

    out: Path | None = _opt(None, "Output folder (model, config, results).", OUTPUT)

    device: Literal["cpu", "cuda"] = _opt("cpu", "cpu | cuda", SPEED)
    threads: int = _opt(1, THREADS_HELP, SPEED, ge=1, le=4096)
    dtype: Literal["float32", "float64"] = _opt("float32", "float32 | float64", SPEED)
    compile: bool = _opt(False, COMPILE_HELP, SPEED)
    autocast: bool = _opt(False, AUTOCAST_HELP, SPEED)

    @field_validator("hidden", mode="before")
    @classmethod
    def _widths(cls, value: Any) -> Any:
        return _integers("hidden", value)

    @field_validator("out", mode="before")
    @classmethod
    def _out(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("out: expected a folder, got ''")
        if isinstance(value, str) and "\0" in value:
            raise ValueError(f"out: {value!r} contains a NUL character")
        return value

    def model_options(self) -> dict[str, Any]:
        opts = {k: getattr(self, k) for k in MODEL_KEYS if getattr(self, k) is not None}
        if "hidden" in opts:
            opts["hidden"] = tuple(opts["hidden"])
        return opts


# ------------------------------------------------------------------- train: hyperparameters
def _specs() -> list[OptimizerSpec]:
    return [cls.spec for cls in OPTIMIZERS.values()]  # type: ignore[attr-defined]


def hyperparameter_names() -> dict[str, list[tuple[str, Hyperparameter]]]:
    """Every hyperparameter name in the database -> (optimizer, declaration) for each optimizer
    that takes it, in database order."""
    out: dict[str, list[tuple[str, Hyperparameter]]] = {}
    for spec in _specs():
        for h in spec.hyperparameters:
            out.setdefault(h.name, []).append((spec.name, h))
    return out


#: the per-member options every optimizer takes (clip_grad_norm, clip_grad_value, l1)
EXTRAS: dict[str, Hyperparameter] = {h.name: h for h in SHARED_HYPERPARAMETERS}


def _extra_help(name: str) -> str:
    doc = EXTRAS[name].doc
    return f"{doc[:1].upper()}{doc[1:]}: value(s)."


def _hyper_help(name: str, decls: list[tuple[str, Hyperparameter]]) -> str:
    h = decls[0][1]
    which = ", ".join(n for n, _ in decls) if len(decls) <= 3 else f"{len(decls)} optimizers"
    values = "value(s)" if h.member else "one value"
    return f"{h.doc[:1].upper()}{h.doc[1:]}: {values} ({which})."


def _hyper_fields() -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, decls in hyperparameter_names().items():
        flag_only = all(h.kind == "bool" for _, h in decls)
        annotation = bool | None if flag_only else Any
        fields[name] = (annotation, _opt(None, _hyper_help(name, decls), OPTIMIZER))
    return fields


class _TrainBase(SharedOptions):
    """Options of `optimkit train` (see `optimkit train --help` for each)."""

    #: names of the generated hyperparameter fields
    hyperparameter_fields: ClassVar[tuple[str, ...]] = ()

    optimizer: str = _opt(
        DEFAULT_OPTIMIZER, "Optimizer or variant (`optimkit optimizers` lists them).", OPTIMIZER
    )
    clip_grad_norm: list[float] | None = _opt(None, _extra_help("clip_grad_norm"), OPTIMIZER)
    clip_grad_value: list[float] | None = _opt(None, _extra_help("clip_grad_value"), OPTIMIZER)
    l1: list[float] | None = _opt(None, _extra_help("l1"), OPTIMIZER)
    seed: list[int] = _opt([0], "Seed(s): initialization; the first also splits data.", TRAINING)
    per_member_batches: bool = _opt(
        False,
        "Each member draws its own mini-batches (default: shared).",
        TRAINING,
        flags=("--per-member-batches/--shared-batches",),
    )
    monitor: str = _opt("val_loss", "val_loss or val_<metric> for early stopping.", TRAINING)
    checkpoint_every: int | None = _opt(
        None, "Checkpoint every N epochs to OUT.checkpoint.pt.", OUTPUT, ge=1
    )
    resume: bool = _opt(False, "Continue from OUT.checkpoint.pt.", OUTPUT)
    resume_override: bool = _opt(
        False,
        "With --resume: apply hyperparameters, epochs, patience, min-delta or autocast that "
        "differ from the checkpoint's (recorded in results.json and config.json) instead of "
        "refusing them.",
        OUTPUT,
    )
    overwrite: bool = _opt(False, "Replace --out.", OUTPUT)

    @field_validator("clip_grad_norm", "clip_grad_value", "l1", mode="before")
    @classmethod
    def _extras(cls, value: Any, info: Any) -> Any:
        values = _numbers(info.field_name, value)
        for v in values or ():
            EXTRAS[info.field_name].check(v)
        return values

    @field_validator("seed", mode="before")
    @classmethod
    def _seeds(cls, value: Any) -> Any:
        seeds = _integers("seed", value)
        for s in seeds or ():
            if not 0 <= s <= MAX_SEED:
                raise ValueError(f"seed: expected 0 <= seed <= {MAX_SEED}, got {s}")
        return seeds

    @model_validator(mode="after")
    def _hyperparameters(self) -> _TrainBase:
        """Each hyperparameter given: taken by the chosen optimizer, of its type, in range."""
        e = entry(self.optimizer)
        self.optimizer = e.name
        spec = e.spec
        for name in self.hyperparameter_fields:
            value = getattr(self, name)
            if value is None:
                continue
            h = next((h for h in spec.hyperparameters if h.name == name), None)
            if h is None:
                takes = ", ".join(h.name for h in spec.hyperparameters)
                raise ValueError(f"{name}: optimizer {e.name!r} does not take it; it takes: "
                                 f"{takes}")  # fmt: skip
            setattr(self, name, _parse_hyper(h, value, e.name))
        return self

    def hyperparameters(self) -> dict[str, Any]:
        """The hyperparameters given (flat names): lists for per-member ones."""
        return {
            n: getattr(self, n) for n in self.hyperparameter_fields if getattr(self, n) is not None
        }

    def members(self) -> list[dict[str, Any]]:
        """The population: the product of every per-member list, as constructor keywords of
        the optimizer (tuple arguments such as betas packed, their missing elements at that
        optimizer's defaults) plus the extras and the seed."""
        spec = entry(self.optimizer).spec
        given = self.hyperparameters()
        lists = {n: v for n, v in given.items() if spec.hyperparameter(n).member}
        shared = {n: v for n, v in given.items() if n not in lists}
        for key in (*EXTRAS, "seed"):
            if getattr(self, key) is not None:
                lists[key] = getattr(self, key)
        names = list(lists)
        out = []
        for values in itertools.product(*(lists[n] for n in names)):
            m = dict(zip(names, values, strict=True))
            flat = {n: v for n, v in m.items() if n in given}
            extras = {n: v for n, v in m.items() if n not in given}
            out.append({**spec.to_kwargs({**flat, **shared}), **extras})
        return out


def _parse_hyper(h: Hyperparameter, value: Any, optimizer: str) -> Any:
    """A hyperparameter's value from a flag or a config: a list for per-member numbers, one
    value otherwise; checked against the optimizer's declaration."""
    if h.kind == "float":
        values: list[Any] = _numbers(h.name, value) or []
    else:
        values = items(h.name, value) if isinstance(value, str | list | tuple) else [value]
        if len(values) != 1:
            raise ValueError(f"{h.name}: takes one value for the whole population, got {value!r}")
        v = values[0]
        if h.kind == "int":
            v = integer(h.name, v)
        elif h.kind == "bool" and isinstance(v, str) and v.lower() in ("true", "false"):
            v = v.lower() == "true"
        elif h.kind == "choice" and isinstance(v, str):  # a choice given as text
            v = next((c for c in h.choices if str(c) == v), v)
        values = [v]
    try:
        checked = [h.check(v) for v in values]
    except ValueError as err:
        raise ValueError(f"{err} (optimizer {optimizer})") from None
    return checked if h.kind == "float" else checked[0]


if TYPE_CHECKING:
    TrainOptions = _TrainBase
else:  # the base plus one field per hyperparameter name of the database
    TrainOptions = create_model(
        "TrainOptions",
        __base__=_TrainBase,
        __doc__=_TrainBase.__doc__,
        **{k: v for k, v in _hyper_fields().items() if k not in _TrainBase.model_fields},
    )
    TrainOptions.hyperparameter_fields = tuple(
        k for k in hyperparameter_names() if k not in _TrainBase.model_fields
    )


# ------------------------------------------------------------------------- tune and compare
def _finite(v: float | None, key: str) -> float | None:
    if v is not None and not math.isfinite(v):
        raise ValueError(f"{key}: expected a finite number, got {v!r}")
    return v


class SearchOptions(SharedOptions):
    """What tune and compare share: the search, its budget and its storage."""

    space: dict[str, Any] | None = Field(
        None, description="Search space (config file only).", json_schema_extra={"cli": False}
    )
    trials: int = _opt(64, "Trials in the study (default 64).", SEARCH, ge=1)
    sampler: str = _opt("tpe", "tpe | random | grid | qmc | gp | cmaes | nsga2", SEARCH)
    pruner: str = _opt("none", "none | median | asha | hyperband", SEARCH)
    population: int = _opt(64, "Members trained at once (default 64).", SEARCH, ge=1)
    storage: str | None = _opt(None, "Optuna storage.", OUTPUT)
    study_name: str | None = _opt(
        None, "Study name (default: from data, model, optimizer).", OUTPUT
    )
    metric: str | None = _opt(None, "Validation metric to optimize.", SEARCH)
    target_value: float | None = _opt(None, "Val metric to reach.", SEARCH)
    seed: int = _opt(0, "Seed of the sampler, the data split and the trials.", SEARCH, ge=0,
                     le=MAX_SEED)  # fmt: skip

    @field_validator("study_name")
    @classmethod
    def _study_name(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("study_name: expected a non-empty name (or leave it out)")
        return value

    @field_validator("sampler", "pruner")
    @classmethod
    def _known(cls, value: str, info: Any) -> str:
        from optimkit.tune.samplers import PRUNERS, SAMPLERS

        valid = SAMPLERS if info.field_name == "sampler" else PRUNERS
        if value not in valid:
            raise ValueError(f"{info.field_name}: unknown name {value!r}; valid: "
                             f"{', '.join(valid)}")  # fmt: skip
        return value

    @field_validator("target_value")
    @classmethod
    def _target(cls, value: float | None) -> float | None:
        return _finite(value, "target_value")

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str | None) -> str | None:
        if value is not None:
            from optimkit.metrics import get_metric

            get_metric(value)  # an unknown name raises, listing the valid ones
        return value


class TuneOptions(SearchOptions):
    """Options of `optimkit tune`."""

    optimizer: str | None = _opt(
        DEFAULT_OPTIMIZER, "Optimizer whose default space is searched.", OPTIMIZER
    )
    timeout: float | None = _opt(None, "Stop asking new trials after S seconds.", SEARCH, gt=0)
    objectives: list[str] = _opt(["metric"], "metric[,seconds][,params] (NSGA-II).", SEARCH)
    grid_points: int = _opt(4, "Values per range for --sampler grid.", SEARCH, ge=1)

    @field_validator("objectives", mode="before")
    @classmethod
    def _objectives(cls, value: Any) -> Any:
        return _names("objectives", value)

    @field_validator("optimizer")
    @classmethod
    def _optimizer(cls, value: str | None) -> str | None:
        return None if value is None else entry(value).name


class CompareOptions(SearchOptions):
    """Options of `optimkit compare`: a tournament of optimizers under one tuning budget."""

    optimizers: list[str] = _opt(
        list(COMPARE_DEFAULTS),
        f"Comma-separated optimizers (default: {', '.join(COMPARE_DEFAULTS)}).",
        OPTIMIZER,
    )
    trials: int = _opt(16, "Tuning trials per optimizer (default 16).", SEARCH, ge=1)
    population: int = _opt(16, "Members trained at once (default 16).", SEARCH, ge=1)
    epochs: int = _opt(10, "Epochs (default 10).", TRAINING, ge=1)
    seeds: int = _opt(5, "Seeds for each optimizer's best (default 5).", SEARCH, ge=1)
    target_value: float | None = _opt(
        None,
        "Val metric to reach (default: 0.97 accuracy; otherwise the worst optimizer's "
        "mean best val metric).",
        SEARCH,
    )

    @field_validator("optimizers", mode="before")
    @classmethod
    def _optimizers(cls, value: Any) -> Any:
        names = _names("optimizers", value)
        if names is None:
            return names
        out: list[str] = []
        for n in names:
            try:
                name = entry(n).name
            except ValueError as err:
                raise ValueError(f"optimizers: {str(err).removeprefix('optimizer: ')}") from None
            if name in out:
                raise ValueError(f"optimizers: {name!r} is given twice")
            out.append(name)
        return out


# ---------------------------------------------------------------------------- config files
class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int, first: int) -> None:
        super().__init__(f"line {line}: duplicate key {key!r} (first at line {first})")


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing duplicate keys (``a-b`` and ``a_b`` are one key)."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
        norm = key.replace("-", "_") if isinstance(key, str) else key
        try:
            first = seen.get(norm)
        except TypeError:
            continue  # an unhashable key: PyYAML's own error follows
        if first is not None:
            raise _DuplicateKey(key, key_node.start_mark.line + 1, first)
        seen[norm] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def read_config(config: Path) -> dict[str, Any]:
    """A YAML config file as option: value (keys with - or _), with errors naming the file."""
    name = repr(str(config))
    if not config.is_file():
        raise UsageError(f"config: no file {name}")
    try:
        text = config.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"config {name}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise UsageError(f"config {name}: {e.strerror}") from None
    try:
        loaded = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader
    except _DuplicateKey as e:
        raise UsageError(f"config {name}, {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UsageError(f"config {name}: not valid YAML{where}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UsageError(f"config {name}: expected a mapping of option: value")
    return {str(k).replace("-", "_"): v for k, v in loaded.items()}


def load_options(config: Path | None, flags: dict[str, Any], cls: type[Options]) -> Any:
    """Merge a YAML config file with the flags given on the command line (flags win)."""
    values = read_config(config) if config is not None else {}
    values.update({k: v for k, v in flags.items() if v is not None})
    try:
        return cls(**values)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"])
            cause = (err.get("ctx") or {}).get("error")
            if err["type"] == "value_error" and cause is not None:
                text = str(cause)  # our own messages name the option already
                key = text.partition(":")[0]
            else:
                text = f"{key or 'options'}: {err['msg']}"
            from_file = config is not None and key in values and flags.get(key) is None
            problems.append(text + (f" (in {config})" if from_file else ""))
        raise UsageError("; ".join(problems)) from None


def as_usage_error(e: Exception) -> UsageError:
    if isinstance(e, UsageError):
        return e
    if isinstance(e, DataError | ValueError):
        return UsageError(str(e))
    raise e


__all__ = [
    "AUTOCAST_HELP",
    "COMPILE_HELP",
    "THREADS_HELP",
    "CompareOptions",
    "Options",
    "SearchOptions",
    "SharedOptions",
    "TrainOptions",
    "TuneOptions",
    "UsageError",
    "as_usage_error",
    "load_options",
    "read_config",
]
