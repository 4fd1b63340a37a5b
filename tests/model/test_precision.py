"""`auto` picks bf16 only where the CPU runs it fast; bf16/fp16 elsewhere are refused, saying why."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model import ConfigError, SlowPrecisionError, choose_dtype, cpu_capability, load_wfvae
from model.precision import CpuCapability, parse_dtype

REPO_ROOT = Path(__file__).resolve().parents[2]
SAPPHIRE_RAPIDS = {"avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8"}
GRANITE_RAPIDS = SAPPHIRE_RAPIDS | {"amx_fp16"}
AVX2_ONLY = {"avx2", "fma"}
ICE_LAKE = {"avx512f", "avx512_vnni"}
ZEN4 = {"avx512f", "avx512_bf16"}  # bf16 dot products, but no AMX tiles


@pytest.mark.parametrize(
    ("flags", "env", "amx_bf16", "amx_fp16"),
    [
        (SAPPHIRE_RAPIDS, {}, True, False),
        (GRANITE_RAPIDS, {}, True, True),
        (AVX2_ONLY, {}, False, False),
        (ICE_LAKE, {}, False, False),
        (ZEN4, {}, False, False),
        ({"amx_bf16"}, {}, False, False),  # no tiles enabled: no AMX at all
        (SAPPHIRE_RAPIDS, {"ONEDNN_MAX_CPU_ISA": "AVX2"}, False, False),
        (SAPPHIRE_RAPIDS, {"ONEDNN_MAX_CPU_ISA": "avx512_core_bf16"}, False, False),
        (SAPPHIRE_RAPIDS, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}, True, False),
        (SAPPHIRE_RAPIDS, {"ONEDNN_MAX_CPU_ISA": "ALL"}, True, False),
        (GRANITE_RAPIDS, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}, True, False),
        (GRANITE_RAPIDS, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX_FP16"}, True, True),
        (SAPPHIRE_RAPIDS, {"DNNL_MAX_CPU_ISA": "AVX512_CORE"}, False, False),  # oneDNN's old name
        (SAPPHIRE_RAPIDS, {"ONEDNN_MAX_CPU_ISA": "SOMETHING_NEW"}, False, False),  # unknown: no AMX
    ],
)
def test_capability_follows_flags_and_the_onednn_isa_limit(flags, env, amx_bf16: bool, amx_fp16: bool) -> None:
    capability = cpu_capability(flags, env)
    assert (capability.amx_bf16, capability.amx_fp16) == (amx_bf16, amx_fp16)
    assert capability.fast(torch.bfloat16) == amx_bf16 and capability.fast(torch.float32)


def test_this_cpu_is_read_with_the_process_isa_limit() -> None:
    detected = cpu_capability()
    assert detected.isa_limit == (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA"))
    if os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() == "AVX2":
        assert not detected.amx_bf16


def test_auto_is_bf16_on_amx_and_fp32_elsewhere(caplog) -> None:
    with caplog.at_level(logging.INFO, logger="model.precision"):
        fast = choose_dtype("auto", "cpu", capability=cpu_capability(SAPPHIRE_RAPIDS, {}))
        slow = choose_dtype(None, "cpu", capability=cpu_capability(SAPPHIRE_RAPIDS, {"ONEDNN_MAX_CPU_ISA": "AVX2"}))
    assert (fast.dtype, fast.name) == (torch.bfloat16, "bfloat16") and "with AMX-BF16" in fast.reason
    assert slow.dtype == torch.float32 and "without usable AMX-BF16" in slow.reason
    assert "ONEDNN_MAX_CPU_ISA=AVX2" in slow.reason
    assert [r.getMessage() for r in caplog.records] == [
        f"compute dtype bfloat16: {fast.reason}", f"compute dtype float32: {slow.reason}"]


@pytest.mark.parametrize("requested", ["bfloat16", "bf16", torch.bfloat16, "float16", "fp16"])
def test_half_precision_without_its_amx_unit_is_refused_unless_forced(requested) -> None:
    avx2 = cpu_capability(AVX2_ONLY, {})
    with pytest.raises(SlowPrecisionError, match="far slower than float32") as refused:
        choose_dtype(requested, "cpu", capability=avx2)
    message = str(refused.value)
    assert "Use dtype 'float32'" in message and "force_dtype=True" in message and "--force-dtype" in message
    forced = choose_dtype(requested, "cpu", force=True, capability=avx2)
    assert forced.dtype in (torch.bfloat16, torch.float16) and "forced" in forced.reason


def test_fp16_needs_amx_fp16_even_where_bf16_is_fast() -> None:
    sapphire = cpu_capability(SAPPHIRE_RAPIDS, {})
    assert choose_dtype("bf16", "cpu", capability=sapphire).dtype == torch.bfloat16
    with pytest.raises(SlowPrecisionError, match="AMX-FP16"):
        choose_dtype("fp16", "cpu", capability=sapphire)
    assert choose_dtype("fp16", "cpu", capability=cpu_capability(GRANITE_RAPIDS, {})).dtype == torch.float16


def test_float32_is_always_allowed_and_unknown_names_are_config_errors() -> None:
    none = CpuCapability(amx_bf16=False, amx_fp16=False, cpu_flags="", isa_limit=None)
    assert choose_dtype("fp32", "cpu", capability=none).dtype == torch.float32
    with pytest.raises(ConfigError, match="unknown dtype 'float64'"):
        choose_dtype("float64", "cpu", capability=none)


def test_cli_refuses_bf16_when_onednn_is_held_below_amx(tmp_path: Path) -> None:
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    result = subprocess.run(
        [sys.executable, "-m", "model", "--dtype", "bf16", "decode", str(tmp_path / "none.safetensors"),
         str(tmp_path / "out.mp4")],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "bfloat16 on this CPU would be far slower than float32" in result.stderr
    assert "ONEDNN_MAX_CPU_ISA=AVX2" in result.stderr and "--force-dtype" in result.stderr


@pytest.mark.parametrize("requested", ["bf16", torch.bfloat16, "float16", torch.float16])
def test_loading_refuses_a_slow_precision_however_it_is_spelled(
    tiny_parity_dir: Path, monkeypatch: pytest.MonkeyPatch, requested: str | torch.dtype
) -> None:
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # oneDNN held below AMX, on any CPU
    with pytest.raises(SlowPrecisionError, match="far slower than float32"):
        load_wfvae(tiny_parity_dir, dtype=requested, device="cpu")
    forced = load_wfvae(tiny_parity_dir, dtype=requested, device="cpu", force_dtype=True)
    assert {p.dtype for p in forced.parameters()} == {parse_dtype(requested)}
    assert {p.dtype for p in load_wfvae(tiny_parity_dir, dtype=torch.float32).parameters()} == {torch.float32}
