"""Population Based Training: optimkit's vectorized PBT against Ray Tune's, and PBT against TPE
at equal total epochs (issue 13).

Run: ``.venv/bin/python -m benchmarks pbt [--seeds 3] [--quick] [--no-ray] [--no-tpe]``.

Table 1, optimkit PBT vs Ray Tune PBT. The task: an MLP 64-128-10 (ReLU) on scikit-learn's
digits (standardized, stratified 70/15/15 split with the seed), Adam, batches of 64 (the same
shared batches on both sides: optimkit's `BatchSampler` with the seed), population 16, 20
epochs, a perturbation every 2 epochs, Ray's defaults otherwise (quantile_fraction 0.25,
resample_probability 0.25, perturbation factors 1.2/0.8), synchronous (Ray's ``synch=True``,
which is what optimkit's PBT does), mutations of lr in [1e-4, 1e-1] and weight decay in
[1e-6, 1e-2] (both log-uniform). Both sides start from the same 16 members (optimkit draws
them; Ray gets them as ``points_to_evaluate``, with their seeds, so the same initial weights).
The score ranked is the validation accuracy after each epoch; the result is the member with
the best final validation accuracy, and its test accuracy with its last weights.

* optimkit: ``optimkit.tune.pbt.pbt`` on one `PopulationTrainer` of 16 members (exploit: a
  tensor copy between slots; explore: a write into the [K] hyperparameter tensors), one thread.
* Ray Tune: ``ray.tune.Tuner`` with ``ray.tune.schedulers.PopulationBasedTraining`` on a
  function trainable (one ``nn.Module`` built by the same builder from the member's seed,
  ``torch.optim.Adam``, one thread), which reports every epoch and saves a
  ``ray.tune.Checkpoint`` (model and optimizer state) at every perturbation epoch and resumes
  from ``ray.tune.get_checkpoint()``: Ray's exploit restores the source trial's checkpoint.
  ``ray.init(num_cpus=2)``, ``--ray-cpus`` CPUs per trial (default 0.5: four trials at once),
  Ray's default result loggers, storage in a temporary folder. Wall: ``Tuner.fit()`` only
  (``ray.init`` is reported apart).

Ray perturbs a value without clipping it into its range; optimkit clips (a perturbed lr stays
a valid hyperparameter). The random draws differ between the two, so their lineages differ.

Table 2, PBT vs TPE at equal total epochs: on digits MLP (as above) and on a small
Fashion-MNIST CNN (conv 8 -> conv 16 -> dense 32 -> 10, 2,000 training, 1,000 validation and
2,000 test images, batch 64), PBT with population P for E epochs against optimkit's tuner with
TPE (seed, multivariate, constant liar) running P trials of E epochs each (P x E epochs both)
over the same space, P/4 trials at a time so TPE learns from the earlier ones (digits: P = 16,
E = 20; CNN: P = 8, E = 6; a perturbation every 2 epochs). Optuna's TPE starts with 10 random
trials, so at 16 trials 6 are model-based and at 8 trials TPE is a random search: that is what
an equal budget of P x E epochs buys it. PBT's value is
its best member's final validation accuracy (its last weights); a TPE trial's value is its
best validation accuracy over its epochs (Optuna's usual report) and its test accuracy is that
of its best weights.

An untimed warm-up PBT run comes first (the first population's one-time costs). Threads are
pinned to one (``torch.set_num_threads``, threadpoolctl). Timings depend on the
machine and its load (note ``uptime``); compare ratios measured in one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
import torch
from rich.console import Console

from benchmarks.threads import pinned
from optimkit.data import Dataset, load_dataset
from optimkit.train import TrainConfig
from optimkit.tune import SearchSpace, StudyMirror, Tuner, make_pruner, make_sampler, open_storage
from optimkit.tune.pbt import PopulationBasedTraining, pbt

SPACE = {
    "lr": {"low": 1e-4, "high": 1e-1, "log": True},
    "weight_decay": {"low": 1e-6, "high": 1e-2, "log": True},
}
POPULATION, EPOCHS, INTERVAL, BATCH, HIDDEN = 16, 20, 2, 64, 128
CNN = {"image_shape": (1, 28, 28), "channels": (8, 16), "hidden": (32,)}
CNN_SIZES = (2000, 1000, 2000)  # train, validation, test images


@dataclass
class Outcome:
    """One run: wall seconds, the best member's (or trial's) validation and test accuracy."""

    side: str
    seed: int
    seconds: float
    val: float
    test: float
    extra: dict[str, Any]


# ------------------------------------------------------------------------------- optimkit
def digits(seed: int) -> Dataset:
    return load_dataset("digits", seed=seed)


def mlp_config(seed: int, epochs: int) -> TrainConfig:
    return TrainConfig(model="mlp", model_options={"hidden": (HIDDEN,)}, optimizer="adam",
                       epochs=epochs, batch_size=BATCH, seed=seed, monitor="val_accuracy",
                       restore_best=False)  # fmt: skip


def space() -> SearchSpace:
    return SearchSpace.from_config(SPACE, "adam", replace_defaults=True)


def optimkit_pbt(
    ds: Dataset, config: TrainConfig, seed: int, population: int, interval: int
) -> tuple[Outcome, list[dict[str, Any]]]:
    """optimkit's PBT; also returns its initial members (lr, weight_decay, seed)."""
    start = time.perf_counter()
    scheduler = PopulationBasedTraining(perturbation_interval=interval, seed=seed)
    result = pbt(ds, config, space(), population=population, scheduler=scheduler)
    seconds = time.perf_counter() - start
    trainer = result.trainer
    assert trainer is not None and trainer.test_results is not None
    best = result.best_member
    test = float(trainer.test_results["accuracy"][best])
    members = [{"lr": m["lr"], "weight_decay": m["weight_decay"], "seed": m["seed"]}
               for m in result.initial]  # fmt: skip
    outcome = Outcome("optimkit", seed, seconds, result.scores[best], test,
                      {"perturbations": len(result.perturbations)})  # fmt: skip
    return outcome, members


