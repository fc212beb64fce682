"""Encoders (shapes, power normalisation), head, classifier, RawCodec."""

from __future__ import annotations

import pytest
import torch

from learning.models import (
    ENCODERS,
    PowerNormalize,
    RawCodec,
    build_classifier,
    build_encoder,
    build_head,
)


@pytest.mark.parametrize("arch", sorted(ENCODERS))
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_encoder_shape_and_unit_power(arch, shape):
    torch.manual_seed(0)
    enc = build_encoder(shape, 16, arch)
    x = torch.rand(5, *shape)
    y = enc(x)
    assert y.shape == (5, 16)
    # pairs of reals = complex symbols of unit power: mean of x^2 per vector is 0.5
    torch.testing.assert_close(y.pow(2).mean(dim=1), torch.full((5,), 0.5))
    sym = torch.view_as_complex(y.reshape(5, 8, 2).contiguous())
    torch.testing.assert_close(sym.abs().pow(2).mean(dim=1), torch.ones(5))


def test_power_normalize_is_scale_invariant_and_differentiable():
    x = torch.randn(3, 10, requires_grad=True)
    norm = PowerNormalize()
    torch.testing.assert_close(norm(x), norm(7.0 * x))
    norm(x).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert torch.isfinite(norm(torch.zeros(2, 4))).all()


def test_encoder_rejects_bad_arguments():
    with pytest.raises(ValueError, match="even"):
        build_encoder((1, 8, 8), 15)
    with pytest.raises(ValueError, match="arch"):
        build_encoder((1, 8, 8), 16, "transformer")
    with pytest.raises(ValueError, match="input_shape"):
        build_encoder((8, 8), 16)
    with pytest.raises(ValueError, match="n_classes"):
        build_head(16, 1)


def test_classifier_is_encoder_then_head():
    torch.manual_seed(1)
    model = build_classifier((1, 8, 8), 10, arch="mlp", feature_dim=12)
    x = torch.rand(4, 1, 8, 8)
    assert model(x).shape == (4, 10)
    torch.testing.assert_close(model(x), model.head(model.encoder(x)))


def test_raw_codec_roundtrip_power_and_linearity():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(50, 1, 3, 3, generator=gen)  # 9 pixels: odd, padded to 10
    codec = RawCodec.fit(x)
    v = codec.encode(x)
    assert v.shape == (50, 10) and codec.payload_dim == 10
    assert torch.all(v[:, -1] == 0)
    torch.testing.assert_close(v.pow(2).mean(), torch.tensor(0.5))
    torch.testing.assert_close(codec.decode(v), x)
    w = torch.tensor([0.2, 0.3, 0.5])
    mixed = torch.einsum("k,kbd->bd", w, v[:3, None].expand(3, 1, 10).contiguous())
    torch.testing.assert_close(codec.decode(mixed)[0], (w[:, None, None, None] * x[:3]).sum(0))
    with pytest.raises(ValueError):
        codec.decode(torch.zeros(2, 9))
    with pytest.raises(ValueError):
        codec.encode(torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="scale"):
        RawCodec(torch.zeros(1, 2, 2), -1.0)
