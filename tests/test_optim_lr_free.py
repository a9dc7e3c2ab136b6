"""Schedule-free (train()/eval() switch) and learning-rate-free optimizers (per-member d
estimates) against their reference packages, float64, member by member.

The crossed matrix (tests/test_optim_matrix.py) covers the update rules; here: the mode switch
mid-run, per-member independence of the adaptive estimates under very different gradients and
hyperparameters (lr included, which the matrix keeps at 1), the settings the matrix leaves at
their defaults, groups whose lr is 0 for some members, groups without gradients, larger
tensors, skip_nonfinite and member slots on the group estimates, and state_dict round trips.
"""

from __future__ import annotations

import copy

import dadaptation
import optim_matrix as mx
import prodigyopt
import pytest
import schedulefree
import torch

import optimkit.optim as oo

f64 = torch.float64
TOL = 1e-12
# the estimates themselves (d, numerators), relative to their own size: the references take
# each tensor's <g, s> with torch.dot (BLAS), we sum each member's products with torch.sum, a
# different summation order (1 ulp); Prodigy's numerator <g, p0 - p> then amplifies it by
# cancellation (measured: up to 8e-12 on d_numerator, 1.3e-12 on d with beta1 = 0; parameters
# stay within 1e-13)
EST_TOL = 1e-10
LR_FREE = {
    "prodigy": (oo.Prodigy, prodigyopt.Prodigy),
    "dadapt_adam": (oo.DAdaptAdam, dadaptation.DAdaptAdam),
    "dadapt_sgd": (oo.DAdaptSGD, dadaptation.DAdaptSGD),
}
SCHEDULE_FREE = {
    "sgd_schedule_free": (oo.SGDScheduleFree, schedulefree.SGDScheduleFree),
    "adamw_schedule_free": (oo.AdamWScheduleFree, schedulefree.AdamWScheduleFree),
}
ESTIMATES = {"prodigy": ("d", "d_max", "d_numerator", "k"),
             "dadapt_adam": ("d", "numerator_weighted", "k"),
             "dadapt_sgd": ("d", "numerator_weighted", "g0_norm", "k")}  # fmt: skip


@pytest.fixture(autouse=True)
def _float64_default():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(f64)
    yield
    torch.set_default_dtype(previous)


def _rel(a, b) -> float:
    a, b = torch.as_tensor(a, dtype=f64), torch.as_tensor(b, dtype=f64)
    return float((a - b).abs().max() / b.abs().max().clamp(min=1.0))


def _rel_scalar(a, b) -> float:
    """Relative error of an estimate (d ~ 1e-6: relative to itself, not to 1)."""
    a, b = float(a), float(b)
    return abs(a - b) / max(abs(b), 1e-300)


class Population:
    """K members in one optimizer (one or more groups) and K reference runs, same gradients."""

    def __init__(self, ours_cls, ref_cls, groups_kw, k, shapes, seed=0, grad_scale=None,
                 ref_setup=None, drift=0.0, **options):  # fmt: skip
        rng = torch.Generator().manual_seed(seed)
        self.k, self.seed = k, seed
        self.params = [[torch.randn(k, *s, generator=rng).requires_grad_() for s in group]
                       for group in shapes]  # fmt: skip
        self.groups_kw = groups_kw
        # one group: the hyperparameters go to the constructor (a d0 in a group dict does
        # not move the start of d in the references); several: one dict per group
        single = len(groups_kw) == 1
        if single:
            self.ours = ours_cls(self.params[0], members=k, **groups_kw[0], **options)
        else:
            self.ours = ours_cls([{"params": ps, **kw} for ps, kw in zip(self.params, groups_kw,
                                  strict=True)], members=k, **options)  # fmt: skip
        self.twins = [[[p.detach()[m].clone().requires_grad_() for p in ps] for ps in self.params]
                      for m in range(k)]  # fmt: skip
        self.refs = []
        for m in range(k):
            if single:
                ref = ref_cls(self.twins[m][0], **mx.member(groups_kw[0], m))
            else:
                pairs = zip(self.twins[m], groups_kw, strict=True)
                ref = ref_cls([{"params": qs, **mx.member(kw, m)} for qs, kw in pairs])
            if ref_setup is not None:
                ref_setup(ref)
            self.refs.append(ref)
        self.scale = torch.ones(k) if grad_scale is None else torch.as_tensor(grad_scale)
        self.rng = torch.Generator().manual_seed(seed + 1)
        self.drift = drift  # a mean in the gradients, so that the d estimates grow

    def step(self, n=1, skip_grad=()):
        for _ in range(n):
            grads = [[(torch.randn(p.shape, generator=self.rng) + self.drift) * self.scale.reshape(
                (-1,) + (1,) * (p.dim() - 1)) for p in ps] for ps in self.params]  # fmt: skip
            for gi, (ps, gs) in enumerate(zip(self.params, grads, strict=True)):
                for p, g in zip(ps, gs, strict=True):
                    p.grad = None if gi in skip_grad else g.clone()
            self.ours.step()
            for m in range(self.k):
                for gi, (qs, gs) in enumerate(zip(self.twins[m], grads, strict=True)):
                    for q, g in zip(qs, gs, strict=True):
                        q.grad = None if gi in skip_grad else g[m].clone()
                self.refs[m].step()

    def error(self) -> float:
        return max(_rel(p.detach()[m], q.detach())
                   for m in range(self.k)
                   for ps, qs in zip(self.params, self.twins[m], strict=True)
                   for p, q in zip(ps, qs, strict=True))  # fmt: skip

    def estimate_error(self, names) -> float:
        err = 0.0
        for gi, group in enumerate(self.ours.param_groups):
            for name in names:
                ours = torch.as_tensor(group[name])
                for m in range(self.k):
                    err = max(err, _rel_scalar(ours[m], self.refs[m].param_groups[gi][name]))
        return err