# -------------------------------------------------------------------------------- Ray Tune
def ray_data(ds: Dataset, seed: int, epochs: int, interval: int) -> dict[str, Any]:
    """What a Ray trial gets (through ``tune.with_parameters``): the split and the budget."""
    return {"X_train": ds.X_train, "y_train": ds.y_train, "X_val": ds.X_val, "y_val": ds.y_val,
            "X_test": ds.X_test, "y_test": ds.y_test, "seed": seed, "epochs": epochs,
            "interval": interval}  # fmt: skip


def train_member(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    data: dict[str, Any],
    epoch: int,
    on_epoch: Any,
) -> None:
    """Epochs epoch+1.. of one plain torch member on the shared batches (optimkit's
    `BatchSampler` with the seed, as optimkit's population draws them); after each,
    ``on_epoch(epoch, val_accuracy, test_accuracy)``."""
    import torch.nn.functional as F

    from optimkit.data import BatchSampler

    X, y = data["X_train"], data["y_train"]
    sampler = BatchSampler(len(X), batch_size=BATCH, seed=int(data["seed"]))
    while epoch < data["epochs"]:
        epoch += 1
        model.train()
        for idx in sampler.batches(epoch - 1):
            opt.zero_grad()
            F.cross_entropy(model(X[idx]), y[idx]).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            val = (model(data["X_val"]).argmax(1) == data["y_val"]).double().mean().item()
            test = (model(data["X_test"]).argmax(1) == data["y_test"]).double().mean().item()
        on_epoch(epoch, val, test)


def ray_trainable(config: dict[str, Any], data: dict[str, Any]) -> None:
    """One PBT member for Ray Tune: torch.optim.Adam on one module (`train_member`), a report
    per epoch, a checkpoint (model and optimizer state) at every perturbation epoch."""
    from ray import tune

    from optimkit.models import build_model

    torch.set_num_threads(1)
    torch.manual_seed(int(config["seed"]))
    model = build_model("mlp", data["X_train"].shape[1], 10, hidden=(HIDDEN,))
    model = model.to(data["X_train"].dtype)
    opt = torch.optim.Adam(model.parameters(), lr=config["lr"],
                           weight_decay=config["weight_decay"])  # fmt: skip
    epoch = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a restart, or an exploit of another trial's checkpoint
        with checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / "state.pt", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        epoch = int(state["epoch"])
        for group in opt.param_groups:  # explore: the new trial's hyperparameters
            group["lr"], group["weight_decay"] = config["lr"], config["weight_decay"]

    def report(epoch: int, val: float, test: float) -> None:
        metrics = {"val_accuracy": val, "test_accuracy": test}
        if epoch % data["interval"] and epoch != data["epochs"]:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as folder:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                        "epoch": epoch}, Path(folder) / "state.pt")  # fmt: skip
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    train_member(model, opt, data, epoch, report)


