"""The model computes what the official WF-VAE computes and has its exact layout."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from model import WFVAE, WFVAEConfig, preset

# tests/reference/README.md: implementations differ in the order of their float32 sums, and
# by ~1e-2 where something differs for real. On these outputs (scale 0.8-1.6) 1e-4 is 500-1000
# float32 ulps, about the REORDERED_ULPS (512) of tests/tolerances.py.
PARITY_TOL = 1e-4


@pytest.mark.parametrize("case", [0, 1, 2])
def test_reproduces_official_moments_and_decoding(tiny_vae: WFVAE, parity_cases, case: int) -> None:
    x = parity_cases[f"case{case}.input"]
    with torch.inference_mode():
        posterior = tiny_vae.encode(x)
        decoded = tiny_vae.decode(posterior.mean)
    expected_moments = parity_cases[f"case{case}.moments"]
    expected_decoded = parity_cases[f"case{case}.decoded"]
    assert posterior.moments.shape == expected_moments.shape
    assert (posterior.moments - expected_moments).abs().max() < PARITY_TOL
    assert decoded.shape == expected_decoded.shape == x.shape
    assert (decoded - expected_decoded).abs().max() < PARITY_TOL


def test_posterior_splits_and_clamps_moments(tiny_vae: WFVAE, parity_cases) -> None:
    x = parity_cases["case0.input"]
    with torch.inference_mode():
        posterior = tiny_vae.encode(x)
    latent = tiny_vae.config.latent_dim
    assert torch.equal(posterior.mean, posterior.moments[:, :latent])
    assert torch.equal(posterior.mode(), posterior.mean)
    assert torch.equal(posterior.logvar, posterior.moments[:, latent:].clamp(-30, 20))
    gen_a, gen_b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(posterior.sample(gen_a), posterior.sample(gen_b))
    assert not torch.equal(posterior.sample(), posterior.mean)


def test_reference_data_is_what_the_official_code_produced(tiny_parity_dir: Path) -> None:
    """The committed fixtures are byte for byte the checked ones (tests/reference/README.md)."""
    root = tiny_parity_dir.parent
    rows = [line.split() for line in (root / "SHA256SUMS").read_text().splitlines() if line.strip()]
    assert len(rows) == 6
    for digest, name in rows:
        assert hashlib.sha256((root / name).read_bytes()).hexdigest() == digest, name


def _reference_keys(path: Path) -> dict[str, tuple[int, ...]]:
    rows = (line.split("\t") for line in path.read_text().splitlines() if line.strip())
    return {key: tuple(int(d) for d in shape.split("x")) for key, shape in rows}


def test_l_preset_state_dict_equals_released_checkpoint_layout(tiny_parity_dir: Path) -> None:
    released = tiny_parity_dir.parent / "wfvae-l-16chn"
    with torch.device("meta"):  # layout only: no need to initialise 300M weights
        vae = WFVAE(WFVAEConfig.from_file(released / "config.json"))
    ours = {key: tuple(t.shape) for key, t in vae.state_dict().items()}
    assert ours == _reference_keys(released / "keys.tsv")
    assert preset("L", 16) == vae.config


def test_tiny_reference_layout(tiny_vae: WFVAE, tiny_parity_dir: Path) -> None:
    ours = {key: tuple(t.shape) for key, t in tiny_vae.state_dict().items()}
    assert ours == _reference_keys(tiny_parity_dir / "keys.tsv")


def test_parameter_counts_match_paper_table_3() -> None:
    with torch.device("meta"):
        counts = WFVAE(preset("L", 16)).parameter_counts()
        small, medium = WFVAE(preset("S", 16)).parameter_counts(), WFVAE(preset("M", 16)).parameter_counts()
    assert counts == {"encoder": 84_587_040, "decoder": 232_494_332}
    # Paper: S 38M / 108M, M 58M / 164M. We build S and M as L with fewer base channels.
    assert round(small["encoder"] / 1e6) == 38 and round(small["decoder"] / 1e6) == 109
    assert round(medium["encoder"] / 1e6) == 59 and round(medium["decoder"] / 1e6) == 165


def test_compression_is_4x8x8(tiny_vae: WFVAE) -> None:
    for frames in (1, 5, 13):
        x = torch.zeros(1, 3, frames, 16, 24)
        with torch.inference_mode():
            z = tiny_vae.encode(x).mean
            y = tiny_vae.decode(z)
        assert z.shape == (1, 8, 1 + (frames - 1) // 4, 2, 3)
        assert y.shape == x.shape


# Each layer rounds its output to the half format: fp16 keeps 11 significant bits (eps 9.8e-4),
# bf16 8 (eps 7.8e-3). Over the ~40 layers those roundings add like noise, about sqrt(40) ~ 6 eps
# of the output's scale: 1e-2 is 10 fp16 eps, 5e-2 is 6.4 bf16 eps. A wrong cast or an overflow
# moves the output by its whole scale.
@pytest.mark.parametrize(("dtype", "relative_tol"), [(torch.float16, 1e-2), (torch.bfloat16, 5e-2)])
def test_half_precisions_track_float32(tiny_parity_dir: Path, parity_cases, dtype: torch.dtype, relative_tol: float) -> None:
    from model import load_wfvae

    half, full = load_wfvae(tiny_parity_dir, dtype=dtype, force_dtype=True), load_wfvae(tiny_parity_dir)
    x = parity_cases["case0.input"]
    with torch.inference_mode():
        moments = half.encode(x).moments
        expected = full.encode(x).moments
        decoded = half.decode(expected[:, :8])
        expected_decoded = full.decode(expected[:, :8])
    assert moments.dtype == decoded.dtype == dtype
    assert (moments.float() - expected).abs().max() <= relative_tol * expected.abs().max()
    assert (decoded.float() - expected_decoded).abs().max() <= relative_tol * expected_decoded.abs().max()
