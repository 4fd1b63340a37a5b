"""Model fixtures: the official tiny reference model and its parity cases."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from model import WFVAE, load_wfvae


@pytest.fixture(scope="session")
def tiny_vae(tiny_parity_dir: Path) -> WFVAE:
    return load_wfvae(tiny_parity_dir)


@pytest.fixture(scope="session")
def parity_cases(tiny_parity_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(tiny_parity_dir / "cases.safetensors"))
