"""Which compute dtype pays on this machine: the CPU's matrix units, and the `auto` choice.

On CPUs, oneDNN runs bf16 convolutions on AMX tiles (Intel Xeon 4th generation and later) at
several times the float32 rate; without AMX it falls back to kernels that run bf16 and fp16 far
slower than float32 (a 384-channel 3x3x3 convolution held to AVX2 by `ONEDNN_MAX_CPU_ISA` had
not finished after 90 s, against 0.8 s in float32). AVX512-FP16 alone (no AMX-FP16) ran fp16 no
faster than float32 here (314 vs 264 ms, 384 channels at 5x32x32), so fp16 counts as fast only
with AMX-FP16. So:

- `auto` is bfloat16 on CUDA (float16 where the GPU lacks native bf16), bfloat16 on a CPU whose
  AMX oneDNN may use, float32 on any other CPU;
- bfloat16 or float16 asked for by name on a CPU without the matching AMX unit, or bfloat16 on a
  GPU without native bf16, is refused (`SlowPrecisionError`, saying why and what to use) unless
  forced.

`cpu_capability` is the one place that reads the CPU: tests pass it flags and an environment.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

from .errors import ConfigError, SlowPrecisionError

__all__ = [
    "DTYPE_NAMES",
    "CpuCapability",
    "DtypeChoice",
    "choose_dtype",
    "cpu_capability",
    "parse_dtype",
]

log = logging.getLogger(__name__)

DTYPE_NAMES: dict[str, torch.dtype] = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16,
}
# `ONEDNN_MAX_CPU_ISA` (or its old name `DNNL_MAX_CPU_ISA`) values under which oneDNN may still
# use AMX (bf16 tiles) and AMX-FP16; unset, `ALL` and `DEFAULT` put no limit. Any other value
# (AVX2, AVX512_CORE_BF16, ...) holds oneDNN below AMX, and an unknown one counts as such too.
ISA_ENV_VARS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
_NO_LIMIT = {"", "ALL", "DEFAULT"}
_AMX_FP16_ISAS = {"AVX512_CORE_AMX_FP16", "AVX10_1_512_AMX_FP16", "AVX10_2_512_AMX_2"}
_AMX_ISAS = {"AVX512_CORE_AMX", "AVX10_1_512_AMX"} | _AMX_FP16_ISAS


@dataclass(frozen=True)
class CpuCapability:
    """What this CPU's oneDNN can run fast: AMX-BF16 and AMX-FP16, each as the ISA limit allows,
    and AVX-512 (float32 convolutions at twice the AVX2 rate: `model.fast_path.winograd` then stands aside)."""

    amx_bf16: bool
    amx_fp16: bool
    cpu_flags: str  # the relevant flags the CPU reports, for messages
    isa_limit: str | None  # ONEDNN_MAX_CPU_ISA as set, None when unset
    avx512: bool = False

    def fast(self, dtype: torch.dtype) -> bool:
        """Whether convolutions in `dtype` run at least as fast as in float32 on this CPU."""
        if dtype == torch.bfloat16:
            return self.amx_bf16
        if dtype == torch.float16:
            return self.amx_fp16
        return True

    def describe(self) -> str:
        limit = f", ONEDNN_MAX_CPU_ISA={self.isa_limit}" if self.isa_limit else ""
        return f"CPU flags [{self.cpu_flags or 'no AMX'}]{limit}"


def cpu_capability(flags: Iterable[str] | None = None, environ: Mapping[str, str] | None = None) -> CpuCapability:
    """The CPU's fast low-precision units, as oneDNN may use them.

    `flags`: the CPU's feature flags as Linux names them (`amx_tile`, `amx_bf16`, `amx_fp16`);
    default: what PyTorch's cpuinfo reports for this CPU (which also checks that the OS enabled
    the tiles). `environ`: where to read `ONEDNN_MAX_CPU_ISA`; default `os.environ`.
    """
    have = set(_detected_flags() if flags is None else flags)
    env = os.environ if environ is None else environ
    limit = next((env[name] for name in ISA_ENV_VARS if env.get(name) is not None), None)
    level = (limit or "").strip().upper()
    allows_amx = level in _NO_LIMIT or level in _AMX_ISAS
    allows_amx_fp16 = level in _NO_LIMIT or level in _AMX_FP16_ISAS
    allows_avx512 = level in _NO_LIMIT or level.startswith(("AVX512", "AVX10"))
    tiles = "amx_tile" in have
    return CpuCapability(
        amx_bf16=tiles and "amx_bf16" in have and allows_amx,
        amx_fp16=tiles and "amx_fp16" in have and allows_amx_fp16,
        cpu_flags=" ".join(sorted(f for f in have if f.startswith("amx"))),
        isa_limit=limit,
        avx512="avx512f" in have and allows_avx512,
    )


def _detected_flags() -> set[str]:
    """This CPU's AMX and AVX-512 flags, from PyTorch's cpuinfo (any OS; False where the OS keeps tiles off)."""
    probes = {"amx_tile": "_is_amx_tile_supported", "amx_fp16": "_is_amx_fp16_supported",
              "avx512f": "_is_avx512_supported"}
    found = {flag for flag, probe in probes.items() if getattr(torch.cpu, probe, lambda: False)()}
    if "amx_tile" in found:
        found.add("amx_bf16")  # every CPU with AMX tiles so far has AMX-BF16 (Sapphire Rapids on)
    return found


@dataclass(frozen=True)
class DtypeChoice:
    """A compute dtype and why it was chosen (logged, and written into output metadata)."""

    dtype: torch.dtype
    reason: str

    @property
    def name(self) -> str:
        return str(self.dtype).removeprefix("torch.")


def parse_dtype(name: str | torch.dtype) -> torch.dtype:
    """`float32`/`fp32`, `bfloat16`/`bf16`, `float16`/`fp16` (or a torch dtype) as a torch dtype."""
    if isinstance(name, torch.dtype):
        return name
    try:
        return DTYPE_NAMES[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown dtype {name!r}; use auto or one of {', '.join(DTYPE_NAMES)}") from None


def choose_dtype(requested: str | torch.dtype | None, device: str | torch.device, *, force: bool = False,
                 capability: CpuCapability | None = None) -> DtypeChoice:
    """The compute dtype for `requested` (`auto`/None, a name or a torch dtype) on `device`.

    On a CPU, bfloat16 or float16 without the AMX unit that runs it fast raises
    `SlowPrecisionError` unless `force`. `capability`: this CPU's, detected when not given.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return _cuda_choice(requested, force)
    if device.type != "cpu":
        if requested is None or requested == "auto":
            return _chosen(torch.float32, f"auto on {device.type}: float32")
        return _chosen(parse_dtype(requested), "asked for")
    cpu = cpu_capability() if capability is None else capability
    if requested is None or requested == "auto":
        if cpu.fast(torch.bfloat16):
            return _chosen(torch.bfloat16, f"auto on a CPU with AMX-BF16 ({cpu.describe()})")
        return _chosen(torch.float32, f"auto on a CPU without usable AMX-BF16 ({cpu.describe()})")
    dtype = parse_dtype(requested)
    if cpu.fast(dtype):
        return _chosen(dtype, f"asked for ({cpu.describe()})")
    unit = "AMX-BF16" if dtype == torch.bfloat16 else "AMX-FP16"
    if force:
        return _chosen(dtype, f"asked for and forced on a CPU without usable {unit} ({cpu.describe()})")
    raise SlowPrecisionError(
        f"{_name(dtype)} on this CPU would be far slower than float32: oneDNN runs it fast only on "
        f"{unit} tiles, which this CPU lacks or may not use ({cpu.describe()}). Use dtype 'float32' "
        "(or 'auto', which picks it here), or force the dtype (force_dtype=True, --force-dtype)"
    )


def _cuda_choice(requested: str | torch.dtype | None, force: bool) -> DtypeChoice:
    """bfloat16 where the GPU computes it natively (Ampere and later), else float16; bfloat16
    asked for on an older GPU is refused unless forced (emulated, where it runs at all)."""
    native_bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    if requested is None or requested == "auto":
        if native_bf16:
            return _chosen(torch.bfloat16, "auto on CUDA: bfloat16")
        return _chosen(torch.float16, "auto on CUDA: float16 (this GPU lacks bfloat16)")
    dtype = parse_dtype(requested)
    if dtype != torch.bfloat16 or native_bf16:
        return _chosen(dtype, "asked for")
    if force:
        return _chosen(dtype, "asked for and forced on a GPU without native bfloat16")
    raise SlowPrecisionError(
        f"bfloat16 on this GPU ({torch.cuda.get_device_name()}) is not native (compute capability "
        "below 8.0): use dtype 'float16' or 'float32' (or 'auto', which picks float16 here), or "
        "force the dtype (force_dtype=True, --force-dtype)"
    )


def _chosen(dtype: torch.dtype, reason: str) -> DtypeChoice:
    choice = DtypeChoice(dtype, reason)
    log.info("compute dtype %s: %s", choice.name, reason)
    return choice


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
