"""text: who typed the tweet? dslabs/trump_tweets by ``source`` (Twitter for Android vs
Twitter for iPhone; the other sources are dropped), a small transformer encoder trained by
optimkit's AdamW with linear warm-up + cosine decay, against TF-IDF + scikit-learn's
LogisticRegression, on the same fixed stratified split in the same run.

Split: stratified by class, fixed by the seed (`split_tweets`): 70% train, 15% validation,
15% test. Both methods see the same tokens (`optimkit.apps._tokens.tokenize`: lowercase words,
@mentions, #hashtags, ``<url>``, punctuation), learn their vocabulary from the training part
only, choose their setting by validation macro F1, and are scored on the test part:
accuracy and macro F1 (the unweighted mean over the two classes of F1 = 2PR / (P + R)).

optimkit: a population of K encoders (one per learning rate, each from its own seed) trained as
one vectorized program (`population_logits`: every weight is a stacked [K, ...] tensor, the
members' matmuls are batched; member k computes exactly what `TweetEncoder` does with its
weights). Each member: token + learned position embedding, pre-norm
``nn.TransformerEncoderLayer`` blocks (ReLU feed-forward), mean over the non-padding positions,
linear head; cross-entropy; AdamW (decoupled weight decay on the matrices, gradient norm clipped
at 1 per member) with the lr warmed up linearly over the first 10% of the steps, then cosine
annealed to 0 (`warmup_cosine`). Reference for the layer: Vaswani et al. 2017, pre-norm as in
Xiong et al. 2020; the split AdamW of Loshchilov & Hutter 2019.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from optimkit.apps._tokens import Vocabulary, tokenize
from optimkit.apps.base import App, AppOptions, AppResult, progress_bar

SOURCES = {"Twitter for Android": 0, "Twitter for iPhone": 1}
CLASSES = ("Android", "iPhone")


# --------------------------------------------------------------------------- data and split
@dataclass
class Tweets:
    texts: list[str]
    labels: np.ndarray  # 0 Android, 1 iPhone


def load_tweets(quick: bool = False, seed: int = 0, quick_size: int = 600) -> Tweets:
    """dslabs/trump_tweets, Android and iPhone tweets only; quick: a stratified random
    `quick_size` of them (fixed by `seed`)."""
    from optimkit.data.sources import read_rdataset

    frame = read_rdataset("dslabs", "trump_tweets")
    frame = frame[frame["source"].isin(list(SOURCES))].reset_index(drop=True)
    labels = frame["source"].map(SOURCES).to_numpy(dtype=np.int64)
    texts = frame["text"].astype(str).tolist()
    if quick:
        from sklearn.model_selection import train_test_split

        keep, _ = train_test_split(np.arange(len(labels)), train_size=quick_size,
                                   stratify=labels, random_state=seed + 1000)  # fmt: skip
        keep = np.sort(keep)
        texts, labels = [texts[i] for i in keep], labels[keep]
    return Tweets(texts, labels)


def split_tweets(
    labels: np.ndarray, seed: int = 0, val: float = 0.15, test: float = 0.15
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) sorted row indices: stratified by label (scikit-learn's
    train_test_split), disjoint, determined by `seed`."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(labels))
    rest, test_rows = train_test_split(rows, test_size=test, stratify=labels,
                                       random_state=seed)  # fmt: skip
    train, val_rows = train_test_split(rest, test_size=val / (1 - test), stratify=labels[rest],
                                       random_state=seed)  # fmt: skip
    return np.sort(train), np.sort(val_rows), np.sort(test_rows)


def scores(y: np.ndarray, pred: np.ndarray, n_classes: int = 2) -> dict[str, float]:
    """Accuracy and macro F1 (a class never predicted and never true is left out, as
    scikit-learn's labels=None does)."""
    y, pred = np.asarray(y), np.asarray(pred)
    f1 = []
    for c in range(n_classes):
        tp = np.sum((pred == c) & (y == c))
        fp, fn = np.sum((pred == c) & (y != c)), np.sum((pred != c) & (y == c))
        if tp + fp + fn:
            f1.append(2 * tp / (2 * tp + fp + fn))
    return {"accuracy": float(np.mean(y == pred)), "macro_f1": float(np.mean(f1))}


# --------------------------------------------------------------------------- the model
class TweetEncoder(nn.Module):
    """One member: ids [B, L] (0 = padding) -> logits [B, n_classes]."""

    def __init__(self, vocab_size: int, max_len: int, dim: int = 64, heads: int = 4,
                 ff: int = 128, layers: int = 1, dropout: float = 0.1,
                 n_classes: int = 2) -> None:  # fmt: skip
        super().__init__()
        self.tok = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.pos = nn.Embedding(max_len, dim)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, heads, ff, dropout, batch_first=True, norm_first=True)
            for _ in range(layers)
        )
        self.head = nn.Linear(dim, n_classes)

    def forward(self, ids: Tensor) -> Tensor:
        pad = ids == 0
        z = self.tok(ids) + self.pos.weight[: ids.shape[1]]
        for layer in self.layers:
            z = layer(z, src_key_padding_mask=pad)
        keep = (~pad).unsqueeze(-1).to(z.dtype)
        return self.head((z * keep).sum(1) / keep.sum(1))


