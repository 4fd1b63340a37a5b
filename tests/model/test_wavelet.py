"""Haar transforms: the inverses restore their input; the 3D transform is causal in time."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from model.causal import WHOLE_CLIP
from model.wavelet import (
    HaarTransform2D,
    HaarTransform3D,
    InverseHaarTransform2D,
    InverseHaarTransform3D,
)

shapes = st.tuples(
    st.integers(1, 2),  # B
    st.integers(1, 4),  # C
    st.integers(0, 4).map(lambda k: 1 + 2 * k),  # T = 1 + 2k
    st.integers(1, 4).map(lambda n: 2 * n),  # H
    st.integers(1, 4).map(lambda n: 2 * n),  # W
)


@settings(max_examples=30, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_inverse_3d_restores_input(shape, seed) -> None:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    forward, inverse = HaarTransform3D().double(), InverseHaarTransform3D().double()
    coeffs = forward(x, WHOLE_CLIP)
    assert coeffs.shape == (shape[0], 8 * shape[1], (shape[2] + 1) // 2, shape[3] // 2, shape[4] // 2)
    # Filters are float32 (1/sqrt 8 rounded), so the round trip is exact to float32 precision.
    assert (inverse(coeffs, WHOLE_CLIP) - x).abs().max() < 1e-6


@settings(max_examples=30, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_inverse_2d_restores_input(shape, seed) -> None:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    coeffs = HaarTransform2D().double()(x)
    assert coeffs.shape == (shape[0], 4 * shape[1], shape[2], shape[3] // 2, shape[4] // 2)
    assert (InverseHaarTransform2D().double()(coeffs) - x).abs().max() < 1e-6


def test_3d_low_band_is_scaled_mean_and_first_frame_stands_alone() -> None:
    x = torch.randn(1, 3, 5, 4, 4, dtype=torch.float64)
    coeffs = HaarTransform3D().double()(x, WHOLE_CLIP)  # (1, 24, 3, 2, 2)
    low = coeffs[:, :3]
    # The first frame is paired with itself, so its temporal high bands vanish.
    assert coeffs[:, 12:, 0].abs().max() < 1e-12
    expected = x[:, :, 1:3].unfold(3, 2, 2).unfold(4, 2, 2).sum(dim=(2, -1, -2)) / 8**0.5
    assert (low[:, :, 1] - expected).abs().max() < 1e-6


def test_official_rounded_filters_are_what_checkpoints_hold(tiny_vae) -> None:
    filters = tiny_vae.encoder.wavelet_transform_in.filters
    assert filters.shape == (8, 1, 2, 2, 2)
    assert torch.allclose(filters.abs(), torch.full_like(filters, 0.3536))
