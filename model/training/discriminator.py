"""The 3D PatchGAN discriminator of WF-VAE's GAN loss (paper Sec. 3.3; official `NLayerDiscriminator3D`)."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["PatchDiscriminator3D", "init_discriminator_weights"]

KERNEL = 3
PADDING = 1
LEAKY_SLOPE = 0.2
MAX_WIDTH_MULTIPLIER = 8
INIT_STD = 0.02


class PatchDiscriminator3D(nn.Module):
    """Strided 3D convolutions to a map of real/fake logits, one per space-time patch.

    The first layer halves T, H and W; the second halves them again; later layers halve H and W
    only, and the last two keep the size. Widths double per layer up to 8x `width`.
    Module indices inside `main` match the official discriminator's, so its weights load.
    """

    def __init__(self, in_channels: int = 3, width: int = 64, num_layers: int = 3, dropout: float = 0.3) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv3d(in_channels, width, KERNEL, stride=2, padding=PADDING),
            nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
        ]
        mult = 1
        for n in range(1, num_layers):
            prev, mult = mult, min(2**n, MAX_WIDTH_MULTIPLIER)
            time_stride = 2 if n == 1 else 1
            layers += [
                # BatchNorm follows, so the convolution carries no bias.
                nn.Conv3d(width * prev, width * mult, KERNEL, stride=(time_stride, 2, 2), padding=PADDING, bias=False),
                nn.BatchNorm3d(width * mult),
                nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
                nn.Dropout(dropout),
            ]
        prev, mult = mult, min(2**num_layers, MAX_WIDTH_MULTIPLIER)
        layers += [
            nn.Conv3d(width * prev, width * mult, KERNEL, stride=1, padding=PADDING, bias=False),
            nn.BatchNorm3d(width * mult),
            nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
            nn.Dropout(dropout),
            nn.Conv3d(width * mult, 1, KERNEL, stride=1, padding=PADDING),
        ]
        self.main = nn.Sequential(*layers)
        self.apply(init_discriminator_weights)

    def forward(self, video: Tensor) -> Tensor:  # (B, 3, T, H, W) -> (B, 1, t, h, w) logits
        return self.main(video)


def init_discriminator_weights(module: nn.Module) -> None:
    """N(0, 0.02) convolutions and N(1, 0.02) BatchNorm scales, as in pix2pix and the official code."""
    if isinstance(module, nn.Conv3d):
        nn.init.normal_(module.weight, 0.0, INIT_STD)
    elif isinstance(module, nn.BatchNorm3d):
        nn.init.normal_(module.weight, 1.0, INIT_STD)
        nn.init.zeros_(module.bias)
