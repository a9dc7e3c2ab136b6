"""`Population`: K copies of one model as stacked tensors, run as one vectorized program.

Contract
--------
* ``params[name]`` is a leaf tensor ``[K, *shape]`` with ``requires_grad`` for every parameter
  ``name`` of the plain model (same names as its ``state_dict``). Member k's slice equals the
  weights of ``torch.manual_seed(seeds[k]); build_model(model, n_features, n_outputs,
  **options).to(device, dtype)``. These leaves are what a population optimizer updates; the
  methods below write into them in place, so an optimizer holding them stays valid.
* ``buffers[name]`` is ``[K, *shape]`` (batch-norm running_mean/var and num_batches_tracked).
* ``forward(x, train)`` returns ``[K, B, out]`` for a shared input ``x [B, ...]`` or a
  per-member input ``[K, B, ...]``. In train mode batch norm normalizes with each member's own
  batch statistics and updates each member's running statistics in place, and dropout draws
  independent masks per member from ``generator`` (a torch.Generator, seeded by
  ``dropout_seed``, saved in ``state_dict``). In eval mode batch norm uses the running
  statistics and dropout is off. The output is differentiable w.r.t. ``params`` and members
  never mix: ``loss_per_member.sum().backward()`` gives each member exactly its own gradient.
  On the grouped path the ``[K, B, out]`` output is a transposed view of a contiguous
  ``[K, out, B]`` tensor: ``out.transpose(1, 2)`` is free and is the layout cross-entropy
  with the class dim 1 (``F.cross_entropy(logits, y.expand(K, -1), reduction="none")``) is
  fastest on.
* ``member(k)`` is a plain nn.Module holding member k's weights and buffers (eval mode).

Implementations
---------------
``impl="grouped"`` (built-in models; see :mod:`optimkit.models.grouped`) runs stacked weights
through batched kernels; ``impl="generic"`` (any nn.Module, a user's own included; see
:mod:`optimkit.models.generic`) uses torch.func (stack_module_state + functional_call + vmap).
The grouped path runs members in chunks (``chunk`` members per call; by default sized so one
chunk's largest activation holds about ``CHUNK_ELEMENTS``), which keeps big batches in cache.
``impl="auto"`` picks, per built-in, the one benchmarks/bench_models.py measured faster on CPU
(grouped for linear/logistic/softmax/mlp, cnn and mf), and generic for user modules. Both give
the same outputs and gradients on the same weights; their dropout masks come from different
draws.

Dropout rates may differ per member with the grouped path: pass ``options={"dropout": [p_0,
..., p_{K-1}]}``; member k then equals the plain model built with ``dropout=p_k``.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from optimkit.models.checks import choice, positive_int, probability
from optimkit.models.cnn import SmallCNN
from optimkit.models.factory import Factory
from optimkit.models.generic import GenericModel
from optimkit.models.grouped import GroupedModel, grouped_model
from optimkit.models.memory import check_fits
from optimkit.models.mf import MatrixFactorization
from optimkit.models.mlp import MLP
from optimkit.models.spec import ModelSpec, model_options

IMPLS = ("auto", "grouped", "generic")

#: the implementation impl="auto" uses for each built-in module type (measured in
#: benchmarks/bench_models.py)
DEFAULT_IMPL: dict[type, str] = {
    MLP: "grouped",
    SmallCNN: "grouped",
    MatrixFactorization: "grouped",
}

#: impl="grouped" with chunk=None runs members in chunks whose largest activation holds about
#: this many elements (16 MiB of float32); bigger single calls measured slower on CPU (cache and
#: page-fault bound), see benchmarks/bench_models.py
CHUNK_ELEMENTS = 1 << 22

#: template dropout rate used to lay out dropout sites when rates are given per member
_SITE_RATE = 0.5


def _check_seeds(seeds: Any) -> list[int]:
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or not seeds:
        raise ValueError(
            f"seeds: expected a non-empty list of integers (one per member), got {seeds!r}"
        )
    out = []
    for i, s in enumerate(seeds):
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 0:
            raise ValueError(f"seeds[{i}]: expected an integer >= 0, got {s!r}")
        out.append(int(s))
    return out


def _input_rule(module: nn.Module) -> tuple[tuple[int, ...], bool, str] | None:
    """(ranks of a shared input, integer input?, description) for the built-ins, else None."""
    if isinstance(module, MLP):
        return (2,), False, f"features [B, {module.n_features}] or [K, B, {module.n_features}]"
    if isinstance(module, SmallCNN):
        c, h, w = module.image_shape
        return (
            (2, 4),
            False,
            (
                f"images [B, {c}, {h}, {w}] or flat [B, {module.n_features}] (with a leading K for "
                "per-member inputs)"
            ),
        )
    if isinstance(module, MatrixFactorization):
        return (2,), True, "(user, item) index pairs [B, 2] or [K, B, 2]"
    return None


class Population:
    """K members of one model, each initialized from its own seed; see the module docstring.

    >>> pop = Population("mlp", 64, 10, seeds=range(8), options={"hidden": (128,)})
    >>> logits = pop.forward(x, train=True)               # [8, B, 10]
    >>> loss = F.cross_entropy(logits.transpose(1, 2), y.expand(8, -1), reduction="none")
    >>> loss.mean(1).sum().backward()                       # pop.params[name].grad: [8, ...]
    """

    def __init__(
        self,
        model: str | Factory,
        n_features: int,
        n_outputs: int,
        seeds: Sequence[int],
        *,
        options: Mapping[str, Any] | None = None,
        impl: str = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        dropout_seed: int | None = None,
        chunk: int | None = None,
    ) -> None:
        self.seeds = _check_seeds(seeds)
        k = len(self.seeds)
        choice("impl", impl, IMPLS)
        options = dict(options or {})
        rates = options.get("dropout", 0.0)
        self.per_member_dropout = not isinstance(rates, numbers.Real)
        if self.per_member_dropout:
            rate_list = self._check_rates(rates, k)
            options["dropout"] = _SITE_RATE
        self._spec = ModelSpec(model, n_features, n_outputs, options)
        if self.per_member_dropout and "dropout" not in self._option_names():
            raise ValueError(f"dropout: model {self._spec.label!r} has no dropout option")
        if impl == "generic" and self.per_member_dropout:
            raise ValueError("dropout: per-member rates need impl='grouped'")
        if chunk is not None:
            positive_int("chunk", chunk)
        self.device = torch.device(device if device is not None else "cpu")
        self.dtype = dtype if dtype is not None else torch.get_default_dtype()
        if not self.dtype.is_floating_point:
            raise ValueError(f"dtype: expected a floating-point dtype, got {self.dtype}")
        if not self.per_member_dropout:
            rate_list = [float(rates)] * k

        check_fits(lambda: self._member_spec(rate_list[0]).build(self.seeds[0]), k,
                   self.dtype, self.device)  # fmt: skip
        members = [
            self._build(seed, rate) for seed, rate in zip(self.seeds, rate_list, strict=True)
        ]
        self.params, self.buffers = torch.func.stack_module_state(members)
        if self.per_member_dropout:
            template = self._spec.build(seed=0).to(dtype=self.dtype)
        else:
            template = copy.deepcopy(members[0])
        self._template = template.to("meta")
        self._rule = _input_rule(self._template)

        grouped = grouped_model(self._template)
        if impl == "auto":
            impl = DEFAULT_IMPL.get(type(self._template), "generic") if grouped else "generic"
        if impl == "grouped" and grouped is None:
            raise ValueError(
                f"impl: 'grouped' exists only for the built-in models (linear, logistic, "
                f"softmax, mlp, cnn, mf); use 'generic' or 'auto' for {self._spec.label!r}"
            )
        self.impl = impl
        self.chunk = chunk
        self._grouped: GroupedModel | None = grouped if impl == "grouped" else None
        self._generic = GenericModel(self._template) if impl == "generic" else None
        self.dropout: Tensor | None = None
        if self._grouped is not None:
            self.dropout = torch.tensor(rate_list, dtype=torch.float64, device=self.device)

        self.generator = torch.Generator(device=self.device)
        if dropout_seed is None:
            seq = np.random.SeedSequence(self.seeds)
            dropout_seed = int(seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
        self.generator.manual_seed(dropout_seed)

    # ------------------------------------------------------------------ construction helpers
    @staticmethod
    def _check_rates(rates: Any, k: int) -> list[float]:
        if isinstance(rates, Tensor):
            rates = rates.tolist()
        if isinstance(rates, (str, bytes)) or not isinstance(rates, Sequence) or len(rates) != k:
            raise ValueError(
                f"dropout: expected a rate in [0, 1) or a list of {k} rates (one per member), "
                f"got {rates!r}"
            )
        return [probability(f"dropout[{i}]", r) for i, r in enumerate(rates)]

    def _option_names(self) -> list[str]:
        spec = self._spec
        return model_options(spec.model) if spec.builtin else []  # type: ignore[arg-type]

    def _member_spec(self, rate: float) -> ModelSpec:
        return self._spec.with_options(dropout=rate) if self.per_member_dropout else self._spec

    @property
    def spec(self) -> ModelSpec:
        """What the members are: model, sizes and options (with per-member dropout rates, the
        ``dropout`` option is the current list of rates; build one member with
        :meth:`member_spec`)."""
        if self.per_member_dropout and self.dropout is not None:
            return self._spec.with_options(dropout=self.dropout.tolist())
        return self._spec

    def member_spec(self, k: int) -> ModelSpec:
        """The spec that builds member k alone (``member_spec(k).build(seeds[k])`` gives its
        initial weights); differs between members only in a per-member dropout rate."""
        k = self._index(k)
        rate = float(self.dropout[k]) if self.dropout is not None else 0.0
        return self._member_spec(rate)

    def _build(self, seed: int, rate: float) -> nn.Module:
        return self._member_spec(rate).build(seed).to(device=self.device, dtype=self.dtype)

    def _index(self, k: Any, name: str = "k") -> int:
        size = len(self.seeds)
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not -size <= int(k) < size:
            raise ValueError(f"{name}: expected a member index in [0, {size}), got {k!r}")
        return int(k) % size

    # ------------------------------------------------------------------------------ basics
    @property
    def size(self) -> int:
        """K, the number of members."""
        return len(self.seeds)

    def __len__(self) -> int:
        return len(self.seeds)

    def parameters(self) -> list[Tensor]:
        """The stacked leaves, for an optimizer."""
        return list(self.params.values())

    def __repr__(self) -> str:
        return (
            f"Population({self._spec.label!r}, K={self.size}, impl={self.impl!r}, "
            f"dtype={self.dtype}, device={self.device})"
        )

    # ----------------------------------------------------------------------------- forward
    def _per_member(self, x: Any, per_member: bool | None) -> bool:
        if not isinstance(x, Tensor):
            raise ValueError(f"x: expected a torch.Tensor, got {type(x).__name__}")
        if self._rule is not None:
            ranks, integer, what = self._rule
            if x.dim() in ranks:
                inferred = False
            elif x.dim() - 1 in ranks:
                inferred = True
            else:
                raise ValueError(f"x: expected {what}, got shape {list(x.shape)}")
            if per_member is not None and per_member != inferred:
                raise ValueError(f"per_member: {per_member} contradicts x of shape {list(x.shape)}")
            per_member = inferred
            if integer and (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
                raise ValueError(f"x: expected integer indices, {what}; got dtype {x.dtype}")
            if not integer and x.dtype != self.dtype:
                raise ValueError(
                    f"x: expected dtype {self.dtype} (the population's), got {x.dtype}"
                )
            self._check_features(x, per_member, what)
        per_member = bool(per_member)
        if per_member and (x.dim() < 2 or x.shape[0] != self.size):
            raise ValueError(
                f"x: a per-member input needs a leading dim K={self.size}, got {list(x.shape)}"
            )
        return per_member

    def _check_features(self, x: Tensor, per_member: bool, what: str) -> None:
        item = x.shape[2:] if per_member else x.shape[1:]
        module = self._template
        if isinstance(module, SmallCNN):
            ok = tuple(item) in ((module.n_features,), module.image_shape)
        elif isinstance(module, MLP):
            ok = tuple(item) == (module.n_features,)
        else:
            ok = tuple(item) == (2,)
        if not ok:
            raise ValueError(f"x: expected {what}, got shape {list(x.shape)}")

    def forward(
        self,
        x: Tensor,
        train: bool,
        *,
        per_member: bool | None = None,
        dropout_masks: Sequence[Tensor] | None = None,
    ) -> Tensor:
        """Outputs ``[K, B, out]`` of all members; see the module docstring.

        `per_member`: whether ``x`` carries a leading K dim; inferred from the rank for the
        built-ins, False (shared) by default for other modules. `dropout_masks` (grouped path,
        train mode): masks as returned by :meth:`sample_dropout_masks` to use instead of
        drawing new ones.
        """
        per_member = self._per_member(x, per_member)
        train = bool(train)
        if self._generic is not None:
            if dropout_masks is not None:
                raise ValueError("dropout_masks: only the grouped implementation takes masks")
            return self._generic.forward(
                self.params,
                self.buffers,
                x,
                train=train,
                per_member=per_member,
                generator=self.generator,
            )
        assert self._grouped is not None and self.dropout is not None
        multipliers = None
        if dropout_masks is not None and not train:
            raise ValueError("dropout_masks: dropout is off in eval mode (train=False)")
        if train and self._grouped.dropout_widths:
            n = x.shape[1] if per_member else x.shape[0]
            if dropout_masks is None:
                masks = self._draw_masks(n)
            else:
                masks = self._check_masks(dropout_masks, n)
            scale = (1.0 / (1.0 - self.dropout)).to(self.dtype).view(-1, 1, 1)
            multipliers = [m.to(self.dtype) * scale for m in masks]
        n = x.shape[1] if per_member else x.shape[0]
        size = self.chunk or max(1, CHUNK_ELEMENTS // self._grouped.member_numel(n))
        if size >= self.size:  # [K, out, B] -> [K, B, out]
            return self._grouped.forward(
                self.params,
                self.buffers,
                x,
                train=train,
                per_member=per_member,
                dropout=multipliers,
            ).transpose(1, 2)
        outs = []
        for start in range(0, self.size, size):
            part = slice(start, start + size)
            outs.append(
                self._grouped.forward(
                    {name: t[part] for name, t in self.params.items()},
                    {name: t[part] for name, t in self.buffers.items()},
                    x[part] if per_member else x,
                    train=train,
                    per_member=per_member,
                    dropout=None if multipliers is None else [m[part] for m in multipliers],
                )
            )
        return torch.cat(outs).transpose(1, 2)

    __call__ = forward

    # ----------------------------------------------------------------------------- dropout
    def _draw_masks(self, n: int) -> list[Tensor]:
        """Keep-masks ``[K, width, B]`` (bool), one per dropout site, from ``generator``."""
        assert self._grouped is not None and self.dropout is not None
        keep = (1.0 - self.dropout).view(-1, 1, 1)
        return [
            torch.rand(
                self.size,
                width,
                n,
                generator=self.generator,
                device=self.device,
                dtype=torch.float64,
            )
            < keep
            for width in self._grouped.dropout_widths
        ]

    def sample_dropout_masks(self, batch_size: int) -> list[Tensor]:
        """Draw the keep-masks the next train-mode forward on a batch of `batch_size` would
        draw: one bool ``[K, B, width]`` tensor per dropout site, in forward order (grouped
        path). Advances ``generator``. Pass them back as ``forward(..., dropout_masks=...)``."""
        if self._grouped is None:
            raise ValueError("sample_dropout_masks: only the grouped implementation has masks")
        return [m.transpose(1, 2) for m in self._draw_masks(batch_size)]

    def _check_masks(self, masks: Sequence[Tensor], n: int) -> list[Tensor]:
        assert self._grouped is not None
        widths = self._grouped.dropout_widths
        if len(masks) != len(widths):
            raise ValueError(f"dropout_masks: expected {len(widths)} masks, got {len(masks)}")
        out = []
        for i, (m, width) in enumerate(zip(masks, widths, strict=True)):
            if not isinstance(m, Tensor) or tuple(m.shape) != (self.size, n, width):
                got = list(m.shape) if isinstance(m, Tensor) else type(m).__name__
                raise ValueError(
                    f"dropout_masks[{i}]: expected shape {[self.size, n, width]}, got {got}"
                )
            out.append(m.transpose(1, 2))
        return out

    # ----------------------------------------------------------------------------- members
    def member(self, k: int) -> nn.Module:
        """Member k as a plain module (a copy, in eval mode) for export or prediction."""
        k = self._index(k)
        module = copy.deepcopy(self._template).to_empty(device=self.device)
        state = {n: t[k].detach().clone() for n, t in (self.params | self.buffers).items()}
        module.load_state_dict(state)
        if self.dropout is not None:
            rate = float(self.dropout[k])
            for sub in module.modules():
                if isinstance(sub, nn.Dropout):
                    sub.p = rate
        return module.eval()

    def load_member(self, k: int, source: nn.Module | Mapping[str, Tensor]) -> None:
        """Copy a plain module's (or a state_dict's) weights and buffers into slot k, in place."""
        k = self._index(k)
        state = source.state_dict() if isinstance(source, nn.Module) else dict(source)
        expected = self.params | self.buffers
        if set(state) != set(expected):
            missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
            raise ValueError(
                f"source: state does not match the members' (missing {missing}, unexpected {extra})"
            )
        for name, target in expected.items():
            value = torch.as_tensor(state[name])
            if value.shape != target.shape[1:]:
                raise ValueError(
                    f"source: {name} has shape {list(value.shape)}, expected "
                    f"{list(target.shape[1:])}"
                )
        with torch.no_grad():
            for name, target in expected.items():
                target[k].copy_(state[name])

    def reinit(self, k: int, seed: int, *, dropout: float | None = None) -> None:
        """Re-initialize member k in place from `seed` (as ``torch.manual_seed(seed);
        build_model(...)``), optionally with a new dropout rate (grouped path, when the model
        has dropout layers). Optimizer state for slot k is the optimizer's to reset."""
        k = self._index(k)
        seed = _check_seeds([seed])[0]
        if dropout is not None:
            rate = probability("dropout", dropout)
            if self.dropout is None or not self._grouped or not self._grouped.dropout_widths:
                raise ValueError(
                    "dropout: this population has no per-member dropout layers; create it "
                    "with impl='grouped' and options={'dropout': [one rate per member]}"
                )
        else:
            rate = float(self.dropout[k]) if self.dropout is not None else 0.0
        if not self.per_member_dropout and dropout is not None:
            # the rate is per member from now on; members built later follow it
            self.per_member_dropout = True
        self.load_member(k, self._member_spec(rate).build(seed))
        self.seeds[k] = seed
        if self.dropout is not None:
            self.dropout[k] = rate

    # ------------------------------------------------------------------------ member slots
    def reset_members(self, mask: Tensor) -> None:
        """Re-initialize the members where the [K] bool `mask` is True from their seeds
        (`reinit` with ``seeds[k]`` and the member's current dropout rate)."""
        for k in torch.nonzero(mask).flatten().tolist():
            self.reinit(k, self.seeds[k])

    def copy_member(self, src: int, dst: int) -> None:
        """Member dst takes member src's parameters, buffers, dropout rate and seed. The
        dropout generator is one stream shared by all members (row k of each draw is member
        k's mask), so it has no per-member state to copy: dst draws its own masks."""
        src, dst = self._index(src, "src"), self._index(dst, "dst")
        with torch.no_grad():
            for t in (*self.params.values(), *self.buffers.values()):
                t[dst] = t[src]
            if self.dropout is not None:
                self.dropout[dst] = self.dropout[src]
        self.seeds[dst] = self.seeds[src]

    def select(self, indices: Sequence[int]) -> Population:
        """A new population of members `indices` (copies; a member may appear twice)."""
        if isinstance(indices, (str, bytes)) or not isinstance(indices, Sequence) or not indices:
            raise ValueError(
                f"indices: expected a non-empty list of member indices, got {indices!r}"
            )
        idx = [self._index(i, f"indices[{j}]") for j, i in enumerate(indices)]
        where = torch.tensor(idx, device=self.device)
        new = copy.copy(self)
        new.seeds = [self.seeds[i] for i in idx]
        new.params = {
            n: t.detach().index_select(0, where).requires_grad_(t.requires_grad)
            for n, t in self.params.items()
        }
        new.buffers = {n: t.index_select(0, where) for n, t in self.buffers.items()}
        if self.dropout is not None:
            new.dropout = self.dropout.index_select(0, where)
        new.generator = torch.Generator(device=self.device)
        new.generator.set_state(self.generator.get_state())
        return new

    # -------------------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict[str, Tensor]:
        """All state as tensors: ``params.<name>``, ``buffers.<name>``, ``seeds`` [K],
        ``generator`` (the dropout RNG state) and, on the grouped path, ``dropout`` [K]."""
        state = {f"params.{n}": t.detach().clone() for n, t in self.params.items()}
        state |= {f"buffers.{n}": t.clone() for n, t in self.buffers.items()}
        state["seeds"] = torch.tensor(self.seeds, dtype=torch.int64)
        state["generator"] = self.generator.get_state()
        if self.dropout is not None:
            state["dropout"] = self.dropout.clone()
        return state

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Restore :meth:`state_dict` in place (same K, model and implementation)."""
        mine = self.state_dict()
        if set(state) != set(mine):
            missing, extra = sorted(set(mine) - set(state)), sorted(set(state) - set(mine))
            raise ValueError(f"state: keys do not match (missing {missing}, unexpected {extra})")
        for key, value in mine.items():
            if key != "generator" and tuple(state[key].shape) != tuple(value.shape):
                raise ValueError(
                    f"state: {key} has shape {list(state[key].shape)}, expected {list(value.shape)}"
                )
        with torch.no_grad():
            for n, t in self.params.items():
                t.copy_(state[f"params.{n}"])
            for n, t in self.buffers.items():
                t.copy_(state[f"buffers.{n}"])
            if self.dropout is not None:
                self.dropout.copy_(state["dropout"])
        self.seeds = [int(s) for s in state["seeds"].tolist()]
        self.generator.set_state(state["generator"].cpu())