def _kw(**values):
    return {n: (torch.tensor(v, dtype=f64) if isinstance(v, list) else v)
            for n, v in values.items()}  # fmt: skip


# ------------------------------------------------------------------ schedule-free modes
SF_KW = {
    "sgd_schedule_free": _kw(lr=[0.5, 0.05, 0.2], momentum=[0.9, 0.5, 0.98],
                             weight_decay=[0.0, 1e-2, 1e-3], r=[0.0, 0.5, 1.0],
                             weight_lr_power=[2.0, 0.0, 1.0], warmup_steps=4),
    "adamw_schedule_free": _kw(lr=[0.01, 0.05, 0.002], betas=([0.9, 0.6, 0.95], [0.999, 0.9, 0.99]),
                               eps=[1e-8, 1e-4, 1e-6], weight_decay=[0.0, 1e-2, 1e-3],
                               r=[0.0, 0.5, 1.0], weight_lr_power=[2.0, 0.0, 1.0],
                               warmup_steps=4),
}  # fmt: skip
for _kwargs in SF_KW.values():  # betas as a tuple of [K] tensors
    if "betas" in _kwargs:
        _kwargs["betas"] = tuple(torch.tensor(b, dtype=f64) for b in _kwargs["betas"])


@pytest.mark.parametrize("name", list(SCHEDULE_FREE))
def test_train_eval_switch_matches_reference_per_member(name):
    """eval() puts each member at its x, train() back at its y, mid-run, as the reference."""
    ours_cls, ref_cls = SCHEDULE_FREE[name]
    pop = Population(ours_cls, ref_cls, [SF_KW[name]], 3, [[(4, 3), (3,)]],
                     ref_setup=lambda r: r.train())  # fmt: skip
    pop.ours.train()
    y_before = [p.detach().clone() for p in pop.params[0]]
    for _phase in range(3):
        pop.step(6)
        assert pop.error() <= TOL
        y = [p.detach().clone() for p in pop.params[0]]
        pop.ours.eval()
        for ref in pop.refs:
            ref.eval()
        assert pop.error() <= TOL, "eval(): parameters at x"
        assert all(pop.ours.param_groups[0]["train_mode"] is False for _ in [0])
        moved = max(_rel(p.detach(), q) for p, q in zip(pop.params[0], y, strict=True))
        assert moved > 1e-6, "x differs from y"
        pop.ours.eval()  # twice: a no-op, as the reference
        for ref in pop.refs:
            ref.eval()
        assert pop.error() <= TOL
        pop.ours.train()
        for ref in pop.refs:
            ref.train()
        assert pop.error() <= TOL, "train(): parameters back at y"
        assert max(_rel(p.detach(), q) for p, q in zip(pop.params[0], y, strict=True)) <= 1e-12
    assert any(not torch.equal(p.detach(), q) for p, q in zip(pop.params[0], y_before,
                                                              strict=True))  # fmt: skip
    for name_ in ("k", "lr_max", "weight_sum", "scheduled_lr"):
        for m in range(3):
            assert _rel_scalar(pop.ours.param_groups[0][name_][m],
                               pop.refs[m].param_groups[0][name_]) <= TOL, name_  # fmt: skip


