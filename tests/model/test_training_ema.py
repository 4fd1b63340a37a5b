"""EMA of the weights: the update law, buffers copied, strict loading, and swapping weights in and out."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from model import WFVAE, WFVAEConfig
from model.training import EMA


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([1.0, 2.0]))
        self.frozen = nn.Parameter(torch.tensor([5.0]), requires_grad=False)
        self.register_buffer("filters", torch.tensor([9.0]))


def test_shadow_follows_decay_times_shadow_plus_one_minus_decay_times_weight() -> None:
    model = Tiny()
    ema = EMA(model, decay=0.9)
    expected = torch.tensor([1.0, 2.0])
    for value in ([3.0, 2.0], [0.0, -1.0], [10.0, 4.0]):
        with torch.no_grad():
            model.weight.copy_(torch.tensor(value))
            model.frozen.fill_(-1.0)  # not trainable: never averaged
        ema.update(model)
        expected = 0.9 * expected + 0.1 * torch.tensor(value)
    assert (ema.shadow["weight"] - expected).abs().max() < 1e-6
    assert ema.shadow["frozen"].item() == 5.0
    assert ema.shadow["filters"].item() == 9.0


def test_applied_swaps_in_the_average_and_restores_the_live_weights() -> None:
    model = Tiny()
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([3.0, 4.0]))
    ema.update(model)  # shadow = [2, 3]
    with ema.applied(model):
        assert model.weight.tolist() == [2.0, 3.0]
    assert model.weight.tolist() == [3.0, 4.0]


def test_ema_state_is_a_complete_wfvae_state_dict() -> None:
    config = WFVAEConfig(latent_dim=4, base_channels=8, encoder_energy_flow_hidden_size=8,
                         decoder_energy_flow_hidden_size=8, norm_type="layernorm", t_interpolation="trilinear")
    vae = WFVAE(config)
    ema = EMA(vae, decay=0.999)
    WFVAE(config).load_state_dict(ema.state_dict(), strict=True)  # buffers (Haar filters) included


def test_decay_outside_the_unit_interval_is_refused() -> None:
    with pytest.raises(ValueError):
        EMA(Tiny(), decay=1.0)
