"""Exponential moving average of a model's weights (decay 0.999 in the paper's recipe)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

__all__ = ["EMA"]


class EMA:
    """shadow <- decay * shadow + (1 - decay) * weight, for every trainable parameter.

    The shadow holds a full state dict: averaged parameters, and buffers (the fixed Haar
    filters) copied as they are, so `state_dict()` loads into the model strictly and is a
    complete official `ema_state_dict`.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self._trainable = {name for name, p in model.named_parameters() if p.requires_grad}
        self.shadow: dict[str, Tensor] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for name, param in model.named_parameters():
            if name in self._trainable:
                self.shadow[name].lerp_(param.detach(), 1.0 - self.decay)

    def state_dict(self) -> dict[str, Tensor]:
        return {k: v.clone() for k, v in self.shadow.items()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        missing = set(self.shadow) - set(state)
        if missing:
            raise KeyError(f"EMA state lacks {len(missing)} entries, e.g. {sorted(missing)[:3]}")
        for key, value in state.items():
            if key in self.shadow:
                self.shadow[key].copy_(value)

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[nn.Module]:
        """Runs the body with the averaged weights in `model`, then puts the live weights back."""
        live = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.shadow, strict=True)
        try:
            yield model
        finally:
            model.load_state_dict(live, strict=True)
