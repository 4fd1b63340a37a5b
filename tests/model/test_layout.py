"""Activation layout: the causal padding copy writes the layout the next convolution wants."""

from __future__ import annotations

import torch
from tolerances import assert_reordered

from model import WFVAE
from model.causal import WHOLE_CLIP, causal_window, convolution_layout, frames_after


def test_causal_window_in_channels_last_equals_cat() -> None:
    x = torch.randn(2, 5, 4, 6, 7).contiguous(memory_format=torch.channels_last_3d)

    def channels_last(x: torch.Tensor, head: int) -> torch.Tensor:
        return frames_after(x, head, torch.channels_last_3d)

    window = causal_window(x, WHOLE_CLIP, "conv", kernel_t=3, stride_t=1, make_frames=channels_last)
    assert window.is_contiguous(memory_format=torch.channels_last_3d)
    assert torch.equal(window, torch.cat([x[:, :, :1], x[:, :, :1], x], dim=2))
    assert frames_after(x, 2, torch.contiguous_format).is_contiguous()


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
    assert_reordered(mean_cl, mean)  # another layout: other kernels, other orders of sums
    assert_reordered(video_cl, video)
