"""Float32 tolerances shared by the test packages, each derived from float32's precision and the
scale of the data, never from another library's error on the machine at hand.

CPUs of one kind differ (AVX-512 and AMX, or AVX2 only), and oneDNN picks other kernels, block
sizes and summation orders on each, and for each thread count. Two float32 evaluations of the
same function therefore agree only to rounding, and a bound must hold for any order of the sums.

Importable from every test package (pytest puts `tests/` on sys.path for its conftest.py).
"""

from __future__ import annotations

import numpy as np
import torch

from model.fast_path import winograd

__all__ = [
    "FLOAT32_EPS",
    "REORDERED_ULPS",
    "WINOGRAD_FLOAT32_REL",
    "assert_reordered",
    "reordered_float32",
    "winograd_float32",
]

FLOAT32_EPS = torch.finfo(torch.float32).eps  # 2**-23: one unit in the last place at 1.0
# Two float32 evaluations of one network that differ only in the order of their sums (batch
# size, chunk plan, slabs of frames, thread count, kernel choice). Each convolution rounds its
# sums of K <= 27 x 256 products to about sqrt(K) <= 83 ulps of its output scale in the worst
# order, and normalisation keeps every layer's scale near the output's; the layers' errors add
# like independent noise. 512 ulps (6.1e-5 of the output's scale) covers that with margin and is
# still three orders of magnitude below what a real difference (a wrong frame, tap or cache
# entry) moves the output by: a sizeable fraction of its scale.
REORDERED_ULPS = 512


def reordered_float32(reference: torch.Tensor | np.ndarray | float, scale_floor: float = 1.0) -> float:
    """Largest |difference| allowed between two float32 evaluations of one computation whose
    outputs are `reference` (or whose output scale is that number): REORDERED_ULPS of the scale.

    The scale is at least `scale_floor`: 1 for activations, latents and video, since these
    networks normalise their intermediate activations to order 1 whatever the output's size;
    0 for quantities such as gradients whose every intermediate shrinks with them.
    """
    if isinstance(reference, torch.Tensor):
        scale = float(reference.detach().abs().max())
    else:
        scale = float(np.abs(np.asarray(reference, dtype=np.float64)).max())
    return REORDERED_ULPS * FLOAT32_EPS * max(scale_floor, scale)


def assert_reordered(got: torch.Tensor, expected: torch.Tensor, context: object = "", scale_floor: float = 1.0) -> None:
    """`got` equals `expected` up to the rounding of a different order of float32 sums."""
    difference = float((got.detach().float() - expected.detach().float()).abs().max())
    bound = reordered_float32(expected, scale_floor)
    assert difference <= bound, f"max |difference| {difference:.3g} over {bound:.3g} {context}".rstrip()


def _winograd_amplification() -> float:
    """How much F(4x4, 3x3)'s transforms can enlarge a rounding error, relative to the output.

    Per side, an output's path through the three transforms weighs the transform-domain points
    by sum_p |A^T[i, p]| * sum_h |G[p, h]| * sum_s |B^T[p, s]|: 48 at a tile's last row (the
    constants 8 and 5 of the points +-2 and infinity); a 2D tile squares it: 2304.
    """
    per_point = winograd._KERNEL.abs().sum(1) * winograd._INPUT.abs().sum(1)  # (6,)
    return float((winograd._OUTPUT.abs() @ per_point).max()) ** 2


# Float32 Winograd against the exact (float64) convolution: float32's unit roundoff (eps / 2)
# times the transforms' amplification, of the output's scale: 1.4e-4 of it. Random-sign
# rounding keeps the error well under that (8e-6 of max|y| for 256 channels); a wrong tap, point
# or tile moves outputs by a sizeable fraction of max|y|.
WINOGRAD_FLOAT32_REL = FLOAT32_EPS / 2 * _winograd_amplification()


def winograd_float32(reference: torch.Tensor) -> float:
    """Largest |difference| allowed between a float32 Winograd convolution and the exact one."""
    return WINOGRAD_FLOAT32_REL * max(1.0, float(reference.abs().max()))
