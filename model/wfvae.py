"""WF-VAE: the model, whole-clip and chunked encode/decode (arXiv 2411.17459)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import torch
from torch import Tensor, nn

from .causal import WHOLE_CLIP
from .config import WFVAEConfig
from .decoder import Decoder
from .distribution import DiagonalGaussian
from .encoder import Encoder
from .fast_path import FastPath, engaged
from .fast_path.channels_last import prepare
from .streaming import DecodeStream, EncodeStream, frame_chunks, latent_chunks, run_stream
from .validation import check_latent, check_video

__all__ = ["WFVAE", "ForwardOutput"]


class ForwardOutput(NamedTuple):
    """A training step's view: reconstruction, posterior, and both ends of the energy flow."""

    reconstruction: Tensor
    posterior: DiagonalGaussian
    encoder_l1: Tensor
    decoder_l1: Tensor
    encoder_l2: Tensor
    decoder_l2: Tensor


class WFVAE(nn.Module):
    """The WF-VAE autoencoder; state-dict keys are the official checkpoints' keys.

    `fast_path` says when the CPU fast path runs (`model.fast_path.FastPath`); replace it to
    change that, e.g. `vae.fast_path = FastPath(enabled=False)` for the reference computation.
    """

    def __init__(self, config: WFVAEConfig, fast_path: FastPath | None = None) -> None:
        super().__init__()
        self.config = config
        self.fast_path = FastPath() if fast_path is None else fast_path
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        # Every causal layer's stream-state key is its module path, fixed here once.
        for name, module in self.named_modules():
            if hasattr(module, "cache_key"):
                module.cache_key = name

    # -- whole clip, or chunked through a stream -------------------------------------------
    def encode(self, x: Tensor, chunk_frames: int | None = None) -> DiagonalGaussian:
        """x: (B, 3, T, H, W) in [-1, 1], T = 1 + 4k, H and W multiples of 8."""
        x = check_video(x)
        if chunk_frames is None:
            with self.running(x) as x:
                return DiagonalGaussian(self.encoder(x, WHOLE_CLIP).moments)
        return DiagonalGaussian(run_stream(self.encode_stream(), x, frame_chunks(x.shape[2], chunk_frames)))

    def decode(self, z: Tensor, chunk_latents: int | None = None) -> Tensor:
        """z: (B, latent_dim, t, h, w) -> video (B, 3, 1 + 4(t - 1), 8h, 8w)."""
        z = check_latent(z, self.config.latent_dim)
        if chunk_latents is None:
            with self.running(z) as z:
                return self.decoder(z, WHOLE_CLIP).video
        return run_stream(self.decode_stream(), z, latent_chunks(z.shape[2], chunk_latents))

    def encode_stream(self) -> EncodeStream:
        """A new encode stream; raises `StreamingUnsupportedError` for GroupNorm configs."""
        return EncodeStream(self)

    def decode_stream(self) -> DecodeStream:
        return DecodeStream(self)

    def forward(self, x: Tensor, sample_posterior: bool = True,
                generator: torch.Generator | None = None) -> ForwardOutput:
        """Whole-clip reconstruction for training, with the energy-flow coefficients for the WL loss."""
        with self.running(check_video(x)) as x:
            encoded = self.encoder(x, WHOLE_CLIP)
            posterior = DiagonalGaussian(encoded.moments)
            z = posterior.sample(generator) if sample_posterior else posterior.mode()
            decoded = self.decoder(z, WHOLE_CLIP)
        return ForwardOutput(
            decoded.video, posterior, encoded.l1_coeffs, decoded.l1_coeffs, encoded.l2_coeffs, decoded.l2_coeffs
        )

    # -- helpers ------------------------------------------------------------------------------
    @contextmanager
    def running(self, x: Tensor) -> Iterator[Tensor]:
        """`x` on the model's device, in its dtype and layout, with the fast path's plan for it
        in force while the block runs the encoder or decoder (decided once per call)."""
        param = next(self.parameters())
        x = x.to(device=param.device, dtype=param.dtype)
        plan = self.fast_path.plan_for(self, x)
        with engaged(plan):
            yield prepare(self, x, plan)

    def last_layer_weight(self) -> Tensor:
        """The decoder's last convolution weight (for the GAN loss's adaptive weight)."""
        return self.decoder.conv_out.weight

    def parameter_counts(self) -> dict[str, int]:
        """Parameters as the official code counts them (paper Table 3).

        The official encoder keeps its two 3D Haar filter banks as frozen parameters (the
        decoder's inverse filters are buffers); here all fixed filters are buffers, so the
        encoder's banks are added back for a like-for-like figure.
        """
        haar_banks = (self.encoder.wavelet_transform_in, self.encoder.wavelet_transform_l2)
        return {
            "encoder": sum(p.numel() for p in self.encoder.parameters()) + sum(m.filters.numel() for m in haar_banks),
            "decoder": sum(p.numel() for p in self.decoder.parameters()),
        }