def ray_pbt(
    ds: Dataset,
    seed: int,
    members: list[dict[str, Any]],
    epochs: int,
    interval: int,
    cpus: float,
) -> Outcome:
    """Ray Tune's PopulationBasedTraining of `members` (already in a running ray)."""
    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining as RayPBT
    from ray.tune.search.basic_variant import BasicVariantGenerator

    scheduler = RayPBT(
        time_attr="training_iteration", perturbation_interval=interval, synch=True,
        hyperparam_mutations={"lr": tune.loguniform(1e-4, 1e-1),
                              "weight_decay": tune.loguniform(1e-6, 1e-2)},
        quantile_fraction=0.25, resample_probability=0.25, perturbation_factors=(1.2, 0.8),
    )  # fmt: skip
    data = ray_data(ds, seed, epochs, interval)
    trainable = tune.with_resources(tune.with_parameters(ray_trainable, data=data),
                                    {"cpu": cpus})  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="pbt-ray-") as storage:
        tuner = tune.Tuner(
            trainable,
            param_space={"lr": tune.loguniform(1e-4, 1e-1),
                         "weight_decay": tune.loguniform(1e-6, 1e-2), "seed": 0},
            tune_config=tune.TuneConfig(
                metric="val_accuracy", mode="max", scheduler=scheduler,
                num_samples=len(members), reuse_actors=True,
                search_alg=BasicVariantGenerator(points_to_evaluate=[dict(m) for m in members]),
            ),
            run_config=tune.RunConfig(storage_path=storage, name=f"pbt-{seed}", verbose=0),
        )  # fmt: skip
        start = time.perf_counter()
        grid = tuner.fit()
        seconds = time.perf_counter() - start
    best = grid.get_best_result(metric="val_accuracy", mode="max", scope="last")
    errors = sum(grid[i].error is not None for i in range(len(grid)))
    metrics = best.metrics or {}
    return Outcome("ray", seed, seconds, float(metrics["val_accuracy"]),
                   float(metrics["test_accuracy"]), {"errors": errors})  # fmt: skip


