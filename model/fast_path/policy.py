"""The CPU fast path's one policy object, and the plan it resolves to for one model call."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cache

import torch
from torch import Tensor, nn

from ..precision import cpu_capability
from .winograd import WinogradSettings, pays_on_this_cpu

__all__ = ["REFERENCE", "FastPath", "Plan", "SlabSettings", "active", "engaged", "winograd_for"]


@dataclass(frozen=True)
class SlabSettings:
    """How the fast path cuts activations into slabs of frames (`frame_slabs`, `causal_slabs`)."""

    # One activation of a slab. 32 MiB keeps a slab's tensors in the range the allocator reuses,
    # and a 17x128x128 clip (28 MiB per activation of the encoder's level 1) in one slab.
    slab_bytes: int = 32 * 2**20
    # One activation of a per-frame residual block written over its input (`add_frame_slabs_`).
    residual_slab_bytes: int = 8 * 2**20
    # A causal block over `slab_bytes` runs in `max_slabs` slabs, or fewer where they would be
    # thinner than `min_slab_frames`: a slab's causal windows carry 2 frames more than it, so thin
    # slabs transform their inputs again and again (2 threads, `benchmarks/causal_slabs.py`):
    # - 384 channels, 9x64x64 (17x128x128 decode): 3 slabs of 3 frames held 105 MiB against 199
    #   whole, as fast (1957 vs 1962 ms); 2-frame slabs 87 MiB at 1.15x the time.
    # - 33x256x256: 3 slabs of 5-6 frames ran as fast as whole (96.9 vs 95.8 s decode) with a
    #   peak of 1013 MiB against 1371; 3-frame slabs cost 1.12x, 1- and 2-frame slabs 1.35x.
    min_slab_frames: int = 3
    max_slabs: int = 3

    def __post_init__(self) -> None:
        if min(self.slab_bytes, self.residual_slab_bytes) < 0:
            raise ValueError(f"slab sizes must be 0 or more bytes: {self}")
        if min(self.min_slab_frames, self.max_slabs) < 1:
            raise ValueError(f"min_slab_frames and max_slabs must be at least 1: {self}")


@dataclass(frozen=True)
class Plan:
    """What the fast path does during one call; `REFERENCE` (all off) is the official computation."""

    winograd: WinogradSettings | None = None  # None: oneDNN's direct convolutions only
    slabs: SlabSettings | None = None  # None: every layer over the whole clip at once
    fused_norm: bool = False  # LayerNorm + SiLU written channels-first into causal windows
    channels_last: bool = False  # activations channels-last end to end (bf16 on AMX)


REFERENCE = Plan()


@dataclass(frozen=True)
class FastPath:
    """When the CPU fast path runs, and how: set it on a model (`vae.fast_path = FastPath(...)`).

    `None` means "where it pays on this CPU". `plan_for` is the one place that decides, once per
    call: nothing runs outside CPU inference (no device but the CPU, no autograd), and each part
    only in the dtype it was measured in.
    """

    enabled: bool = True  # False: `REFERENCE` on every call
    winograd: bool | None = None  # None: where oneDNN's float32 convolution is held to AVX2
    winograd_settings: WinogradSettings = field(default_factory=WinogradSettings)
    slabs: SlabSettings | None = field(default_factory=SlabSettings)  # None: whole clips
    fused_norm: bool = True
    channels_last: bool | None = None  # None: where oneDNN may use AMX-BF16

    def plan_for(self, model: nn.Module, x: Tensor) -> Plan:
        """The plan for running `model` on its input `x`."""
        if not self.enabled or x.device.type != "cpu" or _tracks_grad(model, x):
            return REFERENCE
        float32, bf16 = x.dtype == torch.float32, x.dtype == torch.bfloat16
        winograd = float32 and (pays_on_this_cpu() if self.winograd is None else self.winograd)
        channels_last = bf16 and (_amx_bf16() if self.channels_last is None else self.channels_last)
        return Plan(
            winograd=self.winograd_settings if winograd else None,
            # Dropout in training mode draws per call: slabs would draw other masks than the clip.
            slabs=None if model.training else self.slabs,
            # bf16 keeps F.layer_norm: it rounds once, where the fused steps would round four times.
            fused_norm=self.fused_norm and float32,
            channels_last=channels_last,
        )


def _tracks_grad(model: nn.Module, x: Tensor) -> bool:
    return torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in model.parameters()))


@cache
def _amx_bf16() -> bool:
    """Whether this process's oneDNN may use AMX-BF16 (read once, as oneDNN reads its ISA limit)."""
    return cpu_capability().amx_bf16


_ACTIVE: ContextVar[Plan] = ContextVar("wfvae_fast_path_plan", default=REFERENCE)


def active() -> Plan:
    """The plan in force: the engaged call's, else `REFERENCE`."""
    return _ACTIVE.get()


@contextmanager
def engaged(plan: Plan) -> Iterator[Plan]:
    """Puts `plan` in force for the layers run within the block (per thread and task)."""
    token = _ACTIVE.set(plan)
    try:
        yield plan
    finally:
        _ACTIVE.reset(token)


def winograd_for(conv: nn.Conv2d | nn.Conv3d, x: Tensor) -> WinogradSettings | None:
    """The Winograd settings when the plan in force runs `conv` on `x` as Winograd, else None."""
    settings = active().winograd
    return settings if settings is not None and settings.applies(conv, x) else None
