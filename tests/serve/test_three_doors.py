"""One clip, three doors: `python -m model encode`, the pipeline's Parquet row and `POST /encode` give one latent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import torch
from bundled_model import LATENT_DIM
from safetensors.torch import load_file
from serve_testing import CLIP, ENCODER, TOLERANCE, Service, max_abs_diff, safetensors_tensors

from model.cli import main as model_cli
from pipeline.records import latent_from_bytes


def _cli_latent(video: Path, tmp_path: Path) -> torch.Tensor:
    out = tmp_path / "cli.safetensors"
    size = f"{CLIP.height}x{CLIP.width}"
    args = ["encode", str(video), str(out), "--frames", str(CLIP.num_frames), "--size", size,
            "--chunk-frames", str(ENCODER.chunk_frames)]
    assert model_cli(["--dtype", "fp32", *args]) == 0  # ENCODER's float32
    return load_file(str(out))["latent"][0]  # (C, t, h, w)


def _pipeline_latent(video: Path, tmp_path: Path) -> torch.Tensor:
    from pipeline.run import run_pipeline
    from pipeline.settings import PipelineSettings

    output = tmp_path / "out"
    settings = PipelineSettings(inputs=[str(video)], output=str(output), clips=CLIP, encoder=ENCODER,
                                batch_size=1, progress_bars=False, read_num_cpus=0.25, encoder_num_cpus=0.25)
    summary = run_pipeline(settings)
    assert (summary.clips, summary.errors) == (1, 0), summary
    (row,) = pads.dataset(str(output / "latents"), format="parquet").to_table().to_pylist()
    assert row["frame_indices"] == list(range(CLIP.num_frames))
    return torch.from_numpy(latent_from_bytes(row["latent"], row["latent_shape"], row["latent_dtype"]).copy())


def _served_latent(video: Path, service: Service) -> torch.Tensor:
    query = f"num_frames={CLIP.num_frames}&height={CLIP.height}&width={CLIP.width}"
    answer = service.client.post(f"{service.url}/encode?{query}", content=video.read_bytes(),
                                 headers={**service.auth, "Content-Type": "video/mp4"})
    assert answer.status_code == 200, answer.text
    return safetensors_tensors(answer.content)["latent"][0]  # (C, t, h, w)


def test_cli_pipeline_and_service_give_one_latent(
    service: Service, media: dict[str, bytes], tmp_path: Path
) -> None:
    video = tmp_path / "bikes.mp4"
    video.write_bytes(media["bikes"])  # real footage, 160x68: resized and cropped to 64x64
    cli, piped, served = _cli_latent(video, tmp_path), _pipeline_latent(video, tmp_path), _served_latent(video, service)
    assert cli.shape == piped.shape == served.shape == (LATENT_DIM, 3, 8, 8)
    # One clip path (model.media) and one model. With one clip a batch and one thread everywhere
    # (the service runs torch_threads=1, Ray's workers one OpenMP thread) the sums run in the
    # same order and the latents are equal to the bit; with more threads here, to rounding.
    for other in (piped, served):
        if torch.get_num_threads() == 1:
            assert torch.equal(cli, other), max_abs_diff(cli, other)
        else:
            assert max_abs_diff(cli, other) <= TOLERANCE
    assert np.abs(cli.numpy()).max() > 0.1  # a real latent, not zeros
