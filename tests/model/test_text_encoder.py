"""Caption embeddings: equal to what `transformers` returns in-process, padding trimmed, nulls and
bad captions per caption, identical captions once, safetensors only, the slow-precision rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from text_models import save_tiny_clip_text, save_tiny_t5

from model.errors import CheckpointError, ConfigError, SlowPrecisionError
from model.text_encoder import CaptionEncoder, TextEncoderCard

MAX_TOKENS = 8
CAPTIONS = [
    "a man on a phone in a car",  # 8 words + </s>: truncated to MAX_TOKENS
    "cyclists on a road",
    None,
    "   ",
    "a big rabbit",  # "rabbit" is not in the vocabulary, which has no unknown token
    "a square",
    "A SQUARE",  # lower-cased by the tokenizer: another caption, the same tokens
    "a square",
]


def reference(encoder: CaptionEncoder, caption: str) -> np.ndarray:
    """What a user gets from transformers for one caption: padded to max_tokens, masked, the
    caption's own rows taken (token_count, dim)."""
    tokens = encoder.tokenizer(
        [caption], padding="max_length", truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
    )
    with torch.inference_mode():
        hidden = encoder.model(**tokens).last_hidden_state[0]  # (max_tokens, dim)
    return hidden[: int(tokens["attention_mask"].sum())].numpy()


def assert_equal_to_reference(encoder: CaptionEncoder, captions: list[str | None]) -> None:
    for caption, result in zip(captions, encoder.encode(captions), strict=True):
        if result.embedding is None:
            continue
        expected = reference(encoder, caption)
        assert result.embedding.shape == expected.shape == (result.token_count, 32)
        # Padding to the batch's longest caption instead of max_tokens changes only the order
        # of float32 sums (masked positions add exact zeros): a few ulps of the output's scale.
        scale = max(1.0, float(np.abs(expected).max()))
        assert np.abs(result.embedding - expected).max() <= 1e-6 * scale, caption


@pytest.fixture(scope="module")
def t5(tiny_text_encoder: Path) -> CaptionEncoder:
    return CaptionEncoder(str(tiny_text_encoder), MAX_TOKENS, dtype="float32", batch_size=3)


def test_embeddings_equal_transformers_in_process_with_the_padding_trimmed(
    t5: CaptionEncoder,
) -> None:
    results = t5.encode(CAPTIONS)
    counts = [r.token_count for r in results]
    assert counts == [MAX_TOKENS, 5, None, None, None, 3, 3, 3]
    assert_equal_to_reference(t5, CAPTIONS)
    # one caption in a batch of its own, or among others of other lengths: the same rows
    alone = t5.encode(["cyclists on a road"])[0].embedding
    assert alone is not None and results[1].embedding is not None
    assert np.abs(alone - results[1].embedding).max() <= 1e-6 * max(1.0, np.abs(alone).max())


def test_no_caption_is_a_null_and_a_bad_caption_fails_alone(t5: CaptionEncoder) -> None:
    results = t5.encode(CAPTIONS)
    for blank in (results[2], results[3]):
        assert blank.embedding is None and not blank.failed
    rabbit = results[4]
    assert rabbit.embedding is None and rabbit.reason == "untokenizable"
    assert "UNK" in rabbit.message  # the tokenizer's own words
    assert all(r.embedding is not None for i, r in enumerate(results) if i not in (2, 3, 4))


def test_identical_captions_are_encoded_once(t5: CaptionEncoder) -> None:
    before = t5.captions_encoded
    results = t5.encode(CAPTIONS)
    # distinct captions that tokenize: 4 ("a square" twice, "A SQUARE" is another string)
    assert t5.captions_encoded - before == 4
    assert np.array_equal(results[5].embedding, results[7].embedding)


def test_a_clip_text_model_loads_its_encoder_and_agrees(tmp_path: Path) -> None:
    folder = save_tiny_clip_text(tmp_path / "clip")
    card = TextEncoderCard.read(str(folder))
    assert (card.model_type, card.max_tokens, card.dim) == ("clip_text_model", 16, 32)
    encoder = CaptionEncoder(str(folder), MAX_TOKENS, dtype="float32")
    assert type(encoder.model).__name__ == "CLIPTextModel"
    assert_equal_to_reference(encoder, ["a man on a phone", "cyclists on a road", "a square"])
    with pytest.raises(ConfigError, match="exceeds the 16 positions"):
        TextEncoderCard.read(str(folder), max_tokens=77)


def test_the_card_names_what_changes_the_embeddings(
    tiny_text_encoder: Path, tmp_path: Path
) -> None:
    card = TextEncoderCard.read(str(tiny_text_encoder), MAX_TOKENS)
    again = TextEncoderCard.read(str(tiny_text_encoder), MAX_TOKENS)
    assert card == again and card.text_encoder_id.startswith("tiny-t5-") and card.dim == 32
    assert TextEncoderCard.read(str(tiny_text_encoder)).max_tokens == 16  # the tokenizer's length
    other_weights = TextEncoderCard.read(
        str(save_tiny_t5(tmp_path / "tiny-t5", seed=1)), MAX_TOKENS
    )
    assert other_weights.text_encoder_id != card.text_encoder_id
    assert other_weights.config_hash == card.config_hash  # same config, other weights
    other_words = save_tiny_t5(tmp_path / "words", words=["a", "b"])
    assert TextEncoderCard.read(str(other_words), MAX_TOKENS).tokenizer_hash != card.tokenizer_hash


def test_only_safetensors_weights_are_loaded(tmp_path: Path) -> None:
    folder = save_tiny_t5(tmp_path / "pickled")
    weights = folder / "model.safetensors"
    torch.save(load_file(weights), folder / "pytorch_model.bin")  # the same weights, pickled
    weights.unlink()
    with pytest.raises(CheckpointError, match="only safetensors"):
        CaptionEncoder(str(folder), MAX_TOKENS, dtype="float32")


def test_bf16_on_a_cpu_without_amx_is_refused(
    tiny_text_encoder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # holds oneDNN below AMX on any CPU
    with pytest.raises(SlowPrecisionError, match="bfloat16"):
        CaptionEncoder(str(tiny_text_encoder), MAX_TOKENS, dtype="bfloat16")
    forced = CaptionEncoder(str(tiny_text_encoder), MAX_TOKENS, dtype="bfloat16", force_dtype=True)
    result = forced.encode(["a square"])[0]
    assert result.embedding is not None and result.embedding.dtype == np.float32
