import numpy as np
import pytest
import torch

from phy.rng import make_rng, seed_everything, spawn, torch_generator


def test_same_seed_same_stream():
    assert np.array_equal(make_rng(7).normal(size=5), make_rng(7).normal(size=5))
    assert not np.array_equal(make_rng(7).normal(size=5), make_rng(8).normal(size=5))


def test_generator_passes_through_and_none_is_default_seed():
    g = np.random.default_rng(3)
    assert make_rng(g) is g
    assert np.array_equal(make_rng(None).normal(size=3), make_rng(0).normal(size=3))


def test_spawn_children_are_independent_and_reproducible():
    a, b = spawn(1, 2)
    assert not np.array_equal(a.normal(size=4), b.normal(size=4))
    c, _ = spawn(1, 2)
    assert np.array_equal(c.normal(size=4), spawn(1, 2)[0].normal(size=4))


def test_torch_seeding():
    seed_everything(5)
    x = torch.rand(3)
    seed_everything(5)
    assert torch.equal(x, torch.rand(3))
    assert torch.equal(
        torch.rand(3, generator=torch_generator(2)), torch.rand(3, generator=torch_generator(2))
    )


@pytest.mark.parametrize("bad", ["1", 1.5, True])
def test_bad_seed_is_rejected(bad):
    with pytest.raises(TypeError):
        make_rng(bad)
