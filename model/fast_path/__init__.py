"""The CPU fast path: the paper's forward pass, faster and leaner on CPUs, with the same result to rounding.

The encoder and decoder (`model/encoder.py`, `model/decoder.py`) compute WF-VAE as the paper
describes it. In CPU inference, the parts here change how, never what:

- `winograd`: 3x3 convolutions in a transform domain, 4x fewer multiplies (float32, where
  oneDNN is held to AVX2);
- `frame_slabs`, `causal_slabs`: per-frame stacks and causal residual blocks run a slab of
  frames at a time, so their activations exist a slab at a time (Causal Cache makes a causal
  block's slabs exact);
- `fused_norm`: LayerNorm and SiLU written channels-first straight into a causal window (float32);
- `channels_last`: bf16 activations channels-last end to end, as oneDNN's AMX kernels want them.

`FastPath` (`policy`) is the one object that says when each applies: set it on a model
(`vae.fast_path = FastPath(winograd=False)`); `FastPath.plan_for` resolves it once per call into
a `Plan`, which the model's entry points put in force (`engaged`) for the layers to read
(`active`). Outside an engaged call the plan is `REFERENCE`: everything off.
"""

from .policy import REFERENCE, FastPath, Plan, SlabSettings, active, engaged, winograd_for
from .winograd import WinogradSettings

__all__ = [
    "REFERENCE",
    "FastPath",
    "Plan",
    "SlabSettings",
    "WinogradSettings",
    "active",
    "engaged",
    "winograd_for",
]