@pytest.mark.parametrize("name", list(SCHEDULE_FREE))
def test_plain_module_train_eval_matches_reference(name):
    ours_cls, ref_cls = SCHEDULE_FREE[name]
    nets = []
    for _ in range(2):
        torch.manual_seed(0)
        nets.append(torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(),
                                        torch.nn.Linear(7, 1)))  # fmt: skip
    kwargs = mx.member(SF_KW[name], 0)
    ours, ref = ours_cls(nets[0].parameters(), **kwargs), ref_cls(nets[1].parameters(), **kwargs)
    g = torch.Generator().manual_seed(1)
    for opt in (ours, ref):
        opt.eval()  # before any state: nothing moves
        opt.train()
    for i in range(16):
        x, y = torch.randn(8, 5, generator=g), torch.randn(8, 1, generator=g)
        for net, opt in zip(nets, (ours, ref), strict=True):
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x), y).backward()
            opt.step()
        if i % 5 == 4:
            for opt in (ours, ref):
                opt.eval()
            for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
                assert _rel(a.detach(), b.detach()) <= TOL
            for opt in (ours, ref):
                opt.train()
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        assert _rel(a.detach(), b.detach()) <= TOL
    assert set(ours.state[next(nets[0].parameters())]) >= {"z"}


@pytest.mark.parametrize("name", list(SCHEDULE_FREE))
def test_step_in_eval_mode_raises_like_the_reference(name):
    ours_cls, ref_cls = SCHEDULE_FREE[name]
    p, q = torch.zeros(3, requires_grad=True), torch.zeros(3, requires_grad=True)
    ours, ref = ours_cls([p]), ref_cls([q])
    ours.eval()  # the reference starts in eval mode; ours in train mode (see the module doc)
    p.grad, q.grad = torch.ones(3), torch.ones(3)
    with pytest.raises(Exception, match="not in train mode") as ours_err:
        ours.step()
    with pytest.raises(Exception, match="not in train mode") as ref_err:
        ref.step()
    assert type(ours_err.value) is type(ref_err.value)
    assert str(ours_err.value) == str(ref_err.value)


@pytest.mark.parametrize("name", list(SCHEDULE_FREE))
def test_schedule_free_group_without_gradients_advances_like_the_reference(name):
    """The reference advances k, lr_max and weight_sum of a group without gradients too."""
    ours_cls, ref_cls = SCHEDULE_FREE[name]
    kw = SF_KW[name]
    pop = Population(ours_cls, ref_cls, [kw, kw], 3, [[(4, 3)], [(2,)]],
                     ref_setup=lambda r: r.train())  # fmt: skip
    pop.step(3, skip_grad=(1,))
    pop.step(5)
    assert pop.error() <= TOL
    for gi in (0, 1):
        for m in range(3):
            assert float(pop.ours.param_groups[gi]["k"][m]) == pop.refs[m].param_groups[gi]["k"]


# ------------------------------------------------------------------ per-member estimates
LR_FREE_KW = {
    "prodigy": _kw(lr=[1.0, 0.3, 3.0], betas=([0.9, 0.5, 0.99], [0.999, 0.9, 0.99]),
                   beta3=[0.95, 0.99, 0.9], eps=[1e-8, 1e-6, 1e-7], weight_decay=[0.0, 1e-2, 1e-1],
                   d0=[1e-6, 1e-4, 1e-7], d_coef=[1.0, 0.5, 2.0],
                   growth_rate=[float("inf"), 1.05, 2.0]),
    "dadapt_adam": _kw(lr=[1.0, 0.3, 3.0], betas=([0.9, 0.5, 0.99], [0.999, 0.9, 0.99]),
                       eps=[1e-8, 1e-6, 1e-7], weight_decay=[0.0, 1e-2, 1e-1],
                       d0=[1e-6, 1e-4, 1e-7], growth_rate=[float("inf"), 1.05, 2.0]),
    "dadapt_sgd": _kw(lr=[1.0, 0.3, 3.0], momentum=[0.0, 0.9, 0.5],
                      weight_decay=[0.0, 1e-2, 1e-1], d0=[1e-6, 1e-4, 1e-7],
                      growth_rate=[float("inf"), 1.05, 2.0]),
}  # fmt: skip
for _kwargs in LR_FREE_KW.values():
    if "betas" in _kwargs:
        _kwargs["betas"] = tuple(torch.tensor(b, dtype=f64) for b in _kwargs["betas"])


