"""jobs.train: real footage through the pipeline's decoder, locally and from S3, and a 2-worker
Ray Train (TorchTrainer, DDP over gloo) run that writes an official-layout checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from jobs.train import TrainJob, _parser, build_sampler, job_from_args, run_local, run_ray
from model import WFVAEConfig, load_wfvae
from model.training import CHECKPOINT_NAME, MODEL_DIR_NAME, LossConfig, TrainConfig


def _tiny_train(**overrides: object) -> TrainConfig:
    fields: dict[str, object] = {
        "model": WFVAEConfig(latent_dim=4, base_channels=8, encoder_energy_flow_hidden_size=8,
                             decoder_energy_flow_hidden_size=8, norm_type="layernorm", t_interpolation="trilinear"),
        "loss": LossConfig(perceptual_weight=0.0, disc_start=1, disc_width=4, disc_layers=2),
        "max_steps": 3,  # step 0 autoencoder, 1 discriminator, 2 autoencoder with the GAN term
        "batch_size": 2,
        "num_frames": 5,
        "height": 16,
        "width": 16,
        "ema_decay": 0.9,
        "log_every": 1,
        "eval_every": 2,
        "checkpoint_every": 2,
    }
    fields.update(overrides)
    return TrainConfig(**fields)  # type: ignore[arg-type]


def _job(videos: list[str], **fields: object) -> TrainJob:
    return TrainJob(train=_tiny_train(), videos=videos, synthetic_fraction=0.5, max_decode_frames=17,
                    max_decode_side=96, val_clips=1, threads_per_worker=1, **fields)  # type: ignore[arg-type]


def test_sampler_crops_real_footage_decoded_by_the_pipeline(sample_videos: dict[str, Path]) -> None:
    sampler, real = build_sampler(_job([str(sample_videos["carphone_pristine"])]))
    assert real.videos[0].shape == (17, 72, 96, 3)  # 144x176 to a longer side of 96, sides multiples of 8
    batch = real.sample(torch.Generator().manual_seed(0), 3, 5, 16, 16)
    again = real.sample(torch.Generator().manual_seed(0), 3, 5, 16, 16)
    assert batch.shape == (3, 3, 5, 16, 16) and batch.abs().max() <= 1.0
    assert (batch - again).abs().max() == 0.0


def test_local_run_reads_from_s3_and_writes_a_loadable_checkpoint(
    sample_videos: dict[str, Path], s3_endpoint: str, tmp_path: Path
) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="train-videos")
    s3.put_object(Bucket="train-videos", Key="carphone.mp4", Body=sample_videos["carphone_pristine"].read_bytes())
    last = run_local(_job(["s3://train-videos/carphone.mp4"], endpoint_url=s3_endpoint), tmp_path)
    assert last == tmp_path / "checkpoints" / "step-00000003"
    assert (last / CHECKPOINT_NAME).is_file()
    load_wfvae(last / MODEL_DIR_NAME)


def test_two_worker_torch_trainer_run_completes_with_an_official_checkpoint(
    ray_cluster: None, sample_videos: dict[str, Path], tmp_path: Path
) -> None:
    job = _job([str(sample_videos["carphone_pristine"])])
    final = run_ray(job, num_workers=2, storage_path=str(tmp_path), name="ddp-test")
    state = torch.load(final / CHECKPOINT_NAME, weights_only=True)
    assert state["current_step"] == 3
    assert set(state["state_dict"]) == {"gen_model", "dics_model"} and state["ema_state_dict"]
    vae = load_wfvae(final / MODEL_DIR_NAME)
    assert vae.config == job.train.model
    load_wfvae(final / CHECKPOINT_NAME, config=job.train.model)  # the official file loads too


def test_command_line_builds_the_papers_stages_and_the_tiny_recipe() -> None:
    stage3 = job_from_args(_parser().parse_args(["--stage", "stage3", "--videos", "a.mp4", "--output", "o"]))
    assert stage3.train.loss.perceptual_weight == 0.1 and stage3.train.num_frames == 49
    assert stage3.train.optim.lr == 1e-5 and stage3.train.batch_size == 8 and stage3.train.height == 256
    tiny = job_from_args(_parser().parse_args(["--recipe", "tiny-cpu", "--videos", "a.mp4", "--output", "o",
                                               "--max-steps", "7", "--disc-start", "3"]))
    assert tiny.train.max_steps == 7 and tiny.train.loss.disc_start == 3 and tiny.synthetic_fraction == 0.2


@pytest.mark.parametrize("stage,frames,lpips", [("stage1", 25, 1.0), ("stage2", 49, 1.0), ("stage3", 49, 0.1)])
def test_table7_stage_presets(stage: str, frames: int, lpips: float) -> None:
    from model.training import stage_config

    config = stage_config(stage)  # type: ignore[arg-type]
    assert (config.num_frames, config.loss.perceptual_weight, config.optim.lr, config.batch_size) == (frames, lpips, 1e-5, 8)
    assert (config.height, config.width, config.ema_decay, config.loss.kl_weight, config.loss.wavelet_weight) == (
        256, 256, 0.999, 1e-6, 0.1)
