"""Member k of a population must do what torch.optim does with hyperparameters hp[k].

Oracle: torch.optim run separately on each member's slice p[k] with hp[k], on the same random
gradients, in float64 for 50 steps; tolerance 1e-12 on the parameters.
"""

from __future__ import annotations

import itertools

import pytest
import torch

import optimkit.optim as ok

STEPS = 50
TOL = 1e-12


def _draw(rng: torch.Generator, k: int, low: float, high: float, per_member: bool):
    """A hyperparameter: a [K] float64 tensor (per member) or a shared Python float."""
    u = torch.rand(k, generator=rng, dtype=torch.float64) * (high - low) + low
    return u if per_member else float(u[0])


# name -> (torch class, ranges of the numeric hyperparameters, boolean options to sweep)
SPECS = {
    "SGD": (
        torch.optim.SGD,
        {"lr": (1e-3, 0.2), "momentum": (0.0, 0.95), "dampening": (0.0, 0.5),
         "weight_decay": (0.0, 0.1)},
        {"maximize": [False, True]},
    ),
    "Adagrad": (
        torch.optim.Adagrad,
        {"lr": (1e-3, 0.2), "lr_decay": (0.0, 0.1), "weight_decay": (0.0, 0.1),
         "initial_accumulator_value": (0.0, 0.5), "eps": (1e-10, 1e-3)},
        {"maximize": [False, True]},
    ),
    "RMSprop": (
        torch.optim.RMSprop,
        {"lr": (1e-3, 0.05), "alpha": (0.8, 0.999), "eps": (1e-8, 1e-3),
         "weight_decay": (0.0, 0.1), "momentum": (0.0, 0.9)},
        {"centered": [False, True], "maximize": [False, True]},
    ),
    "Adam": (
        torch.optim.Adam,
        {"lr": (1e-4, 0.05), "beta1": (0.0, 0.95), "beta2": (0.9, 0.9999), "eps": (1e-8, 1e-3),
         "weight_decay": (0.0, 0.1)},
        {"amsgrad": [False, True], "maximize": [False, True]},
    ),
    "AdamW": (
        torch.optim.AdamW,
        {"lr": (1e-4, 0.05), "beta1": (0.0, 0.95), "beta2": (0.9, 0.9999), "eps": (1e-8, 1e-3),
         "weight_decay": (0.0, 0.5)},
        {"amsgrad": [False, True], "maximize": [False, True]},
    ),
    "Adamax": (
        torch.optim.Adamax,
        {"lr": (1e-4, 0.05), "beta1": (0.0, 0.95), "beta2": (0.9, 0.9999), "eps": (1e-8, 1e-3),
         "weight_decay": (0.0, 0.1)},
        {"maximize": [False, True]},
    ),
    "NAdam": (
        torch.optim.NAdam,
        {"lr": (1e-4, 0.05), "beta1": (0.0, 0.95), "beta2": (0.9, 0.9999), "eps": (1e-8, 1e-3),
         "weight_decay": (0.0, 0.1), "momentum_decay": (1e-3, 1e-2)},
        {"decoupled_weight_decay": [False, True], "maximize": [False, True]},
    ),
}  # fmt: skip


def _cases():
    for name, (_, _, flags) in SPECS.items():
        keys = list(flags)
        for values in itertools.product(*(flags[k] for k in keys)):
            yield name, dict(zip(keys, values, strict=True))
    yield "SGD", {"nesterov": True}
    yield "SGD", {"nesterov": True, "maximize": True}


def _split(kwargs: dict, k: int) -> dict:
    """Member k's hyperparameters as Python floats, for torch.optim."""

    def one(v):
        return float(v[k]) if isinstance(v, torch.Tensor) else v

    out = {n: one(v) for n, v in kwargs.items() if n != "betas"}
    if "betas" in kwargs:
        out["betas"] = tuple(one(b) for b in kwargs["betas"])
    return out


def _hyperparameters(name: str, flags: dict, k: int, seed: int) -> dict:
    rng = torch.Generator().manual_seed(seed)
    ranges = SPECS[name][1]
    per_member = torch.rand(len(ranges), generator=rng) < 0.7
    hp = {n: _draw(rng, k, lo, hi, bool(pm)) for (n, (lo, hi)), pm in
          zip(ranges.items(), per_member, strict=True)}  # fmt: skip
    if "beta1" in hp:
        hp["betas"] = (hp.pop("beta1"), hp.pop("beta2"))
    if flags.get("nesterov"):
        hp["momentum"] = _draw(rng, k, 0.1, 0.95, True)
        hp["dampening"] = 0.0
    return {**hp, **flags}