@pytest.mark.parametrize("name", list(LR_FREE))
def test_each_members_estimate_is_its_own(name):
    """Member k with hp[k] == the reference alone, d included, while the other members see
    gradients 1e6 times larger or smaller and very different hyperparameters."""
    ours_cls, ref_cls = LR_FREE[name]
    pop = Population(ours_cls, ref_cls, [LR_FREE_KW[name]], 3, [[(4, 3), (3,), (1,)]],
                     grad_scale=[1.0, 1e3, 1e-3], drift=0.5)  # fmt: skip
    pop.step(30)
    assert pop.error() <= TOL
    assert pop.estimate_error(ESTIMATES[name]) <= EST_TOL
    d = torch.as_tensor(pop.ours.param_groups[0]["d"])
    assert (d > 1.5 * torch.tensor([1e-6, 1e-4, 1e-7])).all(), "every member's d has grown"
    # member 1 alone (K = 1) has the same d, to the bit: nothing of the others leaks in
    alone = Population(ours_cls, ref_cls, [{n: _member_slice(v, 1) for n, v in
                                            LR_FREE_KW[name].items()}], 1,
                       [[(4, 3), (3,), (1,)]], grad_scale=[1e3], drift=0.5)  # fmt: skip
    alone.rng = torch.Generator().manual_seed(1)
    torch.manual_seed(0)
    alone.step(30)
    assert alone.error() <= TOL


def _member_slice(v, m):
    if isinstance(v, torch.Tensor):
        return v[m : m + 1].clone()
    if isinstance(v, tuple):
        return tuple(_member_slice(x, m) for x in v)
    return v


PRODIGY_OPTIONS = [
    {"decouple": False},
    {"betas": (0.0, 0.99)},  # no exp_avg: the reference's grad path
    {"slice_p": 3},
    {"safeguard_warmup": True, "use_bias_correction": True},
    {"beta3": None},
]


@pytest.mark.parametrize("extra", PRODIGY_OPTIONS, ids=lambda e: "-".join(e))
def test_prodigy_settings_the_matrix_leaves_at_defaults(extra):
    kw = {**LR_FREE_KW["prodigy"], **extra}
    pop = Population(oo.Prodigy, prodigyopt.Prodigy, [kw], 3, [[(5, 4), (7,)]],
                     grad_scale=[1.0, 10.0, 0.1])  # fmt: skip
    pop.step(25)
    assert pop.error() <= TOL
    assert pop.estimate_error(ESTIMATES["prodigy"]) <= EST_TOL
    p = pop.params[0][0]
    assert set(pop.ours.state[p]) - {"step"} == set(pop.refs[0].state[pop.twins[0][0][0]]) - {
        "step"
    }


@pytest.mark.parametrize("name", list(LR_FREE))
def test_groups_share_the_estimate_and_lr_zero_groups(name):
    """Two groups (the reference's estimate spans both; group 0's betas/momentum rule), and
    a second group whose lr is 0 for one member (no estimate contribution there)."""
    ours_cls, ref_cls = LR_FREE[name]
    kw_a = LR_FREE_KW[name]
    kw_b = {**kw_a, "lr": torch.tensor([1.0, 0.0, 3.0]), "weight_decay": 0.0}
    if "eps" in kw_a:
        kw_b["eps"] = 1e-5
    extra = {"layer_scale": torch.tensor([0.5, 2.0, 1.0])} if name == "dadapt_adam" else {}
    pop = Population(ours_cls, ref_cls, [kw_a, {**kw_b, **extra}], 3, [[(4, 3)], [(6,), (2, 2)]],
                     grad_scale=[1.0, 1e2, 1e-2])  # fmt: skip
    pop.step(20)
    assert pop.error() <= TOL
    assert pop.estimate_error(ESTIMATES[name]) <= EST_TOL