def start_ray() -> float:
    """ray.init(num_cpus=2) (local, no dashboard, quiet); returns its seconds."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    import ray

    start = time.perf_counter()
    root = str(Path(__file__).resolve().parents[1])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": root, "OMP_NUM_THREADS": "1"}})  # fmt: skip
    return time.perf_counter() - start


# ------------------------------------------------------------------------- PBT against TPE
def fashion(seed: int, sizes: tuple[int, int, int] = CNN_SIZES) -> Dataset:
    """Fashion-MNIST (standardized on its training images) cut to `sizes` images."""
    ds = load_dataset("fashion-mnist", seed=seed)
    n_train, n_val, n_test = sizes
    return replace(ds, X_train=ds.X_train[:n_train], y_train=ds.y_train[:n_train],
                   X_val=ds.X_val[:n_val], y_val=ds.y_val[:n_val], X_test=ds.X_test[:n_test],
                   y_test=ds.y_test[:n_test])  # fmt: skip


def cnn_config(seed: int, epochs: int) -> TrainConfig:
    return TrainConfig(model="cnn", model_options=dict(CNN), optimizer="adam", epochs=epochs,
                       batch_size=BATCH, seed=seed, monitor="val_accuracy",
                       restore_best=False)  # fmt: skip


def optimkit_tpe(ds: Dataset, config: TrainConfig, seed: int, trials: int) -> Outcome:
    """optimkit's tuner with TPE: `trials` trials of config.epochs epochs, trials/4 at once;
    a trial's value is its best validation accuracy, its test accuracy that of those weights."""
    base = replace(config, restore_best=True)
    with tempfile.TemporaryDirectory(prefix="pbt-tpe-") as folder:
        start = time.perf_counter()
        mirror = StudyMirror(open_storage(None, Path(folder)), "tpe", ["maximize"],
                             make_sampler("tpe", space(), seed),
                             make_pruner("none", config.epochs))  # fmt: skip
        tuner = Tuner(ds, base, space(), mirror, trials=trials,
                      population=max(trials // 4, 1), metric="accuracy")  # fmt: skip
        result = tuner.run()
        seconds = time.perf_counter() - start
    assert result.best_value is not None
    return Outcome("tpe", seed, seconds, result.best_value, result.test["accuracy"], {})


# ------------------------------------------------------------------------------- the run
@dataclass(frozen=True)
class Sizes:
    population: int
    epochs: int
    interval: int
    cnn_population: int
    cnn_epochs: int
    cnn_images: tuple[int, int, int]


FULL = Sizes(POPULATION, EPOCHS, INTERVAL, 8, 6, CNN_SIZES)
QUICK = Sizes(4, 4, 2, 4, 2, (256, 128, 128))


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _cells(values: list[float], fmt: str) -> str:
    return " / ".join(format(v, fmt) for v in values)


def ray_table(rows: list[tuple[Outcome, Outcome | None]], init: float | None) -> str:
    """Table 1 (markdown): per seed, and medians (optimkit's columns alone without Ray)."""
    if all(r is None for _, r in rows):
        lines = ["| seed | optimkit s | optimkit test acc | optimkit val acc |",
                 "|---:|---:|---:|---:|"]  # fmt: skip
        lines += [f"| {m.seed} | {m.seconds:.2f} | {m.test:.4f} | {m.val:.4f} |" for m, _ in rows]
        return "\n".join([*lines, "\nRay Tune skipped (--no-ray)"])
    lines = ["| seed | optimkit s | Ray Tune s | Ray / optimkit | optimkit test acc | "
             "Ray test acc | optimkit val acc | Ray val acc |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for mine, ray in rows:
        r = ray or Outcome("ray", mine.seed, float("nan"), float("nan"), float("nan"), {})
        lines.append(f"| {mine.seed} | {mine.seconds:.2f} | {r.seconds:.1f} | "
                     f"{r.seconds / mine.seconds:.0f}x | {mine.test:.4f} | {r.test:.4f} | "
                     f"{mine.val:.4f} | {r.val:.4f} |")  # fmt: skip
    ours = [m for m, _ in rows]
    rays = [r for _, r in rows if r is not None]
    ratio = _median([r.seconds / m.seconds for m, r in rows if r is not None])
    med = {k: (_median([getattr(o, k) for o in ours]), _median([getattr(o, k) for o in rays]))
           for k in ("seconds", "test", "val")}  # fmt: skip
    lines.append(f"| median | {med['seconds'][0]:.2f} | {med['seconds'][1]:.1f} | {ratio:.0f}x | "
                 f"{med['test'][0]:.4f} | {med['test'][1]:.4f} | {med['val'][0]:.4f} | "
                 f"{med['val'][1]:.4f} |")  # fmt: skip
    if init is not None:
        lines.append(f"\nray.init(num_cpus=2): {init:.1f} s (not in the Ray column)")
    return "\n".join(lines)


def tpe_table(results: dict[str, dict[str, list[Outcome]]], budgets: dict[str, str]) -> str:
    """Table 2 (markdown): per task and method, the medians over seeds and each seed's value."""
    lines = ["| task | method | epochs in all | best val acc: median (per seed) | "
             "test acc: median (per seed) | wall s (median) |",
             "|---|---|---:|---|---|---:|"]  # fmt: skip
    for task, methods in results.items():
        for method, runs in methods.items():
            vals, tests = [o.val for o in runs], [o.test for o in runs]
            wall = _median([o.seconds for o in runs])
            lines.append(f"| {task} | {method} | {budgets[task]} | {_median(vals):.4f} "
                         f"({_cells(vals, '.4f')}) | {_median(tests):.4f} "
                         f"({_cells(tests, '.4f')}) | {wall:.1f} |")  # fmt: skip
    return "\n".join(lines)


def run(
    seeds: int = 3,
    sizes: Sizes = FULL,
    with_ray: bool = True,
    with_tpe: bool = True,
    ray_cpus: float = 0.5,
    console: Console | None = None,
) -> dict[str, Any]:
    """Both tables; returns them (markdown) and the outcomes."""
    console = console or Console()
    s = sizes
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with pinned(1):  # untimed warm-up: the first population's one-time costs
        pbt(digits(0), mlp_config(0, 2), space(), population=2,
            scheduler=PopulationBasedTraining(perturbation_interval=1))  # fmt: skip
    ray_rows: list[tuple[Outcome, Outcome | None]] = []
    results: dict[str, dict[str, list[Outcome]]] = {}
    init = start_ray() if with_ray else None
    try:
        digits_task = f"digits MLP (P={s.population}, E={s.epochs})"
        results[digits_task] = {"PBT": [], "TPE": []}
        for seed in range(seeds):
            ds = digits(seed)
            with pinned(1):
                mine, members = optimkit_pbt(ds, mlp_config(seed, s.epochs), seed,
                                             s.population, s.interval)  # fmt: skip
            ray = ray_pbt(ds, seed, members, s.epochs, s.interval, ray_cpus) if with_ray else None
            ray_rows.append((mine, ray))
            results[digits_task]["PBT"].append(mine)
            theirs = f"; Ray {ray.seconds:.1f} s, test {ray.test:.4f}" if ray else ""
            console.print(f"seed {seed}: optimkit {mine.seconds:.2f} s, test {mine.test:.4f}"
                          f"{theirs}")  # fmt: skip
            if with_tpe:
                with pinned(1):
                    results[digits_task]["TPE"].append(
                        optimkit_tpe(ds, mlp_config(seed, s.epochs), seed, s.population)
                    )
    finally:
        if with_ray:
            import ray as ray_module

            ray_module.shutdown()
    budgets = {digits_task: f"{s.population} x {s.epochs}"}
    if with_tpe:
        cnn_task = (f"Fashion-MNIST CNN, {s.cnn_images[0]} images (P={s.cnn_population}, "
                    f"E={s.cnn_epochs})")  # fmt: skip
        budgets[cnn_task] = f"{s.cnn_population} x {s.cnn_epochs}"
        results[cnn_task] = {"PBT": [], "TPE": []}
        for seed in range(seeds):
            ds = fashion(seed, s.cnn_images)
            config = cnn_config(seed, s.cnn_epochs)
            with pinned(1):
                results[cnn_task]["PBT"].append(
                    optimkit_pbt(ds, config, seed, s.cnn_population, s.interval)[0]
                )
                results[cnn_task]["TPE"].append(optimkit_tpe(ds, config, seed, s.cnn_population))
            console.print(f"CNN seed {seed}: PBT test {results[cnn_task]['PBT'][-1].test:.4f}, "
                          f"TPE test {results[cnn_task]['TPE'][-1].test:.4f}")  # fmt: skip
    else:
        results[digits_task].pop("TPE")
    tables = {"ray": ray_table(ray_rows, init), "tpe": tpe_table(results, budgets)}
    return {"tables": tables, "ray_rows": ray_rows, "results": results}


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks pbt", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--seeds", type=int, default=3, help="seeds (default 3)")
    parser.add_argument("--quick", action="store_true", help="small sizes, one seed")
    parser.add_argument("--no-ray", action="store_true", help="skip Ray Tune")
    parser.add_argument("--no-tpe", action="store_true", help="skip PBT vs TPE")
    parser.add_argument("--ray-cpus", type=float, default=0.5, help="CPUs per Ray trial")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.ray_cpus <= 0:
        parser.error("--seeds: expected >= 1; --ray-cpus: expected > 0")
    console = Console()
    load = os.getloadavg()
    start = time.perf_counter()
    out = run(1 if args.quick else args.seeds, QUICK if args.quick else FULL,
              with_ray=not args.no_ray, with_tpe=not args.no_tpe, ray_cpus=args.ray_cpus,
              console=console)  # fmt: skip
    after = os.getloadavg()
    print(
        f"\n### optimkit PBT vs Ray Tune PBT (digits MLP, population "
        f"{(QUICK if args.quick else FULL).population}, one thread each)\n"
    )
    print(out["tables"]["ray"])
    print("\n### PBT vs TPE at equal total epochs\n")
    print(out["tables"]["tpe"])
    print(
        f"\nload average (1 min) {load[0]:.1f} at the start, {after[0]:.1f} at the end; "
        f"{time.perf_counter() - start:.0f} s in all"
    )


def main() -> None:
    cli([])


if __name__ == "__main__":
    cli()
