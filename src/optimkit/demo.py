"""`make demo`: 16 MLPs with 16 Adam learning rates train on digits as one vectorized program.

The population is K copies of one nn.Module stacked with torch.func (stack_module_state +
functional_call + vmap); a single optimkit.optim.Adam with a [K] learning-rate tensor updates
them all at once.
"""

from __future__ import annotations

import time

import torch
from rich.console import Console
from rich.table import Table
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from optimkit.optim import Adam


def main(members: int = 16, epochs: int = 10, batch_size: int = 64, seed: int = 0) -> None:
    torch.manual_seed(seed)
    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=0.25, stratify=y, random_state=seed
    )
    scaler = StandardScaler().fit(x_train)
    x_train = torch.tensor(scaler.transform(x_train), dtype=torch.float32)
    x_val = torch.tensor(scaler.transform(x_val), dtype=torch.float32)
    y_train, y_val = torch.tensor(y_train), torch.tensor(y_val)

    models = [
        torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
        for _ in range(members)
    ]
    params, _ = torch.func.stack_module_state(models)
    base = models[0].to("meta")

    def forward(p: dict[str, torch.Tensor], xb: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(base, p, (xb,))

    def loss_fn(p: dict[str, torch.Tensor], xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(forward(p, xb), yb)

    grad_fn = torch.func.vmap(torch.func.grad(loss_fn), in_dims=(0, None, None))
    lrs = torch.logspace(-4, -0.5, members, dtype=torch.float64)
    optimizer = Adam(list(params.values()), lr=lrs)

    start = time.perf_counter()
    n = len(y_train)
    for _ in range(epochs):
        order = torch.randperm(n)
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            grads = grad_fn(params, x_train[idx], y_train[idx])
            for name, p in params.items():
                p.grad = grads[name]
            optimizer.step()
    elapsed = time.perf_counter() - start

    with torch.no_grad():
        logits = torch.func.vmap(forward, in_dims=(0, None))(params, x_val)
        accuracy = (logits.argmax(-1) == y_val).double().mean(dim=1)
    table = Table(title=f"{members} MLPs 64-128-10 on digits, Adam, {epochs} epochs")
    table.add_column("member", justify="right")
    table.add_column("lr", justify="right")
    table.add_column("val accuracy", justify="right")
    best = int(accuracy.argmax())
    for k in range(members):
        style = "bold green" if k == best else None
        table.add_row(str(k), f"{lrs[k]:.2e}", f"{accuracy[k]:.4f}", style=style)
    console = Console()
    console.print(table)
    console.print(
        f"trained {members} members in {elapsed:.1f} s "
        f"({1000 * elapsed / (members * epochs):.1f} ms per member-epoch)"
    )


if __name__ == "__main__":
    main()