@pytest.mark.parametrize("name", list(LR_FREE))
def test_different_group_lrs_raise_like_the_reference(name):
    ours_cls, ref_cls = LR_FREE[name]
    for cls in (ours_cls, ref_cls):
        a, b = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
        opt = cls([{"params": [a], "lr": 1.0}, {"params": [b], "lr": 0.5}])
        a.grad, b.grad = torch.ones(2), torch.ones(2)
        with pytest.raises(RuntimeError, match="different lr values"):
            opt.step()


@pytest.mark.parametrize("name", list(LR_FREE))
def test_larger_tensors(name):
    """Vectorized kernels and long reductions (parameters: measured up to 8e-14)."""
    ours_cls, ref_cls = LR_FREE[name]
    pop = Population(ours_cls, ref_cls, [LR_FREE_KW[name]], 3, [[(64, 33), (257,)]], seed=3)
    pop.step(15)
    assert pop.error() <= TOL
    assert pop.estimate_error(("d",)) <= EST_TOL


@pytest.mark.parametrize("name", list(SCHEDULE_FREE))
def test_schedule_free_larger_tensors(name):
    ours_cls, ref_cls = SCHEDULE_FREE[name]
    pop = Population(ours_cls, ref_cls, [SF_KW[name]], 3, [[(64, 33), (257,)]], seed=3,
                     ref_setup=lambda r: r.train())  # fmt: skip
    pop.step(15)
    pop.ours.eval()
    for ref in pop.refs:
        ref.eval()
    assert pop.error() <= TOL


# ------------------------------------------------------------------ the core's options
@pytest.mark.parametrize("name", [*LR_FREE, *SCHEDULE_FREE])
def test_skip_nonfinite_keeps_the_members_estimates(name):
    """A member with a NaN gradient keeps its group estimates (d, k, ...) bit for bit; the
    others move exactly as without the option."""
    cls = {**LR_FREE, **SCHEDULE_FREE}[name][0]
    kw = {**LR_FREE_KW, **SF_KW}[name]
    rng = torch.Generator().manual_seed(0)
    p = torch.randn(3, 5, generator=rng).requires_grad_()
    q = p.detach().clone().requires_grad_()
    ours, plain = cls([p], members=3, skip_nonfinite=True, **kw), cls([q], members=3, **kw)
    names = cls.scalars
    for i in range(8):
        g = torch.randn(3, 5, generator=rng)
        p.grad, q.grad = g.clone(), g.clone()
        if i == 5:
            p.grad[1, 0] = float("nan")
            before = {n: torch.as_tensor(ours.param_groups[0][n]).clone() for n in names}
        ours.step()
        plain.step()
        if i == 5:
            for n in names:
                assert torch.equal(torch.as_tensor(ours.param_groups[0][n])[1], before[n][1]), n
                for m in (0, 2):
                    assert torch.equal(torch.as_tensor(ours.param_groups[0][n])[m],
                                       torch.as_tensor(plain.param_groups[0][n])[m]), n  # fmt: skip
            assert torch.equal(p.detach()[[0, 2]], q.detach()[[0, 2]])


@pytest.mark.parametrize("name", list(LR_FREE))
def test_reset_member_restarts_its_estimate(name):
    """reset_members: member 1 starts over (d = d0, k = 0, fresh state) from where its
    parameters are, the others continue: each equals a reference run doing the same."""
    ours_cls, ref_cls = LR_FREE[name]
    pop = Population(ours_cls, ref_cls, [LR_FREE_KW[name]], 3, [[(4, 3), (3,)]])
    pop.step(10)
    pop.ours.reset_members(torch.tensor([False, True, False]))
    pop.refs[1] = ref_cls(pop.twins[1][0], **mx.member(LR_FREE_KW[name], 1))
    assert float(pop.ours.param_groups[0]["k"][1]) == 0.0
    pop.step(10)
    assert pop.error() <= TOL
    assert pop.estimate_error(ESTIMATES[name]) <= EST_TOL


@pytest.mark.parametrize("name", [*LR_FREE, *SCHEDULE_FREE])
def test_copy_member_copies_the_estimates(name):
    cls = {**LR_FREE, **SCHEDULE_FREE}[name][0]
    kw = {**LR_FREE_KW, **SF_KW}[name]
    p = torch.randn(3, 4).requires_grad_()
    opt = cls([p], members=3, **kw)
    for _ in range(5):
        p.grad = torch.randn(3, 4)
        opt.step()
    opt.copy_member(0, 2)
    for n in cls.scalars:
        v = torch.as_tensor(opt.param_groups[0][n])
        assert v[2] == v[0], n
    for n, v in opt.state[p].items():
        assert torch.equal(v[2], v[0]), n