def _run_against_torch(name, flags, seed, dtype=torch.float64):
    rng = torch.Generator().manual_seed(seed)
    k = int(torch.randint(1, 6, (1,), generator=rng))
    shapes = [(k, *torch.randint(1, 5, (int(torch.randint(0, 3, (1,), generator=rng)),),
                                 generator=rng).tolist()) for _ in range(2)]  # fmt: skip
    hp = _hyperparameters(name, flags, k, seed)
    params = [torch.randn(s, generator=rng, dtype=dtype).requires_grad_() for s in shapes]
    ours = getattr(ok, name)(params, members=k, **hp)
    ref_params = [[p[m].detach().clone().requires_grad_() for p in params] for m in range(k)]
    refs = [SPECS[name][0](ref_params[m], **_split(hp, m)) for m in range(k)]
    for _ in range(STEPS):
        grads = [torch.randn(s, generator=rng, dtype=dtype) for s in shapes]
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        ours.step()
        for m in range(k):
            for q, g in zip(ref_params[m], grads, strict=True):
                q.grad = g[m].clone()
            refs[m].step()
    err = max(
        (p[m] - q).abs().max().item()
        for m in range(k)
        for p, q in zip(params, ref_params[m], strict=True)
    )
    return err


@pytest.mark.parametrize(("name", "flags"), list(_cases()), ids=lambda x: str(x))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_member_matches_torch(name, flags, seed):
    # torch keeps NAdam's mu_product in the default dtype: make that float64 like ours.
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        err = _run_against_torch(name, flags, seed)
    finally:
        torch.set_default_dtype(previous)
    assert err <= TOL, f"{name} {flags}: max |dp| = {err:.3e}"


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop", "Adagrad"])
def test_plain_model_is_a_drop_in(name):
    """No population: an nn.Module's parameters, float hyperparameters, as torch.optim."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 1))
    net = net.double()
    twin = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 1))
    twin = twin.double()
    twin.load_state_dict(net.state_dict())
    kwargs = {"lr": 0.01, "weight_decay": 1e-3}
    if name == "SGD":
        kwargs["momentum"] = 0.9
    ours = getattr(ok, name)(net.parameters(), **kwargs)
    ref = getattr(torch.optim, name)(twin.parameters(), **kwargs)
    x, y = torch.randn(32, 5, dtype=torch.float64), torch.randn(32, 1, dtype=torch.float64)
    for _ in range(30):
        for model, opt in ((net, ours), (twin, ref)):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()
    for a, b in zip(net.parameters(), twin.parameters(), strict=True):
        assert (a - b).abs().max().item() <= TOL
    assert len(ours.state_dict()["state"]) == 4


def test_param_groups_with_their_own_hyperparameters():
    torch.manual_seed(1)
    k = 3
    a = torch.randn(k, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(k, 2, 2, dtype=torch.float64, requires_grad=True)
    lr_a = torch.tensor([0.01, 0.02, 0.03], dtype=torch.float64)
    ours = ok.Adam([{"params": [a], "lr": lr_a}, {"params": [b], "weight_decay": 0.1}], lr=0.005)
    refs = []
    for m in range(k):
        qa, qb = a[m].detach().clone().requires_grad_(), b[m].detach().clone().requires_grad_()
        opt = torch.optim.Adam(
            [{"params": [qa], "lr": float(lr_a[m])}, {"params": [qb], "weight_decay": 0.1}],
            lr=0.005,
        )
        refs.append((qa, qb, opt))
    for _ in range(20):
        ga, gb = torch.randn_like(a), torch.randn_like(b)
        a.grad, b.grad = ga.clone(), gb.clone()
        ours.step()
        for m, (qa, qb, opt) in enumerate(refs):
            qa.grad, qb.grad = ga[m].clone(), gb[m].clone()
            opt.step()
    for m, (qa, qb, _) in enumerate(refs):
        assert (a[m] - qa).abs().max().item() <= TOL
        assert (b[m] - qb).abs().max().item() <= TOL
