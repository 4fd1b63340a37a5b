"""Activation layout: the causal padding copy writes the layout the next convolution wants."""

from __future__ import annotations

import torch

from model import WFVAE
from model.causal import convolution_layout, join_frames


def test_join_frames_in_channels_last_equals_cat() -> None:
    x = torch.randn(2, 5, 4, 6, 7).contiguous(memory_format=torch.channels_last_3d)
    head = x[:, :, :1].expand(-1, -1, 2, -1, -1)
    joined = join_frames(head, x, torch.channels_last_3d)
    assert joined.is_contiguous(memory_format=torch.channels_last_3d)
    assert torch.equal(joined, torch.cat([head, x], dim=2))
    assert join_frames(head, x, torch.contiguous_format).is_contiguous()


def test_cpu_convolutions_read_channels_first() -> None:
    # oneDNN's direct convolution is faster on channels-first here; only CUDA keeps channels-last.
    channels_last = torch.randn(1, 8, 3, 4, 4).contiguous(memory_format=torch.channels_last_3d)
    assert convolution_layout(channels_last) == torch.contiguous_format


def test_model_output_does_not_depend_on_input_layout(tiny_vae: WFVAE) -> None:
    x = torch.rand(1, 3, 9, 32, 32, generator=torch.Generator().manual_seed(4)) * 2 - 1
    with torch.inference_mode():
        mean = tiny_vae.encode(x).mean
        mean_cl = tiny_vae.encode(x.contiguous(memory_format=torch.channels_last_3d)).mean
        video = tiny_vae.decode(mean)
        video_cl = tiny_vae.decode(mean.contiguous(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(mean_cl, mean, rtol=0, atol=1e-5)
    torch.testing.assert_close(video_cl, video, rtol=0, atol=1e-5)
