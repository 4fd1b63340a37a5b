"""Loading is strict and safe; every official layout loads; saving round-trips."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from model import WFVAE, CheckpointError, ConfigError, load_wfvae, read_state_dict, save_wfvae
from model.checkpoint import CONFIG_NAME, WEIGHTS_NAME, check_checkpoint


def _assert_same_weights(a: WFVAE, b: WFVAE) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_save_then_load_round_trips_with_official_names(tiny_vae: WFVAE, tiny_parity_dir: Path, tmp_path: Path) -> None:
    out = save_wfvae(tiny_vae, tmp_path / "saved")
    assert json.loads((out / CONFIG_NAME).read_text()) == json.loads((tiny_parity_dir / CONFIG_NAME).read_text())
    saved = load_file(str(out / WEIGHTS_NAME))
    official = load_file(str(tiny_parity_dir / WEIGHTS_NAME))
    assert saved.keys() == official.keys()
    assert all(torch.equal(saved[k], official[k]) for k in official)
    _assert_same_weights(load_wfvae(out), tiny_vae)


def test_safetensors_file_with_config_beside_it(tiny_parity_dir: Path, tiny_vae: WFVAE) -> None:
    _assert_same_weights(load_wfvae(tiny_parity_dir / WEIGHTS_NAME), tiny_vae)


@pytest.mark.parametrize(
    "nesting",
    ["flat", "state_dict", "state_dict.gen_model", "ema_state_dict"],
)
def test_official_training_checkpoints_load(nesting: str, tiny_vae: WFVAE, tiny_parity_dir: Path, tmp_path: Path) -> None:
    weights = load_file(str(tiny_parity_dir / WEIGHTS_NAME))
    if nesting == "flat":
        payload: dict = weights
    elif nesting == "state_dict":
        payload = {"state_dict": weights, "epoch": 3}
    elif nesting == "state_dict.gen_model":
        payload = {"state_dict": {"gen_model": weights, "dis_model": {"x": torch.zeros(1)}}}
    else:  # DDP-wrapped EMA weights win over the plain ones
        payload = {
            "ema_state_dict": {f"module.{k}": v for k, v in weights.items()},
            "state_dict": {"gen_model": {k: torch.zeros_like(v) for k, v in weights.items()}},
        }
    ckpt = tmp_path / "model.ckpt"
    torch.save(payload, ckpt)
    shutil.copy(tiny_parity_dir / CONFIG_NAME, tmp_path / CONFIG_NAME)
    _assert_same_weights(load_wfvae(ckpt), tiny_vae)


class _Payload:
    def __reduce__(self):  # what a malicious pickle would run
        return (os.system, ("echo pwned",))


def test_checkpoint_with_code_is_refused(tiny_parity_dir: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": _Payload()}, ckpt)
    with pytest.raises(CheckpointError, match="weights only"):
        read_state_dict(ckpt)


def test_missing_and_unexpected_keys_are_named(tiny_parity_dir: Path, tmp_path: Path) -> None:
    weights = load_file(str(tiny_parity_dir / WEIGHTS_NAME))
    del weights["decoder.conv_out.bias"]
    del weights["encoder.wavelet_transform_in.g_conv.conv.weight"]
    weights["encoder.extra.weight"] = torch.zeros(2)
    save_file(weights, str(tmp_path / WEIGHTS_NAME))
    shutil.copy(tiny_parity_dir / CONFIG_NAME, tmp_path / CONFIG_NAME)
    with pytest.raises(CheckpointError) as err:
        load_wfvae(tmp_path)
    message = str(err.value)
    assert "decoder.conv_out.bias" in message
    assert "encoder.wavelet_transform_in.g_conv.conv.weight" in message
    assert "unexpected keys: encoder.extra.weight" in message


def test_wrong_shapes_are_named(tiny_parity_dir: Path, tmp_path: Path) -> None:
    weights = load_file(str(tiny_parity_dir / WEIGHTS_NAME))
    weights["decoder.conv_out.bias"] = torch.zeros(7)
    save_file(weights, str(tmp_path / WEIGHTS_NAME))
    shutil.copy(tiny_parity_dir / CONFIG_NAME, tmp_path / CONFIG_NAME)
    with pytest.raises(CheckpointError, match=r"decoder.conv_out.bias: checkpoint \(7,\) vs model \(24,\)"):
        load_wfvae(tmp_path)


def test_checking_a_checkpoint_refuses_what_loading_refuses_without_loading(
    tiny_parity_dir: Path, tiny_vae: WFVAE, tmp_path: Path
) -> None:
    assert check_checkpoint(tiny_parity_dir) == tiny_vae.config
    weights = load_file(str(tiny_parity_dir / WEIGHTS_NAME))
    shutil.copy(tiny_parity_dir / CONFIG_NAME, tmp_path / CONFIG_NAME)
    for name, change in [("missing", None), ("wrong shape", torch.zeros(7))]:
        broken = dict(weights)
        if change is None:
            del broken["decoder.conv_out.bias"]
        else:
            broken["decoder.conv_out.bias"] = change
        save_file(broken, str(tmp_path / WEIGHTS_NAME))
        with pytest.raises(CheckpointError) as loading:
            load_wfvae(tmp_path)
        with pytest.raises(CheckpointError) as checking:
            check_checkpoint(tmp_path)
        assert str(checking.value) == str(loading.value) and "decoder.conv_out.bias" in str(loading.value), name
    ckpt = tmp_path / "model.ckpt"  # a training checkpoint: read whole, checked the same way
    torch.save({"state_dict": weights}, ckpt)
    assert check_checkpoint(ckpt) == tiny_vae.config


def test_bad_sources_fail_clearly(tmp_path: Path, tiny_parity_dir: Path) -> None:
    with pytest.raises(CheckpointError, match="no model at"):
        load_wfvae(tmp_path / "nowhere")
    (tmp_path / "garbage.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="cannot read safetensors"):
        read_state_dict(tmp_path / "garbage.safetensors")
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    shutil.copy(tiny_parity_dir / WEIGHTS_NAME, lonely / WEIGHTS_NAME)
    with pytest.raises(ConfigError, match="no config.json beside"):
        load_wfvae(lonely)


def test_hub_id_without_network_fails_with_advice(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(CheckpointError, match="cannot fetch chestnutlzj/WF-VAE-L-16Chn from the Hugging Face hub"):
        load_wfvae("chestnutlzj/WF-VAE-L-16Chn")


def test_dtype_and_device_options(tiny_parity_dir: Path) -> None:
    vae = load_wfvae(tiny_parity_dir, dtype=torch.bfloat16, device="cpu", force_dtype=True)
    assert {p.dtype for p in vae.parameters()} == {torch.bfloat16}
    assert not any(p.requires_grad for p in vae.parameters())
    assert not vae.training
