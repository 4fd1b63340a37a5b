"""`python -m model encode/decode` round-trips a real video and reports bad input plainly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from model import load_wfvae
from model.cli import main
from model.media import ClipSettings, probe_video, sample_clips, to_model_input

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_round_trip_on_real_footage(sample_videos: dict[str, Path], tiny_parity_dir: Path, tmp_path: Path) -> None:
    video, latent, out = sample_videos["carphone_pristine"], tmp_path / "c.safetensors", tmp_path / "c.mp4"
    weights = ["--weights", str(tiny_parity_dir), "--dtype", "fp32"]  # the default, auto, is bf16 on AMX CPUs
    assert main([*weights, "encode", str(video), str(latent), "--frames", "9", "--size", "64x64", "--stride", "2"]) == 0
    with safe_open(str(latent), framework="pt") as handle:
        stored = handle.get_tensor("latent")
        meta = handle.metadata()
    assert stored.shape == (1, 8, 3, 8, 8)
    assert meta["frames"] == "9" and meta["stride"] == "2" and float(meta["fps"]) > 0
    assert meta["dtype"] == "float32" and meta["dtype_reason"].startswith("asked for")
    (clip,) = sample_clips(video, ClipSettings(num_frames=9, frame_stride=2, height=64, width=64))
    assert float(meta["fps"]) == clip.fps
    with torch.inference_mode():
        expected = load_wfvae(tiny_parity_dir).encode(to_model_input(clip.frames)).mean
    assert torch.equal(stored, expected)

    assert main([*weights, "decode", str(latent), str(out)]) == 0
    written = probe_video(out)
    assert (written.frame_count, written.frame_size) == (9, (64, 64))
    assert written.fps == pytest.approx(clip.fps)


def test_bad_input_exits_2_with_a_message(sample_videos: dict[str, Path], tmp_path: Path, capsys) -> None:
    assert main(["encode", str(tmp_path / "missing.mp4"), str(tmp_path / "x.safetensors")]) == 2
    assert "unreadable" in capsys.readouterr().err
    assert main(["encode", str(sample_videos["carphone_pristine"]), str(tmp_path / "x.safetensors"), "--frames", "8"]) == 2
    assert "1 + 4k" in capsys.readouterr().err
    assert main(["encode", str(sample_videos["carphone_pristine"]), str(tmp_path / "x.safetensors"), "--frames", "401"]) == 2
    assert "too_short" in capsys.readouterr().err
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    assert main(["decode", str(tmp_path / "junk.safetensors"), str(tmp_path / "o.mp4")]) == 2
    assert "cannot read latent file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["encode", "a.mp4", "b.safetensors", "--size", "100x100"])


def test_module_entry_point_runs() -> None:
    result = subprocess.run([sys.executable, "-m", "model", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert "encode" in result.stdout and "decode" in result.stdout
