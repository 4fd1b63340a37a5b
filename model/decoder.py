"""WF-VAE decoder: mirror of the encoder; the energy flow's coefficients are added back before
each inverse Haar transform (paper Sec. 3.2)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from .backbone import run_layer
from .causal import CausalContext
from .config import RGB_CHANNELS, WFVAEConfig
from .layers import (
    CausalConv3d,
    ChannelNorm,
    FrameAttention,
    FrameConv2d,
    FrameUpsample,
    ResnetBlock3D,
)
from .resample import TimeSpaceUpsample
from .wavelet import (
    HAAR_2D_SUBBANDS,
    HAAR_3D_SUBBANDS,
    InverseHaarTransform2D,
    InverseHaarTransform3D,
)

__all__ = ["Decoder", "DecoderOutput"]

RGB = RGB_CHANNELS
LOW_BAND = slice(0, RGB)
# Key under which a stream keeps level-2 flow frames that are ahead of the upsampled backbone.
PENDING_L2_KEY = "decoder.pending_l2"


class DecoderOutput(NamedTuple):
    video: Tensor  # (B, 3, T, H, W)
    l1_coeffs: Tensor  # (B, 12, t, H/4, W/4) level-1 energy-flow coefficients, level 2 added
    l2_coeffs: Tensor  # (B, 24, t', H/8, W/8) level-2 energy-flow coefficients


class Decoder(nn.Module):
    def __init__(self, config: WFVAEConfig) -> None:
        super().__init__()
        base, flow, norm, drop = (
            config.base_channels,
            config.decoder_energy_flow_hidden_size,
            config.norm_type,
            config.dropout,
        )
        self.flow = flow
        self.conv_in = CausalConv3d(config.latent_dim, 4 * base, 3, padding=1)
        mid: list[nn.Module] = [ResnetBlock3D(4 * base, 4 * base, norm, drop)]
        if config.use_attention:
            mid.append(FrameAttention(4 * base, norm))
        mid.append(ResnetBlock3D(4 * base, 4 * base + flow, norm, drop))
        self.mid = nn.ModuleList(mid)
        self.up2 = nn.ModuleList([
            *[ResnetBlock3D(4 * base, 4 * base, norm, drop) for _ in range(config.decoder_num_resblocks)],
            TimeSpaceUpsample(4 * base, config.t_interpolation),
            ResnetBlock3D(4 * base, 4 * base + flow, norm, drop),
        ])
        self.up1 = nn.ModuleList([
            *[
                ResnetBlock3D(4 * base if i == 0 else 2 * base, 2 * base, norm, drop)
                for i in range(config.decoder_num_resblocks)
            ],
            FrameUpsample(2 * base),
            ResnetBlock3D(2 * base, 2 * base, norm, drop),
        ])
        self.layer = nn.ModuleList([ResnetBlock3D(2 * base, base, norm, drop), ResnetBlock3D(base, base, norm, drop)])
        self.connect_l1 = nn.ModuleList([
            *[ResnetBlock3D(flow, flow, norm, drop) for _ in range(config.connect_res_layer_num)],
            FrameConv2d(flow, HAAR_2D_SUBBANDS * RGB, 3, padding=1),
        ])
        self.connect_l2 = nn.ModuleList([
            *[ResnetBlock3D(flow, flow, norm, drop) for _ in range(config.connect_res_layer_num)],
            FrameConv2d(flow, HAAR_3D_SUBBANDS * RGB, 3, padding=1),
        ])
        self.norm_out = ChannelNorm(base, norm)
        self.conv_out = FrameConv2d(base, HAAR_3D_SUBBANDS * RGB, 3, padding=1)
        self.inverse_wavelet_transform_out = InverseHaarTransform3D()
        self.inverse_wavelet_transform_l1 = InverseHaarTransform2D()
        self.inverse_wavelet_transform_l2 = InverseHaarTransform3D()
        self.base = base

    def forward(self, z: Tensor, ctx: CausalContext) -> DecoderOutput:  # z: (B, latent, t, h, w)
        b, _, t, h, w = z.shape
        flow = self.flow
        if t > 0:
            hidden = self.conv_in(z, ctx)  # (B, 4 base, t, h, w)
            for layer in self.mid:  # (B, 4 base + flow, t, h, w) after the last
                hidden = run_layer(layer, hidden, ctx)
            # Energy flow, level 2: the last `flow` channels become the Haar coefficients of the
            # level-2 low band; their inverse transform gives its frames.
            l2_coeffs = _flow(self.connect_l2, hidden[:, -flow:], ctx)  # (B, 24, t, h, w)
            l2 = self.inverse_wavelet_transform_l2(l2_coeffs, ctx)  # (B, 3, ~2t, 2h, 2w)
            hidden = hidden[:, :-flow]
            for layer in self.up2[:-2]:  # (B, 4 base, t, h, w)
                hidden = run_layer(layer, hidden, ctx)
        else:  # a stream's flush: nothing new, only frames held back upstream
            hidden = z.new_empty((b, 4 * self.base, 0, h, w))
            l2_coeffs = z.new_empty((b, HAAR_3D_SUBBANDS * RGB, 0, h, w))
            l2 = z.new_empty((b, RGB, 0, 2 * h, 2 * w))
        # Level 2 up: T, H and W doubled (the temporal upsampler may hold back one frame).
        hidden = self.up2[-2](hidden, ctx)  # (B, 4 base, n, 2h, 2w), n ~ 2t
        l2 = self._align_pending_l2(l2, hidden.shape[2], ctx)
        if hidden.shape[2] == 0:
            empty = z.new_empty((b, RGB, 0, 8 * h, 8 * w))
            return DecoderOutput(empty, z.new_empty((b, HAAR_2D_SUBBANDS * RGB, 0, 2 * h, 2 * w)), l2_coeffs)
        hidden = run_layer(self.up2[-1], hidden, ctx)  # (B, 4 base + flow, n, 2h, 2w)

        # Energy flow, level 1: coefficients from the last `flow` channels; the level-2 frames
        # join their low band (the official WL loss compares this sum).
        l1_coeffs = _flow(self.connect_l1, hidden[:, -flow:], ctx)  # (B, 12, n, 2h, 2w)
        l1_coeffs = torch.cat([l1_coeffs[:, LOW_BAND] + l2, l1_coeffs[:, RGB:]], dim=1)
        l1 = self.inverse_wavelet_transform_l1(l1_coeffs)  # (B, 3, n, 4h, 4w)
        # Level 1 up: H and W doubled, then the last blocks.
        hidden = hidden[:, :-flow]
        for layer in [*self.up1, *self.layer]:  # (B, base, n, 4h, 4w) after the last
            hidden = run_layer(layer, hidden, ctx)
        hidden = self.norm_out(hidden, act=True)
        hidden = self.conv_out(hidden)  # (B, 24, n, 4h, 4w): Haar coefficients of the output
        # The level-1 flow joins the output's low band before the last inverse transform.
        hidden = torch.cat([hidden[:, LOW_BAND] + l1, hidden[:, RGB:]], dim=1)
        video = self.inverse_wavelet_transform_out(hidden, ctx)  # (B, 3, ~2n, 8h, 8w)
        return DecoderOutput(video, l1_coeffs, l2_coeffs)

    @staticmethod
    def _align_pending_l2(l2: Tensor, frames: int, ctx: CausalContext) -> Tensor:
        """The flow's level-2 frames run ahead of the upsampled backbone by the frame it holds back."""
        pending: Tensor | None = ctx.get(PENDING_L2_KEY)
        if pending is not None and pending.shape[2] > 0:
            l2 = torch.cat([pending, l2], dim=2)
        ctx.put(PENDING_L2_KEY, l2[:, :, frames:].clone())
        return l2[:, :, :frames]


def _flow(connection: nn.ModuleList, x: Tensor, ctx: CausalContext) -> Tensor:
    """An energy-flow connection: residual blocks, then a per-frame convolution to coefficients."""
    for layer in connection:
        x = run_layer(layer, x, ctx)
    return x
