"""Caption embeddings: a Hugging Face text encoder (T5, UMT5, CLIP text, any encoder with a
`last_hidden_state`) loaded once from safetensors weights, mapping captions to their token
embeddings with the padding cut off; and its identity, read without loading the weights.

No Ray here: the pipeline's text actors run `CaptionEncoder`, its driver reads `TextEncoderCard`.
`transformers` is imported where used (the `text` extra).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .errors import CheckpointError, ConfigError
from .latents.clip_encoder import resolve_device
from .latents.identity import model_identity
from .precision import DtypeChoice, choose_dtype

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

__all__ = [
    "CaptionEmbedding",
    "CaptionEncoder",
    "TextEncoderCard",
    "encoder_class",
    "has_caption",
]

# `model_type` -> the encoder-only class that loads just the encoder's weights from a full
# checkpoint (AutoModel would build T5's decoder too, and CLIP's vision tower).
ENCODER_CLASSES = {
    "t5": "T5EncoderModel",
    "mt5": "MT5EncoderModel",
    "umt5": "UMT5EncoderModel",
    "clip": "CLIPTextModel",
    "clip_text_model": "CLIPTextModel",
}
DEFAULT_MAX_TOKENS = (
    512  # where neither tokenizer nor config bounds the length (T5's relative positions)
)
UNBOUNDED = 10**6  # tokenizers with no length of their own say ~1e30
HASH_CHARS = 16
# config.json entries that say nothing about the computation
VOLATILE_CONFIG_KEYS = ("transformers_version", "_name_or_path", "architectures")
# Per-caption failures, as error rows count them
UNTOKENIZABLE = "untokenizable"
NO_TOKENS = "no_tokens"
NON_FINITE = "non_finite"


def has_caption(caption: str | None) -> bool:
    """Whether a caption holds text to embed (None, empty and blank ones get a null embedding)."""
    return caption is not None and caption.strip() != ""


def encoder_class(model_type: str) -> str:
    """The transformers class that loads an encoder of `model_type`; `AutoModel` for others."""
    return ENCODER_CLASSES.get(model_type, "AutoModel")


def _digest(value: object) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]


def _config_hash(config: Any) -> str:
    values = {k: v for k, v in config.to_dict().items() if k not in VOLATILE_CONFIG_KEYS}
    return _digest(values)


def _tokenizer_hash(tokenizer: PreTrainedTokenizerBase) -> str:
    """A hash of what the tokenizer does: its full pipeline where it is a fast one (vocabulary,
    normaliser, pre-tokeniser, post-processor), its vocabulary and special tokens otherwise."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        from tokenizers import Tokenizer

        copy = Tokenizer.from_str(backend.to_str())
        copy.no_padding()  # per-call state, not the tokenizer's identity
        copy.no_truncation()
        return _digest(json.loads(copy.to_str()))
    return _digest({"vocab": tokenizer.get_vocab(), "special": tokenizer.all_special_tokens})


def _hidden_size(config: Any) -> int:
    text = getattr(config, "text_config", None)  # a full CLIP checkpoint: its text tower's width
    for candidate in (text, config):
        for name in ("d_model", "hidden_size"):
            value = getattr(candidate, name, None) if candidate is not None else None
            if isinstance(value, int):
                return value
    raise ConfigError(f"the text encoder's config names no width (d_model, hidden_size): {config}")


def _position_limit(config: Any) -> int | None:
    text = getattr(config, "text_config", None) or config
    limit = getattr(text, "max_position_embeddings", None)
    return int(limit) if isinstance(limit, int) else None


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as error:
        raise ConfigError(
            "caption embeddings need transformers and tokenizers: pip install -e '.[text]'"
        ) from error
    return transformers


def _load_tokenizer(source: str) -> PreTrainedTokenizerBase:
    AutoTokenizer = _transformers().AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"no tokenizer could be loaded from {source}: {error}") from error


def _load_config(source: str) -> Any:
    AutoConfig = _transformers().AutoConfig

    try:
        return AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"no text encoder config at {source}: {error}") from error


@dataclass(frozen=True)
class TextEncoderCard:
    """A text encoder as its embeddings name it, read from its config and tokenizer (no weights).

    `text_encoder_id` is the hub id, or for a local folder its name and a hash of its weights
    (`model.latents.model_identity`); with the config's and tokenizer's hashes and `max_tokens`
    it says which embeddings are interchangeable."""

    source: str
    text_encoder_id: str
    model_type: str
    config_hash: str
    tokenizer_hash: str
    max_tokens: int
    dim: int

    @classmethod
    def read(cls, source: str, max_tokens: int | None = None) -> TextEncoderCard:
        """The text encoder at `source` (a hub id or a local folder in the Hugging Face layout);
        `max_tokens` None: the tokenizer's length, else the positions the model has, else 512."""
        config = _load_config(source)
        tokenizer = _load_tokenizer(source)
        limit = _position_limit(config)
        if max_tokens is None:
            own = int(getattr(tokenizer, "model_max_length", UNBOUNDED) or UNBOUNDED)
            max_tokens = min(own if own < UNBOUNDED else DEFAULT_MAX_TOKENS, limit or UNBOUNDED)
        if limit is not None and max_tokens > limit:
            raise ConfigError(
                f"text.max_tokens {max_tokens} exceeds the {limit} positions of {source}; "
                f"use at most {limit}"
            )
        return cls(
            source=str(source),
            text_encoder_id=model_identity(source),
            model_type=str(config.model_type),
            config_hash=_config_hash(config),
            tokenizer_hash=_tokenizer_hash(tokenizer),
            max_tokens=int(max_tokens),
            dim=_hidden_size(config),
        )


