"""BatchSampler: coverage, batch sizes, determinism, per-member orders, checkpoint/resume."""

from __future__ import annotations

import math

import pytest
import torch

from optimkit.data import BatchSampler, DataError, epoch_seed


def _epoch(sampler: BatchSampler) -> list[torch.Tensor]:
    return list(iter(sampler))


@pytest.mark.parametrize("n,batch_size", [(10, 3), (10, 5), (7, 1), (13, 100), (64, 8)])
def test_shared_batches_cover_every_index_once(n, batch_size):
    sampler = BatchSampler(n, batch_size, seed=3)
    for _ in range(3):
        batches = _epoch(sampler)
        assert len(batches) == math.ceil(n / batch_size) == len(sampler)
        assert all(b.shape == (min(batch_size, n),) for b in batches[:-1])
        assert torch.equal(torch.cat(batches).sort().values, torch.arange(n))


def test_last_partial_batch_kept_or_dropped():
    kept = _epoch(BatchSampler(10, 4, seed=0))
    assert [len(b) for b in kept] == [4, 4, 2]
    dropped = _epoch(BatchSampler(10, 4, seed=0, drop_last=True))
    assert [len(b) for b in dropped] == [4, 4]
    # drop_last drops the tail of the same permutation
    assert torch.equal(torch.cat(dropped), torch.cat(kept)[:8])
    with pytest.raises(DataError, match="drop_last=True leaves no batch"):
        BatchSampler(3, 4, drop_last=True)


@pytest.mark.parametrize("batch_size", [None, 0])
def test_full_batch_is_every_index_in_order(batch_size):
    sampler = BatchSampler(9, batch_size, seed=5)
    for _ in range(2):
        (batch,) = _epoch(sampler)
        assert torch.equal(batch, torch.arange(9))
    (member_batch,) = _epoch(BatchSampler(9, batch_size, member_seeds=[1, 2]))
    assert torch.equal(member_batch, torch.arange(9).expand(2, 9))


def test_stochastic_batch_size_one():
    batches = _epoch(BatchSampler(6, 1, seed=2))
    assert [b.shape for b in batches] == [torch.Size([1])] * 6
    assert sorted(int(b) for b in batches) == list(range(6))


def test_order_is_randperm_of_seeded_generator_and_pure_in_seed_epoch():
    n, seed = 50, 11
    sampler = BatchSampler(n, 7, seed=seed)
    for epoch in range(3):
        expected = torch.randperm(
            n, generator=torch.Generator().manual_seed(epoch_seed(seed, epoch))
        )
        assert torch.equal(torch.cat(_epoch(sampler)), expected)
        # a fresh sampler gives the same epoch without iterating through the earlier ones
        assert torch.equal(torch.cat(list(BatchSampler(n, 7, seed=seed).batches(epoch))), expected)
    # global RNG state does not matter
    torch.manual_seed(0)
    a = torch.cat(list(BatchSampler(n, 7, seed=seed).batches(1)))
    torch.manual_seed(123)
    b = torch.cat(list(BatchSampler(n, 7, seed=seed).batches(1)))
    assert torch.equal(a, b)


def test_epochs_and_seeds_differ():
    s = BatchSampler(100, 10, seed=0)
    e0, e1 = torch.cat(_epoch(s)), torch.cat(_epoch(s))
    other = torch.cat(_epoch(BatchSampler(100, 10, seed=1)))
    assert not torch.equal(e0, e1)
    assert not torch.equal(e0, other)
    assert epoch_seed(0, 1) != epoch_seed(1, 0)


def test_no_shuffle_keeps_natural_order():
    batches = _epoch(BatchSampler(7, 3, shuffle=False))
    assert [b.tolist() for b in batches] == [[0, 1, 2], [3, 4, 5], [6]]


def test_per_member_batches_have_own_orders():
    n, seeds = 23, [4, 9, 4]
    sampler = BatchSampler(n, 5, member_seeds=torch.tensor(seeds))
    assert sampler.population == 3
    for epoch in range(2):
        batches = _epoch(sampler)
        assert [tuple(b.shape) for b in batches] == [(3, 5)] * 4 + [(3, 3)]
        perm = torch.cat(batches, dim=1)
        for k, seed in enumerate(seeds):
            assert torch.equal(perm[k].sort().values, torch.arange(n))
            # member k's order equals a shared sampler seeded with member k's seed
            shared = torch.cat(list(BatchSampler(n, 5, seed=seed).batches(epoch)))
            assert torch.equal(perm[k], shared)
        assert torch.equal(perm[0], perm[2])
        assert not torch.equal(perm[0], perm[1])


def test_indexing_a_population_batch():
    X = torch.arange(40.0).reshape(20, 2)
    (idx, *_) = _epoch(BatchSampler(20, 4, member_seeds=[0, 1, 2]))
    assert X[idx].shape == (3, 4, 2)
    assert torch.equal(X[idx][1], X[idx[1]])


@pytest.mark.parametrize("member_seeds", [None, [3, 1]])
def test_resume_mid_epoch_from_state_dict(member_seeds):
    def make():
        return BatchSampler(30, 4, seed=7, member_seeds=member_seeds)

    reference = make()
    uninterrupted = [b for _ in range(3) for b in _epoch(reference)]

    sampler = make()
    seen = _epoch(sampler)  # epoch 0
    it = iter(sampler)  # epoch 1, stop after 3 batches
    seen += [next(it) for _ in range(3)]
    state = {k: v.clone() for k, v in sampler.state_dict().items()}
    assert int(state["epoch"]) == 1 and int(state["position"]) == 3

    resumed = make()
    resumed.load_state_dict(state)
    rest = list(iter(resumed)) + _epoch(resumed)
    assert len(seen) + len(rest) == len(uninterrupted)
    for a, b in zip(seen + rest, uninterrupted, strict=True):
        assert torch.equal(a, b)


def test_resume_after_last_batch_goes_to_next_epoch():
    s = BatchSampler(8, 4, seed=1)
    it = iter(s)
    next(it), next(it)  # consumed the whole epoch without reaching StopIteration
    state = s.state_dict()
    r = BatchSampler(8, 4, seed=1)
    r.load_state_dict(state)
    assert torch.equal(torch.cat(_epoch(r)), torch.cat(list(BatchSampler(8, 4, seed=1).batches(1))))


def test_state_mismatch_and_bad_arguments():
    state = BatchSampler(10, 2, seed=1).state_dict()
    with pytest.raises(DataError, match="seed"):
        BatchSampler(10, 2, seed=2).load_state_dict(state)
    with pytest.raises(DataError, match="batch_size"):
        BatchSampler(10, 3, seed=1).load_state_dict(state)
    with pytest.raises(DataError, match="batch_size must be an int >= 0"):
        BatchSampler(10, -1)
    with pytest.raises(DataError, match="n must be an int >= 1"):
        BatchSampler(0, 2)
    with pytest.raises(DataError, match="seed must be an int >= 0"):
        BatchSampler(5, 2, seed=-1)
    with pytest.raises(DataError, match="member_seeds"):
        BatchSampler(5, 2, member_seeds=[])
