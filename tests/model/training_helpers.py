"""Tiny configs shared by the training tests."""

from __future__ import annotations

from model import WFVAEConfig


def tiny_model_config() -> WFVAEConfig:
    """A WF-VAE small enough that a training step takes milliseconds."""
    return WFVAEConfig(
        latent_dim=4,
        base_channels=8,
        encoder_energy_flow_hidden_size=8,
        decoder_energy_flow_hidden_size=8,
        norm_type="layernorm",
        t_interpolation="trilinear",
        use_attention=True,
    )
