"""Training WF-VAE on Ray Train: `TorchTrainer` runs `model.training.Trainer` on every worker (DDP).

    python -m jobs.train --videos 's3://bucket/clips/*.mp4' --stage stage1 --workers 8 --gpu \
        --output s3://bucket/runs --name wfvae-ft
    python -m jobs.train --recipe tiny-cpu --videos a.mp4 b.mp4 --workers 0 --output runs/tiny

`--workers 0` runs the same loop in this process without Ray. Clips are read through the
pipeline's decoding code (`model.media`) from local paths or object storage; checkpoints are
the official training layout plus a `model/` directory that `model.load_wfvae` reads; a run
resumes from its latest checkpoint (Ray's, or `--resume DIR` locally).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from model.config import SPATIAL_COMPRESSION, TEMPORAL_COMPRESSION
from model.storage import StorageSettings, read_bytes
from model.training import (
    CHECKPOINT_NAME,
    MODEL_DIR_NAME,
    FrameBankSampler,
    MixtureSampler,
    SyntheticMotionSampler,
    TrainConfig,
    Trainer,
    stage_config,
    tiny_cpu_config,
)
from model.training.data import ClipSampler

__all__ = [
    "TrainJob",
    "build_sampler",
    "decode_video",
    "job_from_args",
    "latest_checkpoint",
    "main",
    "run_local",
    "run_ray",
    "train_loop_per_worker",
]

log = logging.getLogger(__name__)

VAL_SEED = 999


class TrainJob(BaseModel):
    """A training job: the training config, its data, and where it runs and writes."""

    model_config = ConfigDict(extra="forbid")

    train: TrainConfig
    videos: list[str] = Field(min_length=1, description="local paths or fsspec URIs (s3://...) of videos")
    synthetic_fraction: float = Field(0.0, ge=0.0, le=1.0, description="share of clips of synthetic motion")
    max_decode_frames: int = Field(257, ge=1, description="frames decoded per video into the crop bank")
    max_decode_side: int = Field(720, ge=8, description="longer side of decoded frames is scaled to at most this")
    val_clips: int = Field(4, ge=0, description="fixed clips for validation PSNR (0: none)")
    endpoint_url: str | None = None
    threads_per_worker: int = Field(2, ge=1)
    device: Literal["cpu", "cuda"] = "cpu"


# -- data ---------------------------------------------------------------------------------------
def decode_video(data: bytes, max_frames: int, max_side: int) -> torch.Tensor:
    """Decodes up to `max_frames` (cut to 1 + 4k) frames with the pipeline's decoder: (T, H, W, 3) uint8.

    Frames are scaled so the longer side is at most `max_side`, sizes rounded to multiples of 8.
    """
    from model.media import ClipSettings, probe_video, sample_clips

    info = probe_video(data)
    total, (height, width) = info.frame_count, info.frame_size
    frames = min(total, max_frames)
    frames = ((frames - 1) // TEMPORAL_COMPRESSION) * TEMPORAL_COMPRESSION + 1
    scale = min(1.0, max_side / max(height, width))
    out_h = max(SPATIAL_COMPRESSION, int(height * scale) // SPATIAL_COMPRESSION * SPATIAL_COMPRESSION)
    out_w = max(SPATIAL_COMPRESSION, int(width * scale) // SPATIAL_COMPRESSION * SPATIAL_COMPRESSION)
    clip = sample_clips(data, ClipSettings(num_frames=frames, height=out_h, width=out_w, resize_mode="crop"))[0]
    return torch.from_numpy(np.ascontiguousarray(clip.frames))


def build_sampler(job: TrainJob) -> tuple[ClipSampler, FrameBankSampler]:
    """The mixture of real-footage crops and synthetic motion, and the real-footage sampler alone."""
    storage = StorageSettings(endpoint_url=job.endpoint_url)
    bank = [decode_video(read_bytes(uri, storage), job.max_decode_frames, job.max_decode_side) for uri in job.videos]
    real = FrameBankSampler(bank)
    if job.synthetic_fraction <= 0:
        return real, real
    mix = MixtureSampler([real, SyntheticMotionSampler()], [1 - job.synthetic_fraction, job.synthetic_fraction])
    return mix, real


def _val_batch(job: TrainJob, real: FrameBankSampler) -> torch.Tensor | None:
    if job.val_clips == 0:
        return None
    cfg = job.train
    return real.sample(torch.Generator().manual_seed(VAL_SEED), job.val_clips, cfg.num_frames, cfg.height, cfg.width)


# -- one process --------------------------------------------------------------------------------
def run_local(job: TrainJob, output: str | Path, resume: str | Path | None = None) -> Path:
    """Trains in this process; returns the last checkpoint directory (under `output/checkpoints`)."""
    torch.set_num_threads(job.threads_per_worker)
    sampler, real = build_sampler(job)
    trainer = Trainer(job.train, sampler, val_batch=_val_batch(job, real), device=job.device)
    root = Path(output) / "checkpoints"
    if resume is None:
        resume = latest_checkpoint(root)
    if resume is not None:
        trainer.resume(resume)
    trainer.run(checkpoint_root=root)
    last = latest_checkpoint(root)
    if last is None:
        raise RuntimeError(f"training finished without writing a checkpoint under {root}")
    return last


def latest_checkpoint(root: str | Path) -> Path | None:
    found = sorted(Path(root).glob(f"step-*/{CHECKPOINT_NAME}"))
    return found[-1].parent if found else None


# -- Ray Train ----------------------------------------------------------------------------------
def train_loop_per_worker(config: dict[str, object]) -> None:
    """What each Ray Train worker runs: Ray has set up the process group; the loop wraps DDP."""
    import ray.train

    job = TrainJob.model_validate(config["job"])
    torch.set_num_threads(job.threads_per_worker)
    device = ray.train.torch.get_device() if job.device == "cuda" else torch.device("cpu")
    sampler, real = build_sampler(job)
    trainer = Trainer(job.train, sampler, val_batch=_val_batch(job, real), device=device)
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            trainer.resume(directory)
    with tempfile.TemporaryDirectory(prefix="wfvae-ckpt-") as scratch:

        def report(step: int, metrics: dict[str, float], saved: Path | None) -> None:
            ckpt = ray.train.Checkpoint.from_directory(str(saved)) if saved is not None else None
            ray.train.report(metrics, checkpoint=ckpt)

        trainer.run(reporter=report, checkpoint_root=scratch)


def run_ray(job: TrainJob, num_workers: int, storage_path: str, name: str, use_gpu: bool = False) -> Path:
    """Runs the job on the connected (or a new local) Ray cluster; returns the final checkpoint directory.

    Re-running with the same `storage_path` and `name` resumes from the run's latest checkpoint.
    """
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"job": job.model_dump(mode="json")},
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=num_workers, use_gpu=use_gpu, resources_per_worker={"CPU": 1} if not use_gpu else None
        ),
        run_config=RunConfig(name=name, storage_path=storage_path,
                             checkpoint_config=CheckpointConfig(num_to_keep=3)),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"Ray Train run {name} finished without a checkpoint (error: {result.error})")
    return Path(result.checkpoint.path)


# -- command line -------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jobs.train", description=__doc__.split("\n\n")[0])
    which = p.add_mutually_exclusive_group()
    which.add_argument("--stage", choices=["stage1", "stage2", "stage3"], help="the paper's Table 7 stages")
    which.add_argument("--recipe", choices=["tiny-cpu"], help="the bundled small model's recipe")
    p.add_argument("--videos", nargs="+", required=True, help="video paths or URIs (globs expand in the shell)")
    p.add_argument("--output", required=True, help="run directory (local) or Ray storage path")
    p.add_argument("--name", default="wfvae", help="Ray run name")
    p.add_argument("--workers", type=int, default=0, help="Ray Train workers; 0 trains in this process")
    p.add_argument("--gpu", action="store_true", help="one GPU per worker, NCCL")
    p.add_argument("--init-from", help="weights to fine-tune (a load_wfvae source)")
    p.add_argument("--lpips-weights", help="local directory/file (or hub id) of VGG16 + LPIPS weights")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--num-frames", type=int)
    p.add_argument("--size", type=int, help="square crop side")
    p.add_argument("--disc-start", type=int)
    p.add_argument("--synthetic-fraction", type=float, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--resume", help="local runs: checkpoint directory to resume from (default: the latest)")
    return p


def job_from_args(args: argparse.Namespace) -> TrainJob:
    overrides: dict[str, Any] = {}
    if args.init_from:
        overrides["init_from"] = args.init_from
    if args.lpips_weights:
        overrides["lpips_weights"] = args.lpips_weights
    for key in ("max_steps", "batch_size", "num_frames"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    if args.size is not None:
        overrides["height"] = overrides["width"] = args.size
    if args.recipe == "tiny-cpu":
        train, synthetic = tiny_cpu_config(**overrides), 0.2
    else:
        train, synthetic = stage_config(args.stage or "stage1", **overrides), 0.0
    if args.disc_start is not None:
        train = train.model_copy(update={"loss": train.loss.model_copy(update={"disc_start": args.disc_start})})
    return TrainJob(
        train=train,
        videos=args.videos,
        synthetic_fraction=synthetic if args.synthetic_fraction is None else args.synthetic_fraction,
        threads_per_worker=args.threads,
        device="cuda" if args.gpu else "cpu",
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL"),
    )


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = _parser().parse_args(argv)
    job = job_from_args(args)
    log.info("job: %s", json.dumps(job.model_dump(mode="json"), sort_keys=True))
    if args.workers == 0:
        last = run_local(job, args.output, args.resume)
    else:
        last = run_ray(job, args.workers, args.output, args.name, use_gpu=args.gpu)
    print(f"final checkpoint: {last}\nweights for load_wfvae: {last / MODEL_DIR_NAME}")


if __name__ == "__main__":
    main()
