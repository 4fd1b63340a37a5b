"""WF-VAE encoder: Haar input transform, two downsampling levels, energy-flow pathway (paper Sec. 3.1-3.2)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from .backbone import run_frame_stack, run_layer
from .causal import CausalContext
from .config import RGB_CHANNELS, WFVAEConfig
from .layers import (
    CausalConv3d,
    ChannelNorm,
    FrameAttention,
    FrameConv2d,
    FrameDownsample,
    ResnetBlock2D,
    ResnetBlock3D,
    convolve_activation,
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

    def forward(self, x: Tensor, ctx: CausalContext) -> EncoderOutput:  # x: (B, 3, 1 + 4k, H, W)
        # The input's 3D Haar transform: 8 subbands of each colour.
        coeffs = self.wavelet_transform_in(x, ctx)  # (B, 24, 1 + 2k, H/2, W/2)
        if coeffs.shape[2] == 0:  # a stream's chunk that completes no frame yet
            return self._empty(x)
        # Energy flow: the low band, decomposed again at each level, goes straight to the
        # backbone at that level's resolution.
        l1_coeffs = self.wavelet_transform_l1(coeffs[:, LOW_BAND])  # (B, 12, 1 + 2k, H/4, W/4)
        l2_coeffs = self.wavelet_transform_l2(l1_coeffs[:, LOW_BAND], ctx)  # (B, 24, 1 + k, H/8, W/8)

        # Level 1: per-frame 2D blocks over all subbands, then H and W halved.
        hidden = run_frame_stack(self.down1, coeffs)  # (B, base, 1 + 2k, H/4, W/4)
        hidden = torch.cat([hidden, self.connect_l1(l1_coeffs)], dim=1)  # (B, base + flow, 1 + 2k, H/4, W/4)
        # Level 2: causal 3D blocks, then T, H and W halved.
        for layer in self.down2:  # (B, 2 base, 1 + k, H/8, W/8) after the downsample
            hidden = run_layer(layer, hidden, ctx)
        if hidden.shape[2] == 0:
            return self._empty(x)
        hidden = torch.cat([hidden, self.connect_l2(l2_coeffs)], dim=1)  # (B, 2 base + flow, 1 + k, H/8, W/8)
        # Middle blocks (with attention where configured), then the latent's Gaussian.
        for layer in self.mid:  # (B, 4 base, 1 + k, H/8, W/8)
            hidden = run_layer(layer, hidden, ctx)
        moments = convolve_activation(self.conv_out, self.norm_out, hidden, ctx)  # (B, 2 latent, 1 + k, H/8, W/8)
        return EncoderOutput(moments, l1_coeffs, l2_coeffs)

    def _empty(self, x: Tensor) -> EncoderOutput:
        b, _, _, h, w = x.shape
        return EncoderOutput(
            x.new_empty((b, self.latent_channels, 0, h // 8, w // 8)),
            x.new_empty((b, HAAR_2D_SUBBANDS * RGB, 0, h // 4, w // 4)),
            x.new_empty((b, HAAR_3D_SUBBANDS * RGB, 0, h // 8, w // 8)),
        )
