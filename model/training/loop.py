"""The WF-VAE training loop: one process, or one DDP rank of many (Ray Train runs it per worker).

Steps follow the official trainer: before `disc_start` every step trains the autoencoder; after
it, odd steps train the discriminator and even steps the autoencoder. The EMA is updated after
each autoencoder step. Every step seeds torch from (seed, rank, step), so batches, posterior
samples and dropout depend on the step alone, and a resumed run equals an uninterrupted one.

Checkpoints use the official training layout (`current_step`, `state_dict.gen_model`,
`state_dict.dics_model`, `optimizer_state`, `ema_state_dict`) in `checkpoint.ckpt`, plus the
Hugging Face layout of the EMA weights in `model/` for `model.load_wfvae`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..checkpoint import load_wfvae, save_wfvae
from ..errors import CheckpointError
from ..metrics import psnr
from ..wfvae import WFVAE
from .config import TrainConfig
from .data import ClipSampler
from .discriminator import PatchDiscriminator3D
from .ema import EMA
from .losses import discriminator_loss, generator_loss
from .lpips import LPIPS, PerceptualWeightsMissing

__all__ = ["CHECKPOINT_NAME", "MODEL_DIR_NAME", "Reporter", "Trainer", "step_seed"]

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.ckpt"
MODEL_DIR_NAME = "model"
# Large odd multipliers keep the (seed, rank, step) -> seed map free of collisions in practice.
_RANK_STRIDE = 1_000_003
_SEED_STRIDE = 2_654_435_761

# (step, metrics, checkpoint directory or None); called on every rank at log and checkpoint steps.
Reporter = Callable[[int, dict[str, float], "Path | None"], None]


def step_seed(seed: int, rank: int, step: int) -> int:
    return (seed * _SEED_STRIDE + rank * _RANK_STRIDE + step) % (2**63 - 1)


class Trainer:
    """Holds the models, optimisers and EMA of one run; `run()` trains to `config.max_steps`."""

    def __init__(
        self,
        config: TrainConfig,
        sampler: ClipSampler,
        *,
        val_batch: Tensor | None = None,
        device: str | torch.device = "cpu",
        perceptual: nn.Module | None = None,
    ) -> None:
        self.config = config
        self.sampler = sampler
        self.device = torch.device(device)
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.world_size = dist.get_world_size() if dist.is_initialized() else 1
        if config.batch_size % self.world_size:
            raise ValueError(f"batch_size {config.batch_size} is not divisible by {self.world_size} workers")
        self.local_batch = config.batch_size // self.world_size
        self.val_batch = val_batch
        self.step = 0

        torch.manual_seed(config.seed)  # identical initial weights on every rank
        self.vae = WFVAE(config.model).to(self.device)
        if config.init_from:
            self.vae.load_state_dict(load_wfvae(config.init_from, config=config.model).state_dict(), strict=True)
        self.vae.train()
        self.perceptual = perceptual if config.loss.perceptual_weight > 0 else None
        if self.perceptual is None and config.loss.perceptual_weight > 0:
            try:
                self.perceptual = LPIPS.from_weights(config.lpips_weights)
            except PerceptualWeightsMissing as err:
                log.warning("perceptual (LPIPS) loss is OFF: %s", err)
        if self.perceptual is not None:
            self.perceptual = self.perceptual.to(self.device).eval().requires_grad_(False)
        self.discriminator = (
            PatchDiscriminator3D(width=config.loss.disc_width, num_layers=config.loss.disc_layers).to(self.device)
            if config.loss.use_gan else None
        )
        optim = config.optim
        self.opt_g = torch.optim.AdamW(self.vae.parameters(), lr=optim.lr, betas=optim.betas,
                                       weight_decay=optim.weight_decay)
        self.opt_d = (
            torch.optim.AdamW(self.discriminator.parameters(), lr=optim.disc_lr or optim.lr, betas=optim.betas,
                              weight_decay=optim.weight_decay)
            if self.discriminator is not None else None
        )
        self.ema = EMA(self.vae, config.ema_decay) if config.ema_decay is not None else None
        # DDP wrappers for the forward passes; the raw modules stay for EMA, saving and last layer.
        distributed = dist.is_initialized() and self.world_size > 1
        self._vae_fwd: nn.Module = nn.parallel.DistributedDataParallel(self.vae) if distributed else self.vae
        self._disc_fwd: nn.Module | None = (
            nn.parallel.DistributedDataParallel(self.discriminator)
            if distributed and self.discriminator is not None else self.discriminator
        )

    # -- one step ---------------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        optim = self.config.optim
        if step < optim.warmup_steps:
            return optim.lr * (step + 1) / optim.warmup_steps
        if optim.schedule == "constant":
            return optim.lr
        span = max(1, self.config.max_steps - optim.warmup_steps)
        progress = min(1.0, (step - optim.warmup_steps) / span)
        floor = optim.min_lr_ratio
        return optim.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))

    def batch_at(self, step: int) -> Tensor:
        """This rank's batch for `step`: (b, 3, T, H, W), b = batch_size / world_size."""
        generator = torch.Generator().manual_seed(step_seed(self.config.seed, self.rank, step))
        cfg = self.config
        batch = self.sampler.sample(generator, self.local_batch, cfg.num_frames, cfg.height, cfg.width)
        return batch.to(self.device)

    def train_step(self) -> dict[str, float]:
        """Trains one step (autoencoder or discriminator) and returns its logged terms."""
        step, loss_cfg = self.step, self.config.loss
        torch.manual_seed(step_seed(self.config.seed + 1, self.rank, step))  # posterior noise, dropout
        x = self.batch_at(step)
        train_disc = self._disc_fwd is not None and loss_cfg.gan_active(step) and step % 2 == 1
        lr = self.lr_at(step)
        if train_disc:
            assert self.opt_d is not None and self._disc_fwd is not None
            with torch.no_grad():
                reconstruction = self._vae_fwd(x).reconstruction
            result = discriminator_loss(self._disc_fwd, x, reconstruction, loss_cfg, step)
            _set_lr(self.opt_d, (self.config.optim.disc_lr or self.config.optim.lr) * lr / self.config.optim.lr)
            self.opt_d.zero_grad(set_to_none=True)
            result.total.backward()
            self.opt_d.step()
        else:
            out = self._vae_fwd(x)
            result = generator_loss(
                x, out, loss_cfg, step,
                perceptual=self.perceptual,
                discriminator=self._disc_fwd,
                last_layer=self.vae.last_layer_weight(),
            )
            _set_lr(self.opt_g, lr)
            self.opt_g.zero_grad(set_to_none=True)
            result.total.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(self.vae.parameters(), self.config.optim.clip_grad_norm)
            self.opt_g.step()
            if self.ema is not None:
                self.ema.update(self.vae)
            result.terms["grad_norm"] = float(grad_norm)
            with torch.no_grad():
                result.terms["train_psnr"] = float(psnr(out.reconstruction.detach(), x).mean())
        self.step += 1
        return {**result.terms, "lr": lr}

    # -- a run ------------------------------------------------------------------------------------
    def run(self, reporter: Reporter | None = None, checkpoint_root: str | Path | None = None,
            until: int | None = None) -> dict[str, float]:
        """Trains until step `until` (default `max_steps`); returns the last logged metrics.

        At `log_every` steps the metrics go to the log and the reporter; at `checkpoint_every`
        steps and at the end, rank 0 writes a checkpoint under `checkpoint_root/step-XXXXXXXX`
        and every rank calls the reporter with it (Ray's `train.report` needs all ranks).
        """
        until = self.config.max_steps if until is None else until
        if self.rank == 0:
            log.info("training from step %d to %d: %d clips/step on %d worker(s), %s, perceptual %s, GAN %s",
                     self.step, until, self.config.batch_size, self.world_size, self.device,
                     "on" if self.perceptual is not None else "OFF",
                     f"from step {self.config.loss.disc_start}" if self.config.loss.use_gan else "off")
        metrics: dict[str, float] = {}
        window: dict[str, list[float]] = {}
        tick = time.perf_counter()
        while self.step < until:
            for key, value in self.train_step().items():
                window.setdefault(key, []).append(value)
            at_log = self.step % self.config.log_every == 0
            at_eval = self.val_batch is not None and self.step % self.config.eval_every == 0
            at_ckpt = self.step % self.config.checkpoint_every == 0 or self.step == until
            if not (at_log or at_eval or at_ckpt):
                continue
            metrics = {k: sum(v) / len(v) for k, v in window.items()}
            metrics["step"] = float(self.step)
            metrics["sec_per_step"] = (time.perf_counter() - tick) / max(1, len(next(iter(window.values()), [0])))
            window, tick = {}, time.perf_counter()
            if at_eval:
                metrics |= self.validate()
            if self.rank == 0:
                log.info("step %d %s", self.step, " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())))
            saved = None
            if at_ckpt and checkpoint_root is not None and self.rank == 0:
                saved = self.save_checkpoint(Path(checkpoint_root) / f"step-{self.step:08d}")
            if reporter is not None:
                reporter(self.step, metrics, saved)
        return metrics

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """PSNR of the posterior mode on the validation batch, with live and (if on) EMA weights."""
        assert self.val_batch is not None
        x = self.val_batch.to(self.device)
        self.vae.eval()
        try:
            result = {"val_psnr": float(psnr(self.vae(x, sample_posterior=False).reconstruction, x).mean())}
            if self.ema is not None:
                with self.ema.applied(self.vae):
                    result["val_psnr_ema"] = float(psnr(self.vae(x, sample_posterior=False).reconstruction, x).mean())
        finally:
            self.vae.train()
        return result

    # -- checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, object]:
        """The official training checkpoint's layout (its keys, its spellings)."""
        return {
            "current_step": self.step,
            "state_dict": {
                "gen_model": _cpu(self.vae.state_dict()),
                "dics_model": _cpu(self.discriminator.state_dict()) if self.discriminator is not None else {},
            },
            "optimizer_state": {
                "gen_optimizer": self.opt_g.state_dict(),
                "disc_optimizer": self.opt_d.state_dict() if self.opt_d is not None else {},
            },
            "ema_state_dict": _cpu(self.ema.state_dict()) if self.ema is not None else {},
            # What the official trainer reads to resume its data order; ours derives from the step.
            # (Its `dics_model` is its whole loss module, LPIPS included: resume it there with
            # `--not_resume_discriminator`.)
            "sampler_state": {"epoch": 0, "seed": self.config.seed, "current_index": 0},
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        try:
            models, optims = state["state_dict"], state["optimizer_state"]
            self.vae.load_state_dict(models["gen_model"], strict=True)  # type: ignore[index]
            if self.discriminator is not None and models["dics_model"]:  # type: ignore[index]
                self.discriminator.load_state_dict(models["dics_model"], strict=True)  # type: ignore[index]
                assert self.opt_d is not None
                self.opt_d.load_state_dict(optims["disc_optimizer"])  # type: ignore[index]
            self.opt_g.load_state_dict(optims["gen_optimizer"])  # type: ignore[index]
            if self.ema is not None:
                ema_state = state.get("ema_state_dict") or models["gen_model"]  # type: ignore[index]
                self.ema.load_state_dict(ema_state)  # type: ignore[arg-type]
            self.step = int(state["current_step"])  # type: ignore[arg-type]
        except (KeyError, RuntimeError, ValueError, TypeError) as err:
            raise CheckpointError(f"cannot resume from this training checkpoint: {err}") from err

    def save_checkpoint(self, directory: str | Path) -> Path:
        """Writes `checkpoint.ckpt` and `model/` (EMA weights, or live ones without EMA)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = self.state_dict()
        torch.save(state, directory / CHECKPOINT_NAME)
        export = WFVAE(self.config.model)
        export.load_state_dict(state["ema_state_dict"] or state["state_dict"]["gen_model"], strict=True)  # type: ignore[index]
        save_wfvae(export, directory / MODEL_DIR_NAME)
        return directory

    def resume(self, directory: str | Path) -> None:
        path = Path(directory)
        path = path / CHECKPOINT_NAME if path.is_dir() else path
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as err:  # missing file, pickle and zip errors of many kinds
            raise CheckpointError(f"cannot read training checkpoint {path}: {err}") from err
        self.load_state_dict(state)
        log.info("resumed from %s at step %d", path, self.step)


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def _cpu(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().cpu().clone() for k, v in state.items()}

