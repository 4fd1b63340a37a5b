"""Tiny text encoders with random weights, saved in the Hugging Face layout (no download): a word
-level tokenizer built with `tokenizers`, and a T5 encoder or a CLIP text model of a few
thousand parameters.

Importable from every test package (pytest puts `tests/` on sys.path for its conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

__all__ = ["CORPUS_WORDS", "save_tiny_clip_text", "save_tiny_t5", "word_tokenizer"]

PAD, EOS = "<pad>", "</s>"
# Every word of the test corpus's captions but "rabbit": "a big rabbit" will not tokenize (the
# vocabulary has no unknown token), the caption error the pipeline must turn into an error row.
CORPUS_WORDS = (
    "a man on phone in car cyclists road moving gradient big noisy call square "
    "half file nothing words too short bad"
).split()


def word_tokenizer(words: Iterable[str], max_length: int):  # -> PreTrainedTokenizerFast
    """A lower-casing, whitespace-split word tokenizer ending every caption with `</s>`; a word
    outside `words` raises (no unknown token)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate([PAD, EOS, *dict.fromkeys(words)])}
    tokenizer = Tokenizer(models.WordLevel(vocab))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", special_tokens=[(EOS, vocab[EOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token=PAD, eos_token=EOS, model_max_length=max_length
    )


def save_tiny_t5(
    folder: Path,
    words: Iterable[str] = CORPUS_WORDS,
    d_model: int = 32,
    layers: int = 2,
    heads: int = 4,
    max_length: int = 16,
    seed: int = 0,
) -> Path:
    """A T5 encoder with random weights and its tokenizer, saved under `folder`."""
    from transformers import T5Config, T5EncoderModel

    tokenizer = word_tokenizer(words, max_length)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=d_model // heads,
        d_ff=2 * d_model,
        num_layers=layers,
        num_heads=heads,
        relative_attention_num_buckets=8,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    torch.manual_seed(seed)
    T5EncoderModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_tiny_clip_text(folder: Path, words: Iterable[str] = CORPUS_WORDS, seed: int = 0) -> Path:
    """A CLIP text model with random weights (16 positions) and the word tokenizer."""
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = word_tokenizer(words, 16)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=16,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=1,
    )
    torch.manual_seed(seed)
    CLIPTextModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