def _linear(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """x [K, N, in] @ w[k]^T + b[k] per member (w [K, out, in], b [K, out])."""
    return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))


def _norm(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    return F.layer_norm(x, x.shape[-1:]) * w.unsqueeze(1) + b.unsqueeze(1)


def population_logits(
    params: dict[str, Tensor], ids: Tensor, *, heads: int, dropout: float, train: bool
) -> Tensor:
    """[K, B, n_classes]: member k's `TweetEncoder.forward` on shared ids [B, L] with weights
    ``params[name][k]`` (the names of TweetEncoder's state_dict), every member at once.
    Dropout (train=True) draws independent masks per member."""
    p = dropout if train else 0.0
    tok = params["tok.weight"]
    k, (b, length), d = tok.shape[0], ids.shape, tok.shape[-1]
    pad = ids == 0
    z = (tok[:, ids] + params["pos.weight"][:, None, :length]).reshape(k, b * length, d)
    attend = (~pad)[:, None, None, :]  # [B, 1, 1, L]: keys that take part
    n_layers = len({n.split(".")[1] for n in params if n.startswith("layers.")})
    for i in range(n_layers):

        def w(name: str, i: int = i) -> Tensor:
            return params[f"layers.{i}.{name}"]

        h = _norm(z, w("norm1.weight"), w("norm1.bias"))
        qkv = _linear(h, w("self_attn.in_proj_weight"), w("self_attn.in_proj_bias"))
        q, kk, v = qkv.view(k, b, length, 3, heads, d // heads).permute(3, 0, 1, 4, 2, 5)
        att = F.scaled_dot_product_attention(q, kk, v, attn_mask=attend, dropout_p=p)
        att = att.permute(0, 1, 3, 2, 4).reshape(k, b * length, d)
        att = _linear(att, w("self_attn.out_proj.weight"), w("self_attn.out_proj.bias"))
        z = z + F.dropout(att, p, train)
        h = _norm(z, w("norm2.weight"), w("norm2.bias"))
        h = F.dropout(F.relu(_linear(h, w("linear1.weight"), w("linear1.bias"))), p, train)
        z = z + F.dropout(_linear(h, w("linear2.weight"), w("linear2.bias")), p, train)
    keep = (~pad).to(z.dtype).reshape(1, b, length, 1)
    pooled = (z.view(k, b, length, d) * keep).sum(2) / keep.sum(2)
    return _linear(pooled, params["head.weight"], params["head.bias"])


def warmup_cosine(optimizer: torch.optim.Optimizer, total: int, warmup: int):
    r"""optimkit's SequentialLR of LinearLR (factor 1/w -> 1 over the first w steps) and
    CosineAnnealingLR (T_max = total - w, eta_min = 0):
    :math:`\eta_t = \eta\,(1 + t (w - 1)/w) / w` for t < w, then
    :math:`\eta\,(1 + \cos(\pi (t - w) / (T - w))) / 2`."""
    from optimkit.schedules import CosineAnnealingLR, LinearLR, SequentialLR

    if not 1 <= warmup < total:
        raise ValueError(f"warmup: expected 1 <= warmup < total={total}, got {warmup}")
    return SequentialLR(
        optimizer,
        [LinearLR(optimizer, start_factor=1.0 / warmup, end_factor=1.0, total_iters=warmup),
         CosineAnnealingLR(optimizer, T_max=total - warmup, eta_min=0.0)],
        milestones=[warmup],
    )  # fmt: skip


@dataclass(frozen=True)
class EncoderGrid:
    """The population: one member per lr; the rest is shared."""

    lrs: Sequence[float]
    epochs: int
    batch_size: int = 64
    weight_decay: float = 0.01
    dim: int = 64
    heads: int = 4
    ff: int = 128
    layers: int = 1
    dropout: float = 0.1
    warmup_fraction: float = 0.1
    max_len: int = 64
    min_count: int = 2


FULL_GRID = EncoderGrid(lrs=(3e-4, 1e-3, 2e-3, 4e-3), epochs=6)
QUICK_GRID = EncoderGrid(lrs=(1e-3, 3e-3), epochs=2, dim=16, heads=2, ff=32, max_len=48)


def build_members(grid: EncoderGrid, vocab_size: int, seed: int) -> list[TweetEncoder]:
    """Member k: TweetEncoder initialized after torch.manual_seed(seed * 1000 + k)."""
    members = []
    for k in range(len(grid.lrs)):
        torch.manual_seed(seed * 1000 + k)
        members.append(TweetEncoder(vocab_size, grid.max_len, grid.dim, grid.heads, grid.ff,
                                    grid.layers, grid.dropout))  # fmt: skip
    return members


def _batches(ids: np.ndarray, size: int):
    """Tensors of `size` rows, each cut to its longest row (at least one token)."""
    for start in range(0, len(ids), size):
        part = ids[start : start + size]
        length = max(1, int((part != 0).sum(1).max()))
        yield torch.from_numpy(part[:, :length])


@torch.no_grad()
def predict(params: dict[str, Tensor], ids: np.ndarray, heads: int) -> np.ndarray:
    """[K, n] predicted classes (eval mode)."""
    out = [population_logits(params, x, heads=heads, dropout=0.0, train=False).argmax(-1)
           for x in _batches(ids, 512)]  # fmt: skip
    return torch.cat(out, 1).numpy()


def train_encoder(
    tokens: Sequence[Sequence[str]], labels: np.ndarray, split: tuple, grid: EncoderGrid,
    seed: int, step: Callable[[str | None], None] = lambda _: None,
) -> dict[str, Any]:  # fmt: skip
    """Train the population on split[0], score every member on split[1] after each epoch;
    the member with the best final validation macro F1 predicts split[2]."""
    from optimkit.optim.adam import AdamW

    train, val, test = split
    vocab = Vocabulary.build([tokens[i] for i in train], grid.min_count)
    ids = vocab.encode(tokens, grid.max_len)
    members = build_members(grid, len(vocab), seed)
    params, _ = torch.func.stack_module_state(members)  # type: ignore[arg-type]
    k = len(grid.lrs)
    decay = [p for n, p in params.items() if p.dim() >= 3]  # matrices and embeddings
    rest = [p for n, p in params.items() if p.dim() < 3]
    optimizer = AdamW(
        [{"params": decay, "weight_decay": grid.weight_decay},
         {"params": rest, "weight_decay": 0.0}],
        lr=torch.tensor(list(grid.lrs), dtype=torch.float64), clip_grad_norm=1.0,
    )  # fmt: skip
    per_epoch = -(-len(train) // grid.batch_size)
    total = per_epoch * grid.epochs
    schedule = warmup_cosine(optimizer, total, max(1, round(grid.warmup_fraction * total)))
    rng = np.random.default_rng(seed)
    y_all = torch.tensor(labels, dtype=torch.int64)
    curves: dict[str, list[list[float]]] = {"train_loss": [], "val_accuracy": [],
                                            "val_macro_f1": []}  # fmt: skip
    start = time.perf_counter()
    for epoch in range(grid.epochs):
        step(f"encoder epoch {epoch + 1}/{grid.epochs} (K={k})")
        order = train[rng.permutation(len(train))]
        losses = torch.zeros(k, dtype=torch.float64)
        for s in range(0, len(order), grid.batch_size):
            rows = order[s : s + grid.batch_size]
            x = next(_batches(ids[rows], len(rows)))
            logits = population_logits(params, x, heads=grid.heads, dropout=grid.dropout,
                                       train=True)  # fmt: skip
            y = y_all[rows].expand(k, -1)
            loss = F.cross_entropy(logits.transpose(1, 2), y, reduction="none").mean(1)
            optimizer.zero_grad()
            loss.sum().backward()
            optimizer.step()
            schedule.step()
            losses += loss.detach().double() * len(rows)
        curves["train_loss"].append((losses / len(train)).tolist())
        val_pred = predict(params, ids[val], grid.heads)
        per_member = [scores(labels[val], val_pred[j]) for j in range(k)]
        curves["val_accuracy"].append([m["accuracy"] for m in per_member])
        curves["val_macro_f1"].append([m["macro_f1"] for m in per_member])
    seconds = time.perf_counter() - start
    best = int(np.argmax(curves["val_macro_f1"][-1]))
    test_pred = predict({n: p[best : best + 1] for n, p in params.items()}, ids[test],
                        grid.heads)[0]  # fmt: skip
    return {"pred": test_pred, "best": best, "lr": grid.lrs[best], "seconds": seconds,
            "curves": curves, "vocab_size": len(vocab), "params": params,
            "vocab": vocab}  # fmt: skip


# --------------------------------------------------------------------------- the baseline
TFIDF_CS_FULL = (0.3, 1.0, 3.0, 10.0, 30.0)
TFIDF_CS_QUICK = (1.0, 10.0)


def tfidf_baseline(texts: Sequence[str], labels: np.ndarray, split: tuple,
                   cs: Sequence[float]) -> dict[str, Any]:  # fmt: skip
    """TF-IDF (word uni- and bigrams of the same tokens, min_df=2, sublinear tf) +
    LogisticRegression (lbfgs), C chosen by validation macro F1 among `cs`."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    train, val, test = split
    start = time.perf_counter()
    vectorizer = TfidfVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None,
                                 ngram_range=(1, 2), min_df=2, sublinear_tf=True)  # fmt: skip
    x_train = vectorizer.fit_transform([texts[i] for i in train])
    x_val = vectorizer.transform([texts[i] for i in val])
    tried = []
    for c in cs:
        model = LogisticRegression(C=c, max_iter=5000).fit(x_train, labels[train])
        val_pred = model.predict(x_val)
        tried.append((scores(labels[val], val_pred)["macro_f1"], c, model, val_pred))
    _, c, model, val_pred = max(tried, key=lambda t: t[0])
    pred = model.predict(vectorizer.transform([texts[i] for i in test]))
    return {"pred": pred.astype(np.int64), "C": c, "seconds": time.perf_counter() - start,
            "val": {str(t[1]): t[0] for t in tried}, "features": x_train.shape[1],
            "val_pred": val_pred}  # fmt: skip


# --------------------------------------------------------------------------- the app
def run(options: AppOptions) -> AppResult:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = QUICK_GRID if options.quick else FULL_GRID
    progress, bar = progress_bar(options, 2 + grid.epochs, "text")
    with progress:
        first = [True]

        def step(label: str | None) -> None:
            if not first[0]:
                progress.advance(bar)
            first[0] = False
            if label is not None:
                progress.update(bar, description=label)

        step("loading dslabs/trump_tweets")
        data = load_tweets(options.quick, options.seed)
        split = split_tweets(data.labels, options.seed)
        tokens = [tokenize(t) for t in data.texts]
        step("TF-IDF + LogisticRegression")
        base = tfidf_baseline(data.texts, data.labels, split,
                              TFIDF_CS_QUICK if options.quick else TFIDF_CS_FULL)  # fmt: skip
        enc = train_encoder(tokens, data.labels, split, grid, options.seed, step)
        step(None)
    train, val, test = split
    y_test = data.labels[test]
    majority = int(np.bincount(data.labels[train]).argmax())
    rows = [
        {"method": f"optimkit transformer + AdamW warm-up/cosine (best of K={len(grid.lrs)}: "
                   f"lr={enc['lr']:g})", "kind": "optimkit", **scores(y_test, enc["pred"]),
         "fit_seconds": enc["seconds"]},
        {"method": f"TF-IDF 1-2 grams + sklearn LogisticRegression (C={base['C']:g})",
         "kind": "baseline", **scores(y_test, base["pred"]), "fit_seconds": base["seconds"]},
        {"method": f"majority class ({CLASSES[majority]})", "kind": "baseline",
         **scores(y_test, np.full(len(test), majority)), "fit_seconds": 0.0},
    ]  # fmt: skip
    table = pd.DataFrame(rows)
    ours, theirs = table.iloc[0], table.iloc[1]
    gap = ours.accuracy - theirs.accuracy
    verdict = "matches" if abs(gap) < 0.005 else ("beats" if gap > 0 else "trails")
    notes = [
        f"{len(data.labels)} tweets (Android {int((data.labels == 0).sum())}, iPhone "
        f"{int((data.labels == 1).sum())}); stratified split train/val/test = "
        f"{len(train)}/{len(val)}/{len(test)} (seed {options.seed}); both methods tokenized "
        f"alike, vocabulary from the training part, setting chosen by validation macro F1",
        f"the transformer {verdict} TF-IDF + LogisticRegression on test accuracy "
        f"({ours.accuracy:.4f} vs {theirs.accuracy:.4f}; macro F1 {ours.macro_f1:.4f} vs "
        f"{theirs.macro_f1:.4f}); the test part has {len(test)} tweets, so one standard error "
        f"of an accuracy near {theirs.accuracy:.2f} is about "
        f"{np.sqrt(theirs.accuracy * (1 - theirs.accuracy) / len(test)):.3f}",
        f"population: K={len(grid.lrs)} encoders (lr {', '.join(f'{x:g}' for x in grid.lrs)}) "
        f"trained as one vectorized program; vocabulary {enc['vocab_size']} tokens; "
        f"TF-IDF features {base['features']}",
    ]
    curves = enc["curves"]
    best_curve = np.array(curves["val_accuracy"])[:, enc["best"]]
    notes.append(
        f"the chosen member (lr={enc['lr']:g}) reached validation accuracy "
        f"{best_curve.max():.4f} at epoch {int(best_curve.argmax()) + 1} and ended at "
        f"{best_curve[-1]:.4f} with training loss {curves['train_loss'][-1][enc['best']]:.3f}: "
        f"a transformer trained from scratch on a few thousand tweets (no pretraining) "
        f"overfits where the linear TF-IDF model does not"
    )
    epochs = np.arange(1, grid.epochs + 1)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    val_acc, loss = np.array(curves["val_accuracy"]), np.array(curves["train_loss"])
    for j, lr in enumerate(grid.lrs):
        axes[0].plot(epochs, loss[:, j], marker="o", label=f"lr={lr:g}")
        axes[1].plot(epochs, val_acc[:, j], marker="o", label=f"lr={lr:g}")
    axes[0].set(xlabel="epoch", ylabel="training cross-entropy", title="encoder population")
    tfidf_val = scores(data.labels[val], base["val_pred"])["accuracy"]
    axes[1].axhline(tfidf_val, color="gray", ls="--", label="TF-IDF + LR")
    axes[1].set(xlabel="epoch", ylabel="validation accuracy", title="validation accuracy")
    for ax in axes[:2]:
        ax.legend(fontsize=8)
    cms = [_confusion(y_test, enc["pred"]), _confusion(y_test, base["pred"])]
    axes[2].imshow(np.hstack([cms[0], np.full((2, 1), np.nan), cms[1]]), cmap="Blues")
    for (r, c), v in np.ndenumerate(np.hstack([cms[0], np.full((2, 1), -1), cms[1]])):
        if v >= 0:
            axes[2].text(c, r, str(v), ha="center", va="center")
    axes[2].set_xticks([0, 1, 3, 4], [*CLASSES, *CLASSES])
    axes[2].set_yticks([0, 1], CLASSES)
    axes[2].set(title="test confusion: transformer | TF-IDF + LR", ylabel="true",
                xlabel="predicted")  # fmt: skip
    fig.tight_layout()
    details = {
        "quick": options.quick, "seed": options.seed, "n_tweets": len(data.labels),
        "split_sizes": [len(train), len(val), len(test)], "best_member": enc["best"],
        "lrs": list(grid.lrs), "curves": curves, "tfidf_val_macro_f1": base["val"],
        "y_test": y_test.tolist(), "pred_encoder": enc["pred"].tolist(),
        "pred_tfidf": base["pred"].tolist(), "vocab_size": enc["vocab_size"],
    }  # fmt: skip
    return AppResult(
        title="text: Trump tweets, Android vs iPhone — transformer (optimkit AdamW) vs TF-IDF "
        "+ LogisticRegression",
        table=table,
        better={"accuracy": "higher", "macro_f1": "higher", "fit_seconds": "lower"},
        figures={"learning_curves": fig},
        notes=notes,
        details=details,
    )


def _confusion(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    return np.bincount(2 * y + pred, minlength=4).reshape(2, 2)


APP = App(
    name="text",
    summary="Trump tweets Android vs iPhone: a transformer population by optimkit AdamW",
    baseline="TF-IDF + scikit-learn LogisticRegression",
    run=run,
)
