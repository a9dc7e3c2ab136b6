"""The workers of a study as Ray actors (`optimkit tune --ray [ADDRESS]`).

Without an address a local Ray instance is started (or the one this process already
initialized is used); with ``auto`` or ``HOST:PORT`` the driver joins an existing cluster.
By default one actor runs per alive node (per GPU where the study trains on CUDA and the nodes
have GPUs); ``--workers N`` asks for N actors, spread over the nodes. Each actor is a
population tuner (`optimkit.tune.workers.run_worker`) on the study's storage, which on a
cluster of several machines must be a database server (PostgreSQL, or Optuna's gRPC storage
proxy in front of one, ``grpc://HOST:PORT``). A killed actor (``ray.kill``, a lost node)
leaves a claim whose slots the other actors take over: on the same machine at once (its
process is gone), elsewhere once its heartbeat is older than the grace period.

Ray is an optional extra: ``pip install 'optimkit[ray]'``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

NAMESPACE = "optimkit"


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ValueError("--ray needs Ray, which is not installed: pip install 'optimkit[ray]' "
                         "(or pip install 'ray>=2.9')") from None  # fmt: skip
    return ray


class TuneWorker:
    """A Ray actor: one population tuner on the study (see `run_worker`)."""

    def __init__(self, threads: int) -> None:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)

    def pid(self) -> int:
        return os.getpid()

    def run(self, spec: str, study_name: str, threads: int, index: int) -> dict[str, Any]:
        from optimkit.tune.workers import run_worker

        try:
            return run_worker(spec, study_name, threads=threads, index=index)
        except Exception as e:  # one line for the driver, as a worker process prints it
            text = str(e).strip().splitlines()
            return {"index": index, "exit": 2, "pid": os.getpid(),
                    "error": text[0] if text else type(e).__name__}  # fmt: skip


@dataclass
class Plan:
    """The actors of a run: how many, pinned to which nodes (None: spread), each with
    `num_cpus` and `num_gpus` of Ray's resources and `threads` torch threads."""

    count: int
    nodes: list[str] | None
    num_cpus: float
    num_gpus: int
    threads: int


def plan_actors(
    nodes: list[dict[str, Any]],
    cluster_cpus: float,
    workers: int | None,
    device: str,
    threads: int | None,
) -> Plan:
    """The actors for the alive `nodes` (as ``ray.nodes()`` lists them): a study on CUDA on a
    cluster with GPUs gets one actor per GPU (``num_gpus=1`` each: Ray gives each its own
    CUDA_VISIBLE_DEVICES), else one actor per node (pinned to it); `workers` overrides the
    count (spread; still one GPU each on CUDA). `threads` (None: an equal share of the
    smallest node's CPUs) and `num_cpus` (at most the cluster's CPUs over the actors, so
    every actor can be placed)."""
    gpus = int(sum(n["Resources"].get("GPU", 0) for n in nodes))
    per_gpu = device == "cuda" and gpus > 0
    if workers is not None:
        count, pinned = workers, None
    elif per_gpu:
        count, pinned = gpus, None
    else:
        count, pinned = len(nodes), [n["NodeID"] for n in nodes]
    if threads is None:  # an equal share of a node's CPUs
        per_node = min(float(n["Resources"].get("CPU", 1)) for n in nodes)
        threads = max(1, int(per_node * len(nodes) // count)) if count else 1
    need = min(float(threads), cluster_cpus / max(count, 1))
    return Plan(count, pinned, need, 1 if per_gpu else 0, threads)


def actor_name(study_name: str, index: int) -> str:
    return f"optimkit-worker:{study_name}:{index}"


def run_ray(
    spec: str,
    study_name: str,
    scale: Any,
    threads: int | None,
    options: Any,
    tick: Callable[[], None],
    on_start: Callable[[list[Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Start the actors, wait for them (calling `tick` to show progress), and return one line
    per actor; an actor that died is a line with its error."""
    ray = _ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from optimkit.tune.workers import is_local_file

    started_here = False
    if not ray.is_initialized():
        address = None if scale.address in (None, "", "local") else scale.address
        ray.init(address=address, namespace=NAMESPACE, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)  # fmt: skip
        started_here = True
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        if len(nodes) > 1 and is_local_file(spec):
            raise ValueError(
                f"storage: a journal file ({spec}) is on this machine only; a Ray cluster of "
                f"{len(nodes)} nodes needs a database server: --storage postgresql://... (or "
                "grpc://HOST:PORT, Optuna's storage proxy in front of one)"
            )
        cpus = float(ray.cluster_resources().get("CPU", 1))
        plan = plan_actors(nodes, cpus, scale.workers, options.device, threads)
        count, threads = plan.count, plan.threads
        actors = []
        for i in range(count):
            opts: dict[str, Any] = {"num_cpus": plan.num_cpus, "num_gpus": plan.num_gpus,
                                    "name": actor_name(study_name, i), "namespace": NAMESPACE,
                                    "max_restarts": 0}  # fmt: skip
            pin = None if plan.nodes is None else plan.nodes[i]
            opts["scheduling_strategy"] = "SPREAD" if pin is None else \
                NodeAffinitySchedulingStrategy(pin, soft=False)  # fmt: skip
            actors.append(ray.remote(TuneWorker).options(**opts).remote(threads))
        futures = {actor.run.remote(spec, study_name, threads, i): i
                   for i, actor in enumerate(actors)}  # fmt: skip
        if on_start is not None:
            on_start(actors)
        lines: dict[int, dict[str, Any]] = {}
        pending = list(futures)
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=0.2)
            tick()
            for ref in done:
                i = futures[ref]
                try:
                    lines[i] = ray.get(ref)
                except ray.exceptions.RayActorError as e:
                    text = str(e).strip().splitlines() or ["killed"]
                    lines[i] = {"index": i, "exit": "killed", "error": f"actor died ({text[0]})"}
                except ray.exceptions.RayError as e:
                    lines[i] = {"index": i, "exit": "failed", "error": str(e).splitlines()[0]}
        for actor in actors:
            ray.kill(actor, no_restart=True)
        return [lines[i] for i in range(count)]
    finally:
        if started_here:
            ray.shutdown()
