"""Loading and saving WF-VAE weights in the official layouts, strictly and without unpickling code.

Sources `load_wfvae` accepts:
- a directory in the Hugging Face layout: `config.json` + `diffusion_pytorch_model.safetensors`;
- a `.safetensors` file, with `config.json` beside it or a config given;
- an official training checkpoint `.ckpt`/`.pt` (weights under `ema_state_dict`, `state_dict`
  or `state_dict.gen_model`, possibly with `module.` prefixes), read with `weights_only=True`;
- a Hugging Face hub id (`owner/name`), fetched with `huggingface_hub` where a network allows.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from .config import WFVAEConfig
from .errors import CheckpointError, ConfigError
from .precision import choose_dtype
from .wfvae import WFVAE

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "check_checkpoint",
    "default_model_dir",
    "load_wfvae",
    "read_state_dict",
    "save_wfvae",
]

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
TRAINING_CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
# The bundled default: a small WF-VAE trained here on the CPU (16 latent channels, 9.6 MB);
# recipe in model/training/config.py (tiny_cpu_config), figures in benchmarks/README.md.
DEFAULT_MODEL_NAME = "wfvae-tiny-16chn"


def default_model_dir() -> Path:
    """The small trained model shipped inside the package: the default of the demo, tests and service.

    16 latent channels; 25.4 dB PSNR / 0.65 SSIM on held-out bigbuckbunny (benchmarks/README.md).
    """
    return Path(__file__).resolve().parent / "assets" / DEFAULT_MODEL_NAME


def load_wfvae(
    source: str | Path,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    config: WFVAEConfig | None = None,
    force_dtype: bool = False,
) -> WFVAE:
    """Builds WF-VAE from `source` with strict key matching; returns it in eval mode.

    `dtype`: None keeps the stored float32; a name (`auto`, `bfloat16`/`bf16`, ...) or a torch
    dtype goes through `model.precision.choose_dtype`, one rule however it is spelled: `auto`
    picks what pays on `device`, and bf16/fp16 on a CPU without fast kernels for it are refused
    (`SlowPrecisionError`) unless `force_dtype`.
    """
    if dtype is not None:
        dtype = choose_dtype(dtype, device or "cpu", force=force_dtype).dtype
    weights_path, config = _resolve(source, config)
    state = read_state_dict(weights_path)
    vae = WFVAE(config)
    _check_entries(weights_path, _shapes(state), _shapes(vae.state_dict()))
    vae.load_state_dict(state, strict=True)
    vae.eval()
    vae.requires_grad_(False)
    if dtype is not None or device is not None:
        vae.to(device=device, dtype=dtype)
    return vae


def check_checkpoint(source: str | Path, config: WFVAEConfig | None = None) -> WFVAEConfig:
    """The config of the model at `source`, its weights' names and shapes checked against it as
    `load_wfvae` checks them, without building the model or reading a safetensors file's tensors
    (its header lists them; a training checkpoint is read whole)."""
    weights_path, config = _resolve(source, config)
    with torch.device("meta"):  # parameters without storage: only the names and shapes
        expected = _shapes(WFVAE(config).state_dict())
    _check_entries(weights_path, _stored_shapes(weights_path), expected)
    return config


def _shapes(state: Mapping[str, Tensor]) -> dict[str, tuple[int, ...]]:
    return {key: tuple(tensor.shape) for key, tensor in state.items()}


def _stored_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Each stored tensor's shape, from a safetensors header where the file is one."""
    if path.suffix != ".safetensors" or not path.is_file():
        return _shapes(read_state_dict(path))
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except Exception as err:  # safetensors raises its own error types
        raise CheckpointError(f"cannot read safetensors file {path}: {err}") from err


def _check_entries(
    path: Path, found: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]]
) -> None:
    """Refuses missing or unexpected keys, then tensors of the wrong shape (strict loading)."""
    missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing or unexpected:
        raise CheckpointError.key_mismatch(str(path), missing, unexpected)
    wrong_shape = [
        f"{key}: checkpoint {found[key]} vs model {shape}"
        for key, shape in expected.items()
        if found[key] != shape
    ]
    if wrong_shape:
        raise CheckpointError(f"checkpoint {path} has tensors of the wrong shape: " + "; ".join(wrong_shape[:10]))


def save_wfvae(vae: WFVAE, directory: str | Path) -> Path:
    """Writes the Hugging Face layout with the official key names; returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_NAME).write_text(vae.config.to_json())
    state = {key: tensor.detach().contiguous().cpu() for key, tensor in vae.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
    return directory


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """A flat state dict from a safetensors file or an official training checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except Exception as err:  # safetensors raises its own error types
            raise CheckpointError(f"cannot read safetensors file {path}: {err}") from err
    if path.suffix in TRAINING_CHECKPOINT_SUFFIXES:
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # pickle and zip errors of many kinds
            raise CheckpointError(f"cannot read checkpoint {path} (weights only): {err}") from err
        return _unwrap_training_checkpoint(raw, path)
    raise CheckpointError(f"unknown weights format {path.suffix!r} for {path}; expected .safetensors or .ckpt")


def _unwrap_training_checkpoint(raw: object, path: Path) -> dict[str, Tensor]:
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"checkpoint {path} does not hold a dict")
    ema = raw.get("ema_state_dict")
    if isinstance(ema, Mapping) and len(ema) > 0:
        state = ema
    elif isinstance(raw.get("state_dict"), Mapping):
        state = raw["state_dict"]
        if isinstance(state.get("gen_model"), Mapping):
            state = state["gen_model"]
    else:
        state = raw
    flat = {}
    for key, value in state.items():
        if not isinstance(value, Tensor):
            raise CheckpointError(f"checkpoint {path}: entry {key!r} is not a tensor")
        flat[key.removeprefix("module.")] = value
    return flat


def _resolve(source: str | Path, config: WFVAEConfig | None) -> tuple[Path, WFVAEConfig]:
    path = Path(source)
    if path.is_dir():
        weights = path / WEIGHTS_NAME
        if not weights.is_file():
            candidates = sorted(path.glob("*.safetensors"))
            if len(candidates) != 1:
                raise CheckpointError(f"{path} holds no {WEIGHTS_NAME} (found {[c.name for c in candidates]})")
            weights = candidates[0]
        return weights, config or WFVAEConfig.from_file(_config_beside(weights))
    if path.is_file():
        return path, config or WFVAEConfig.from_file(_config_beside(path))
    if isinstance(source, str) and source.count("/") == 1 and not source.startswith((".", "/")):
        return _from_hub(source, config)
    raise CheckpointError(f"no model at {source}: not a directory, a weights file, or a hub id")


def _config_beside(weights: Path) -> Path:
    config_path = weights.parent / CONFIG_NAME
    if not config_path.is_file():
        raise ConfigError(f"no {CONFIG_NAME} beside {weights}; pass config=WFVAEConfig(...)")
    return config_path


def _from_hub(repo_id: str, config: WFVAEConfig | None) -> tuple[Path, WFVAEConfig]:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as err:
        raise CheckpointError(f"loading {repo_id} from the hub needs `pip install huggingface_hub`") from err
    try:
        local = snapshot_download(repo_id, allow_patterns=[CONFIG_NAME, "*.safetensors"])
    except Exception as err:  # offline, unknown repo, auth: the hub raises many kinds
        raise CheckpointError(
            f"cannot fetch {repo_id} from the Hugging Face hub ({type(err).__name__}: {err}); "
            "download it where a network allows and pass the local directory"
        ) from err
    log.info("fetched %s to %s", repo_id, local)
    return _resolve(Path(local), config)
