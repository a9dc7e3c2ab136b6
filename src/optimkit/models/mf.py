"""Matrix factorization with user and item biases for ratings (Koren, Bell & Volinsky, 2009,
"Matrix Factorization Techniques for Recommender Systems", IEEE Computer 42(8)).

Input: integer index pairs ``x = [B, 2]`` (column 0 user, column 1 item). Output ``[B, 1]``:

    r_hat(u, i) = <p_u, q_i> + b_u + b_i + mu

p_u, q_i ~ N(0, init_std^2) in R^dim; b_u, b_i start at 0 and mu at ``global_bias`` (e.g. the
mean training rating). Regularize p, q, b through the optimizer's weight decay.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from optimkit.models.checks import finite_float, positive_int


class MatrixFactorization(nn.Module):
    """Biased matrix factorization; options ``n_users``, ``n_items`` (required), ``dim``
    (default 16), ``init_std`` (default 0.1) and ``global_bias`` (default 0.0)."""

    def __init__(
        self,
        n_features: int = 2,
        n_outputs: int = 1,
        *,
        n_users: int,
        n_items: int,
        dim: int = 16,
        init_std: float = 0.1,
        global_bias: float = 0.0,
    ) -> None:
        super().__init__()
        if n_features != 2:
            raise ValueError(f"n_features: 'mf' takes (user, item) pairs, 2, got {n_features!r}")
        if n_outputs != 1:
            raise ValueError(f"n_outputs: 'mf' predicts one rating, 1, got {n_outputs!r}")
        self.n_users = positive_int("n_users", n_users)
        self.n_items = positive_int("n_items", n_items)
        self.dim = positive_int("dim", dim)
        self.init_std = finite_float("init_std", init_std, positive=True)
        global_bias = finite_float("global_bias", global_bias)
        self.user = nn.Embedding(self.n_users, self.dim)
        self.item = nn.Embedding(self.n_items, self.dim)
        self.user_bias = nn.Embedding(self.n_users, 1)
        self.item_bias = nn.Embedding(self.n_items, 1)
        self.global_bias = nn.Parameter(torch.full((1,), global_bias))
        nn.init.normal_(self.user.weight, std=self.init_std)
        nn.init.normal_(self.item.weight, std=self.init_std)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)

    def forward(self, x: Tensor) -> Tensor:
        users, items = x[..., 0], x[..., 1]
        dot = (self.user(users) * self.item(items)).sum(-1, keepdim=True)
        return dot + self.user_bias(users) + self.item_bias(items) + self.global_bias
