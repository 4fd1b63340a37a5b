"""The CPU fast path's policy: one object, resolved once per call, in force only within the call."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from tolerances import assert_reordered
from torch import nn

from model import WFVAE, FastPath
from model.fast_path import REFERENCE, Plan, SlabSettings, WinogradSettings, active, engaged
from model.fast_path.winograd import pays_on_this_cpu

MODEL_DIR = Path(__file__).resolve().parents[2] / "model"


def test_cpu_float32_inference_gets_every_part_that_pays(tiny_vae: WFVAE) -> None:
    x = torch.zeros(1, 3, 5, 16, 16)
    with torch.inference_mode():
        plan = FastPath().plan_for(tiny_vae, x)
    assert plan.slabs == SlabSettings() and plan.fused_norm and not plan.channels_last
    assert (plan.winograd is not None) == pays_on_this_cpu()


def test_everything_off_outside_cpu_inference(tiny_vae: WFVAE) -> None:
    x = torch.zeros(1, 3, 5, 16, 16)
    policy = FastPath(winograd=True, channels_last=True)
    with torch.inference_mode():
        assert FastPath(enabled=False).plan_for(tiny_vae, x) == REFERENCE
        assert policy.plan_for(tiny_vae, x.to("meta")) == REFERENCE  # other devices: as measured there
        assert FastPath(slabs=None).plan_for(tiny_vae, x).slabs is None
        bf16 = policy.plan_for(tiny_vae, x.bfloat16())
        assert bf16.channels_last and not bf16.fused_norm and bf16.winograd is None
    assert policy.plan_for(tiny_vae, x.clone().requires_grad_(True)) == REFERENCE  # autograd
    tiny_vae.train()
    try:
        with torch.no_grad():  # dropout draws per call: no slabs in training mode
            assert policy.plan_for(tiny_vae, x).slabs is None
    finally:
        tiny_vae.eval()


def test_settings_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="max_slabs must be at least 1"):
        SlabSettings(max_slabs=0)
    with pytest.raises(ValueError, match="slab sizes must be 0 or more"):
        SlabSettings(slab_bytes=-1)
    with pytest.raises(ValueError, match="block sizes must be at least 1 byte"):
        WinogradSettings(kernel_block_bytes=0)
    with pytest.raises(ValueError, match="thresholds must be 0 or more"):
        WinogradSettings(min_channels=-1)


def test_a_plan_is_in_force_only_within_its_block() -> None:
    assert active() == REFERENCE
    inner = Plan(fused_norm=True)
    with engaged(Plan(slabs=SlabSettings())) as outer:
        assert active() is outer
        with engaged(inner):
            assert active() is inner
        assert active() is outer
        with pytest.raises(RuntimeError), engaged(inner):
            raise RuntimeError
        assert active() is outer
    assert active() == REFERENCE


def _recording_plans(vae: WFVAE) -> list[Plan]:
    seen: list[Plan] = []

    def record(module: nn.Module, args: tuple[object, ...]) -> None:
        seen.append(active())

    vae.encoder.register_forward_pre_hook(record)
    vae.decoder.register_forward_pre_hook(record)
    return seen


def test_every_entry_point_runs_under_the_models_plan(tiny_parity_dir: Path, parity_cases) -> None:
    from model import load_wfvae

    vae = load_wfvae(tiny_parity_dir)
    seen = _recording_plans(vae)
    x = parity_cases["case0.input"]
    with torch.inference_mode():
        expected = FastPath().plan_for(vae, x)
        z = vae.encode(x).mean
        vae.decode(z)
        vae.encode(x, chunk_frames=4)
        vae.decode(z, chunk_latents=1)
        stream = vae.decode_stream()
        stream.push(z)
        stream.flush()
        assert len(seen) >= 8 and all(plan == expected for plan in seen)
        seen.clear()
        vae.fast_path = FastPath(enabled=False)
        vae.encode(x)
    assert seen == [REFERENCE]
    assert active() == REFERENCE  # nothing leaks out of a call


def test_the_plain_computation_and_the_fast_path_agree(tiny_vae: WFVAE, parity_cases, monkeypatch) -> None:
    # Every part forced on, slabs of one frame: the same model to float32 reordering.
    x = parity_cases["case1.input"]
    one_frame = SlabSettings(slab_bytes=0, residual_slab_bytes=0, min_slab_frames=1, max_slabs=1 << 30)
    with torch.inference_mode():
        monkeypatch.setattr(tiny_vae, "fast_path", FastPath(enabled=False))
        plain = tiny_vae.encode(x).mean
        plain_video = tiny_vae.decode(plain)
        monkeypatch.setattr(tiny_vae, "fast_path", FastPath(winograd=True, slabs=one_frame))
        fast = tiny_vae.encode(x).mean
        fast_video = tiny_vae.decode(plain)
    assert_reordered(fast, plain)
    assert_reordered(fast_video, plain_video)


@pytest.mark.parametrize("module", ["encoder.py", "decoder.py"])
def test_the_forward_pass_holds_no_speed_or_memory_policy(module: str) -> None:
    # The paper's page asks nothing of devices, dtypes or autograd, and imports no fast-path part.
    tree = ast.parse((MODEL_DIR / module).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not any("fast_path" in (name or "") for name in imported), imported
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert not attributes & {"device", "is_cuda", "dtype", "requires_grad", "training", "element_size"}
