"""LPIPS (Zhang et al. 2018) on a hand-written VGG16: the perceptual term of WF-VAE's loss and a metric.

Weights are never downloaded at run time. `LPIPS.from_weights(source)` takes a local directory
or file(s) holding the VGG16 feature weights (torchvision's `features.N.*` keys, e.g.
`vgg16-397923af.pth`) and the LPIPS heads (`linK.model.1.weight`, the `vgg.pth` of the lpips
package), or a Hugging Face hub id where a network allows; without them it raises
`PerceptualWeightsMissing`, and the trainer switches the perceptual term off and says so.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from ..errors import CheckpointError

__all__ = ["LPIPS", "PerceptualWeightsMissing", "VGG16Features", "VGG_TAPS"]

log = logging.getLogger(__name__)

# VGG16's 13 convolutions as torchvision numbers them in `features`; "M" is a 2x2 max-pool.
VGG16_LAYOUT: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
# LPIPS reads relu1_2, relu2_2, relu3_3, relu4_3, relu5_3: the outputs of these `features` indices.
VGG_TAPS = (3, 8, 15, 22, 29)
TAP_CHANNELS = (64, 128, 256, 512, 512)
# The lpips package's ScalingLayer: inputs in [-1, 1] are shifted and scaled to ImageNet statistics.
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
NORM_EPS = 1e-10


class PerceptualWeightsMissing(CheckpointError):
    """No pretrained VGG16 / LPIPS weights were given or could be found."""


class VGG16Features(nn.Module):
    """torchvision's `vgg16().features`, same indices and key names; returns the five LPIPS taps."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in VGG16_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, int(item), kernel_size=3, padding=1), nn.ReLU(inplace=False)]
                channels = int(item)
        self.features = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> list[Tensor]:  # (N, 3, H, W)
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in VGG_TAPS:
                taps.append(x)
        return taps


class _LinearHead(nn.Module):
    """The lpips package's NetLinLayer: dropout then a 1x1 convolution without bias (`model.1`)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class LPIPS(nn.Module):
    """d(x, y) = sum over taps of the spatial mean of w . (unit-normalised feature difference)^2."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        self.net = VGG16Features()
        for k, channels in enumerate(TAP_CHANNELS):
            self.add_module(f"lin{k}", _LinearHead(channels))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """x, y: (N, 3, H, W) in [-1, 1] -> (N, 1, 1, 1) distances."""
        feats_x = self.net((x - self.shift) / self.scale)
        feats_y = self.net((y - self.shift) / self.scale)
        total = x.new_zeros(x.shape[0], 1, 1, 1)
        for k, (fx, fy) in enumerate(zip(feats_x, feats_y, strict=True)):
            diff = (_unit(fx) - _unit(fy)).pow(2)  # (N, C_k, h, w)
            total = total + getattr(self, f"lin{k}")(diff).mean(dim=(2, 3), keepdim=True)
        return total

    @classmethod
    def from_weights(cls, source: str | Path | None) -> LPIPS:
        """Builds LPIPS from local weights (a directory, or one merged file) or a hub id."""
        if source is None:
            raise PerceptualWeightsMissing(
                "no LPIPS weights given (lpips_weights); pass a directory holding torchvision's "
                "vgg16 weights and the lpips package's vgg.pth"
            )
        files = _weight_files(source)
        state: dict[str, Tensor] = {}
        for path in files:
            state |= _read(path)
        model = cls()
        wanted = {f"net.{k}": v for k, v in state.items() if k.startswith("features.")}
        wanted |= {k: v for k, v in state.items() if k.startswith("lin")}
        wanted |= {k: v for k, v in state.items() if k.startswith("net.features.")}
        expected = set(model.state_dict())
        missing = sorted(expected - set(wanted))
        if missing:
            raise PerceptualWeightsMissing(f"LPIPS weights in {source} lack {len(missing)} tensors, e.g. {missing[:4]}")
        model.load_state_dict({k: wanted[k] for k in expected}, strict=True)
        log.info("LPIPS weights loaded from %s", source)
        return model.eval().requires_grad_(False)


def _unit(features: Tensor) -> Tensor:
    return features / (features.pow(2).sum(dim=1, keepdim=True).sqrt() + NORM_EPS)


def _weight_files(source: str | Path) -> list[Path]:
    path = Path(source)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted([*path.glob("*.pth"), *path.glob("*.pt"), *path.glob("*.safetensors")])
        if not files:
            raise PerceptualWeightsMissing(f"{path} holds no .pth/.pt/.safetensors files")
        return files
    text = str(source)
    if text.count("/") == 1 and not text.startswith((".", "/")):
        try:
            from huggingface_hub import snapshot_download

            return _weight_files(snapshot_download(text, allow_patterns=["*.pth", "*.pt", "*.safetensors"]))
        except Exception as err:  # offline, unknown repo, missing package: all mean "no weights"
            raise PerceptualWeightsMissing(f"cannot fetch LPIPS weights {text} from the hub: {err}") from err
    raise PerceptualWeightsMissing(f"LPIPS weights not found at {source}")


def _read(path: Path) -> dict[str, Tensor]:
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and safetensors errors of many kinds
        raise PerceptualWeightsMissing(f"cannot read LPIPS weights {path}: {err}") from err
    if not isinstance(state, dict):
        raise PerceptualWeightsMissing(f"{path} does not hold a state dict")
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, Tensor)}