@pytest.mark.parametrize("name", [*LR_FREE, *SCHEDULE_FREE])
def test_state_dict_round_trip_mid_run(name):
    """Save mid-run (group estimates are tensors in the param groups), load into a new
    instance, continue: the same as never stopping."""
    cls = {**LR_FREE, **SCHEDULE_FREE}[name][0]
    kw = {**LR_FREE_KW, **SF_KW}[name]
    rng = torch.Generator().manual_seed(0)
    p = torch.randn(3, 4, generator=rng).requires_grad_()
    q = p.detach().clone().requires_grad_()
    whole, first = cls([p], members=3, **kw), cls([q], members=3, **kw)
    grads = [torch.randn(3, 4, generator=rng) for _ in range(12)]
    for i, g in enumerate(grads):
        if i == 6:
            saved = copy.deepcopy(first.state_dict())
            first = cls([q], members=3, **kw)
            first.load_state_dict(saved)
        p.grad, q.grad = g.clone(), g.clone()
        whole.step()
        first.step()
    assert torch.equal(p.detach(), q.detach())


# ------------------------------------------------------------------ arguments
@pytest.mark.parametrize("name", list(LR_FREE))
def test_fsdp_and_growth_rate_arguments(name):
    cls = LR_FREE[name][0]
    p = torch.zeros(2, requires_grad=True)
    cls([p], growth_rate=float("inf"))
    cls(
        [torch.zeros(3, 2, requires_grad=True)], growth_rate=torch.tensor([float("inf"), 1.02, 2.0])
    )
    with pytest.raises(ValueError, match=r"^fsdp_in_use"):
        cls([p], fsdp_in_use=True)
    with pytest.raises(ValueError, match=r"^d0"):
        cls([p], d0=0.0)
    with pytest.raises(ValueError, match=r"^lr"):
        cls([p], lr=0.0)


@pytest.mark.parametrize("name", [*LR_FREE, *SCHEDULE_FREE])
def test_constructor_matches_the_reference_signature(name):
    import inspect

    ours_cls, ref_cls = {**LR_FREE, **SCHEDULE_FREE}[name]
    ours = list(inspect.signature(ours_cls.__init__).parameters.values())
    ref = list(inspect.signature(ref_cls.__init__).parameters.values())
    ours = [x for x in ours if x.kind is not inspect.Parameter.VAR_KEYWORD]
    assert [x.name for x in ours] == [x.name for x in ref]
    for a, b in zip(ours, ref, strict=True):
        if a.default is not inspect.Parameter.empty:
            assert a.default == b.default, a.name


def test_trainer_validates_schedule_free_members_at_their_averaged_weights():
    """The population trainer switches a schedule-free optimizer to eval() (weights at x)
    for validation and for the weights it keeps, and back to train() (y) to continue."""
    from optimkit.data import load_dataset
    from optimkit.train import PopulationTrainer, TrainConfig

    data = load_dataset("iris", dtype=torch.float64)
    members = [{"lr": 0.5}, {"lr": 0.05}]
    config = TrainConfig(model="mlp", model_options={"hidden": (8,)},
                         optimizer="sgd_schedule_free", epochs=2, batch_size=16)  # fmt: skip
    trainer = PopulationTrainer(data, config, members)
    trainer.run_epoch()
    reported = trainer.history.curve("val_loss")[-1]
    y_weights = {n: p.detach().clone() for n, p in trainer.population.params.items()}
    trainer.optimizer.eval()
    at_x = trainer.evaluate(data.X_val, data.y_val)["loss"]
    x_weights = {n: p.detach().clone() for n, p in trainer.population.params.items()}
    trainer.optimizer.train()
    at_y = trainer.evaluate(data.X_val, data.y_val)["loss"]
    # (eval() then train() is y -> x -> y: exact up to rounding)
    torch.testing.assert_close(torch.as_tensor(reported, dtype=torch.float64), at_x,
                               rtol=1e-12, atol=0)  # fmt: skip
    assert (at_x - at_y).abs().max() > 1e-6
    for n, p in trainer.population.params.items():
        torch.testing.assert_close(p.detach(), y_weights[n], rtol=1e-12, atol=1e-14)
        assert (x_weights[n] - y_weights[n]).abs().max() > 1e-6
