"""The clip-to-latent core both doors stand on: the pipeline's encoder actors and the service's
replicas load, encode, key and describe latents here (no Ray, no web framework).

    clip_encoder  ClipEncoder, its EncoderSettings and latent kinds: the model once, clip batches to latents
    keys          clip_key / error_key: the rows' deterministic ids, one function for every door
    identity      which model made a latent: model id, config hash, the metadata written beside it
"""

from __future__ import annotations

from .clip_encoder import ClipEncoder, EncoderSettings, LatentKind, resolve_device
from .identity import ModelCard, config_hash, latent_metadata, model_identity, resolve_source
from .keys import ClipOrigin, VideoOrigin, clip_key, error_key

__all__ = [
    "ClipEncoder",
    "ClipOrigin",
    "EncoderSettings",
    "LatentKind",
    "ModelCard",
    "VideoOrigin",
    "clip_key",
    "config_hash",
    "error_key",
    "latent_metadata",
    "model_identity",
    "resolve_device",
    "resolve_source",
]
