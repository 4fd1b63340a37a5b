"""WF-VAE encoder: Haar input transform, two downsampling levels, energy-flow pathway (paper Sec. 3.1-3.2)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from . import frame_slabs
from .causal import CausalContext
from .causal_slabs import run_layer
from .config import RGB_CHANNELS, WFVAEConfig
from .frame_slabs import add_frame_slabs_, frames_per_slab, map_frame_slabs
from .layers import (
    CausalConv3d,
    ChannelNorm,
    FrameAttention,
    FrameConv2d,
    FrameDownsample,
    ResnetBlock2D,
    ResnetBlock3D,
)
from .resample import TimeSpaceDownsample
from .wavelet import HAAR_2D_SUBBANDS, HAAR_3D_SUBBANDS, HaarTransform2D, HaarTransform3D

__all__ = ["Encoder", "EncoderOutput"]

RGB = RGB_CHANNELS
# The energy flow carries the low band of the colour channels: 3 of the Haar outputs.
LOW_BAND = slice(0, RGB)


class EncoderOutput(NamedTuple):
    moments: Tensor  # (B, 2 * latent_dim, 1 + k, H/8, W/8): mean, then log-variance
    l1_coeffs: Tensor  # (B, 12, 1 + 2k, H/4, W/4) level-1 energy-flow wavelet coefficients
    l2_coeffs: Tensor  # (B, 24, 1 + k, H/8, W/8) level-2 energy-flow wavelet coefficients


class Encoder(nn.Module):
    def __init__(self, config: WFVAEConfig) -> None:
        super().__init__()
        base, flow, norm, drop = (
            config.base_channels,
            config.encoder_energy_flow_hidden_size,
            config.norm_type,
            config.dropout,
        )
        subbands_in = HAAR_3D_SUBBANDS * RGB  # 24
        self.down1 = nn.ModuleList([
            FrameConv2d(subbands_in, base, 3, padding=1),
            *[ResnetBlock2D(base, base, norm, drop) for _ in range(config.encoder_num_resblocks)],
            FrameDownsample(base),
        ])
        self.down2 = nn.ModuleList([
            FrameConv2d(base + flow, 2 * base, 3, padding=1),
            *[ResnetBlock3D(2 * base, 2 * base, norm, drop) for _ in range(config.encoder_num_resblocks)],
            TimeSpaceDownsample(2 * base),
        ])
        self.connect_l1 = FrameConv2d(HAAR_2D_SUBBANDS * RGB, flow, 3, padding=1)
        self.connect_l2 = FrameConv2d(HAAR_3D_SUBBANDS * RGB, flow, 3, padding=1)
        mid: list[nn.Module] = [ResnetBlock3D(2 * base + flow, 4 * base, norm, drop)]
        if config.use_attention:
            mid.append(FrameAttention(4 * base, norm))
        mid.append(ResnetBlock3D(4 * base, 4 * base, norm, drop))
        self.mid = nn.ModuleList(mid)
        self.norm_out = ChannelNorm(4 * base, norm)
        self.conv_out = CausalConv3d(4 * base, 2 * config.latent_dim, 3, padding=1)
        self.wavelet_transform_in = HaarTransform3D()
        self.wavelet_transform_l1 = HaarTransform2D()
        self.wavelet_transform_l2 = HaarTransform3D()
        self.latent_channels = 2 * config.latent_dim

    def forward(self, x: Tensor, ctx: CausalContext) -> EncoderOutput:  # x: (B, 3, T, H, W)
        b, _, _, h, w = x.shape
        coeffs = self.wavelet_transform_in(x, ctx)  # (B, 24, t, H/2, W/2)
        if coeffs.shape[2] == 0:
            return self._empty(x, h, w)
        l1_coeffs = self.wavelet_transform_l1(coeffs[:, LOW_BAND])  # (B, 12, t, H/4, W/4)
        l2_coeffs = self.wavelet_transform_l2(l1_coeffs[:, LOW_BAND], ctx)  # (B, 24, t', H/8, W/8)

        hidden = map_frame_slabs(self._level1, coeffs, self._level1_slab_frames(coeffs))
        hidden = torch.cat([hidden, self.connect_l1(l1_coeffs)], dim=1)  # (B, base + flow, t, H/4, W/4)
        hidden = self.down2[0](hidden)
        for layer in self.down2[1:]:  # (B, 2 base, t', H/8, W/8) after the downsample
            hidden = run_layer(layer, hidden, ctx)
        if hidden.shape[2] == 0:
            return self._empty(x, h, w)
        hidden = torch.cat([hidden, self.connect_l2(l2_coeffs)], dim=1)
        for layer in self.mid:
            hidden = run_layer(layer, hidden, ctx)
        moments = self.conv_out.convolve(self.conv_out.window(hidden, ctx, self.norm_out.activated_frames))
        return EncoderOutput(moments, l1_coeffs, l2_coeffs)

    def _level1_slab_frames(self, coeffs: Tensor) -> int:
        """Frames per slab of level 1, the per-frame 2D layers at the model's widest activations.

        On CPUs, slabs of `SLAB_BYTES`. On GPUs, the whole clip, as in the measured GPU figures:
        slabs mean more and smaller kernels there, which has not been timed on a GPU yet.
        """
        if coeffs.device.type != "cpu":
            return coeffs.shape[2]
        frame_bytes = self.down1[0].out_channels * coeffs.shape[3] * coeffs.shape[4] * coeffs.element_size()
        return frames_per_slab(frame_bytes)

    def _level1(self, coeffs: Tensor) -> Tensor:
        """(B, 24, t, H/2, W/2) -> (B, base, t, H/4, W/4), every frame on its own."""
        hidden = self.down1[0](coeffs)
        for block in self.down1[1:-1]:
            hidden = self._level1_block(block, hidden)
        return self.down1[-1](hidden)

    def _level1_block(self, block: ResnetBlock2D, hidden: Tensor) -> Tensor:
        """`block(hidden)`. In inference on CPUs, written over `hidden` (made by this level, read
        by no one else) `RESIDUAL_SLAB_BYTES` at a time: the block then holds one activation and a
        few frames, where a new output beside the body's two activations made three."""
        if hidden.requires_grad or block.nin_shortcut is not None or hidden.device.type != "cpu":
            return block(hidden)
        frame_bytes = hidden[:, :, :1].numel() * hidden.element_size()
        return add_frame_slabs_(block.residual, hidden, frames_per_slab(frame_bytes, frame_slabs.RESIDUAL_SLAB_BYTES))

    def _empty(self, x: Tensor, h: int, w: int) -> EncoderOutput:
        b = x.shape[0]
        return EncoderOutput(
            x.new_empty((b, self.latent_channels, 0, h // 8, w // 8)),
            x.new_empty((b, HAAR_2D_SUBBANDS * RGB, 0, h // 4, w // 4)),
            x.new_empty((b, HAAR_3D_SUBBANDS * RGB, 0, h // 8, w // 8)),
        )