@dataclass(frozen=True)
class CaptionEmbedding:
    """One caption's result: its embedding (tokens, dim) float32 and token count, or nothing
    (no caption: `reason` empty), or the reason it failed."""

    embedding: np.ndarray | None = None
    token_count: int | None = None
    reason: str = ""
    message: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.reason)


class CaptionEncoder:
    """Loads a text encoder once; captions -> embeddings with the padding trimmed off.

    Identical captions of a call are encoded once. Captions go to the model sorted by token
    count, `batch_size` at a time, each batch padded to its longest caption and masked: a
    token's output does not depend on the padding after it (the attention mask removes it), so
    this equals padding to `max_tokens` up to float rounding, at a fraction of the work.
    """

    def __init__(
        self,
        source: str,
        max_tokens: int,
        dtype: str | torch.dtype | DtypeChoice | None = "auto",
        device: str | torch.device | None = "auto",
        force_dtype: bool = False,
        batch_size: int = 32,
    ) -> None:
        self.source = str(source)
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.device = resolve_device(device)
        if isinstance(dtype, DtypeChoice):
            # The driver's decision; the slow-precision rule still holds on this actor's device.
            choose_dtype(dtype.dtype, self.device, force=force_dtype)
            self.dtype_choice = dtype
        else:
            self.dtype_choice = choose_dtype(dtype, self.device, force=force_dtype)
        self.dtype = self.dtype_choice.dtype
        self.tokenizer = _load_tokenizer(self.source)
        self.model = self._load_model()
        self.pad_id = int(self.tokenizer.pad_token_id or 0)
        self.captions_encoded = 0  # distinct captions run through the model, for the stage's counts
        log.info("loaded text encoder %s on %s as %s", self.source, self.device, self.dtype)

    def _load_model(self) -> PreTrainedModel:
        transformers = _transformers()
        config = _load_config(self.source)
        cls = getattr(transformers, encoder_class(str(config.model_type)))
        try:  # safetensors only: a pickled .bin checkpoint is never unpickled
            model = cls.from_pretrained(self.source, use_safetensors=True, dtype=self.dtype)
        except OSError as error:
            raise CheckpointError(
                f"no safetensors weights for the text encoder at {self.source} (only "
                f"safetensors are loaded, never pickled .bin files): {error}"
            ) from error
        if getattr(model.config, "is_encoder_decoder", False) and hasattr(model, "get_encoder"):
            model = model.get_encoder()
        return model.to(self.device).eval()

    def tokenize(self, captions: Sequence[str]) -> list[list[int] | Exception]:
        """Token ids of each caption (truncated to max_tokens, special tokens added), or the error
        that caption raised; one bad caption does not fail the others."""
        kwargs = {"truncation": True, "max_length": self.max_tokens, "padding": False}
        try:
            return list(self.tokenizer(list(captions), **kwargs)["input_ids"])
        except Exception:  # the Rust tokenizers raise plain Exception: find the captions at fault
            results: list[list[int] | Exception] = []
            for caption in captions:
                try:
                    results.append(list(self.tokenizer(caption, **kwargs)["input_ids"]))
                except Exception as error:
                    results.append(error)
            return results

    @torch.inference_mode()
    def _forward(self, ids: list[list[int]]) -> list[np.ndarray]:
        """Same-batch token ids -> each one's (n_i, dim) float32 output, padding cut off."""
        longest = max(len(t) for t in ids)
        input_ids = torch.full((len(ids), longest), self.pad_id, dtype=torch.long)  # (B, L)
        mask = torch.zeros((len(ids), longest), dtype=torch.long)  # (B, L)
        for row, tokens in enumerate(ids):
            input_ids[row, : len(tokens)] = torch.tensor(tokens)
            mask[row, : len(tokens)] = 1
        out = self.model(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device))
        hidden = out.last_hidden_state.float().cpu().numpy()  # (B, L, dim)
        return [hidden[row, : len(tokens)] for row, tokens in enumerate(ids)]

    def encode(self, captions: Sequence[str | None]) -> list[CaptionEmbedding]:
        """One result per caption, in order: embedding (token_count, dim), null, or an error."""
        results = [CaptionEmbedding() for _ in captions]
        positions: dict[str, list[int]] = {}
        for i, caption in enumerate(captions):
            if caption is not None and has_caption(caption):
                positions.setdefault(caption, []).append(i)
        distinct = list(positions)
        tokens: dict[str, list[int]] = {}
        for caption, ids in zip(distinct, self.tokenize(distinct), strict=True):
            if isinstance(ids, Exception):
                failure = CaptionEmbedding(reason=UNTOKENIZABLE, message=str(ids))
            elif not ids:
                failure = CaptionEmbedding(reason=NO_TOKENS, message="the caption gave no tokens")
            else:
                tokens[caption] = ids
                continue
            for i in positions[caption]:
                results[i] = failure
        by_length = sorted(tokens, key=lambda c: len(tokens[c]))
        for start in range(0, len(by_length), self.batch_size):
            batch = by_length[start : start + self.batch_size]
            for caption, embedding in zip(
                batch, self._forward([tokens[c] for c in batch]), strict=True
            ):
                if np.isfinite(embedding).all():
                    result = CaptionEmbedding(embedding, len(tokens[caption]))
                else:  # fp16 T5 overflows, for one
                    result = CaptionEmbedding(
                        reason=NON_FINITE,
                        message=f"the text encoder gave inf or NaN in {self.dtype_choice.name}",
                    )
                for i in positions[caption]:
                    results[i] = result
        self.captions_encoded += len(tokens)
        return results
