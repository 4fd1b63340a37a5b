"""jobs.evaluate on real footage: the JSON numbers, Table 5 with a 0.00 block-wise drop, pictures, FVD."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tolerances import reordered_float32
from torch import Tensor, nn

from jobs.evaluate import EvalSettings, evaluate, frechet_distance, load_clips, reconstruct
from model import load_wfvae
from model.metrics import psnr, ssim


@pytest.fixture(scope="module")
def report(sample_videos: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("eval")
    settings = EvalSettings(videos=[str(sample_videos["carphone_pristine"])], out=str(out), num_frames=17,
                            height=64, width=64, chunk_frames=8, clips_per_video=2)
    return evaluate(settings)


def test_numbers_in_the_json_match_a_direct_computation(report: dict, sample_videos: dict[str, Path]) -> None:
    settings = EvalSettings.model_validate(report["settings"])
    vae = load_wfvae(settings.model)
    clips = load_clips(str(sample_videos["carphone_pristine"]), settings)
    assert len(clips) == 2
    x = torch.cat(clips, dim=2)
    y = torch.cat([reconstruct(vae, c, None) for c in clips], dim=2)
    row = report["videos"][0]
    assert row["frames"] == 34 and len(row["whole_clip"]["psnr_per_frame"]) == 34
    assert abs(row["whole_clip"]["psnr"] - psnr(y, x).item()) < 1e-3
    assert abs(row["whole_clip"]["ssim"] - ssim(y, x).item()) < 1e-4
    saved = json.loads((Path(settings.out) / "results.json").read_text())
    assert saved["summary"] == report["summary"]


def test_block_wise_inference_drops_nothing(report: dict) -> None:
    row = report["videos"][0]
    # Block-wise (Causal Cache) decoding differs from whole-clip decoding only in the order of
    # float32 sums (tests/tolerances.py) on video of scale 1; such differences move PSNR by
    # about 1e-4 dB, a real loss by tenths.
    assert row["max_abs_difference_whole_vs_block"] <= reordered_float32(1.0)
    assert abs(report["summary"]["psnr_drop"]) < 0.005
    lines = report["table"].splitlines()
    assert lines[0].startswith("| Model | Chn | BWI | PSNR")
    assert "✗" in lines[2] and "✓" in lines[3]
    assert lines[4].startswith("| drop | | | 0.00 |")


def test_pictures_are_written_as_png(report: dict) -> None:
    from PIL import Image

    row = report["videos"][0]
    grid = Image.open(row["grid_png"])
    assert grid.format == "PNG" and grid.size == (4 * 64, 3 * 64)  # 4 frames; original, recon, error
    plot = Image.open(row["psnr_plot_png"])
    assert plot.format == "PNG" and plot.size == (640, 360)


class FakeI3D(nn.Module):
    """StyleGAN-V's detector interface; features are per-channel means and deviations."""

    def forward(self, x: Tensor, rescale: bool = False, resize: bool = False, return_features: bool = True) -> Tensor:
        return torch.cat([x.mean(dim=(2, 3, 4)), x.std(dim=(2, 3, 4))], dim=1)


def test_fvd_is_computed_when_detector_weights_are_given(sample_videos: dict[str, Path], tmp_path: Path) -> None:
    detector_path = tmp_path / "i3d_torchscript.pt"
    torch.jit.script(FakeI3D()).save(str(detector_path))
    result = evaluate(EvalSettings(videos=[str(sample_videos["carphone_pristine"])], out=str(tmp_path / "o"),
                                   num_frames=9, height=32, width=32, clips_per_video=3, chunk_frames=4,
                                   i3d_weights=str(detector_path), pictures=False))
    whole, block = result["summary"]["whole_clip"]["fvd"], result["summary"]["block_wise"]["fvd"]
    assert whole >= 0 and abs(whole - block) < 1e-6
    assert "FVD" in result["table"] and "–" not in result["table"].splitlines()[2].split("|")[7]


def test_frechet_distance_of_a_set_to_itself_is_zero_and_grows_with_a_shift() -> None:
    feats = np.random.default_rng(0).normal(size=(50, 4))
    assert abs(frechet_distance(feats, feats)) < 1e-6
    assert abs(frechet_distance(feats, feats + 2.0) - 4 * 4.0) < 1e-6  # |shift|^2 over 4 dims
