"""Where caption embeddings live: a folder per text encoder beside the latents, joined by `key`.

    <output>/text/<tag>/text_encoder.json                  which encoder: id, config and
                                                           tokenizer hashes, max_tokens, dtype
    <output>/text/<tag>/embeddings/<latent part>.<digest>.parquet
                                                           one row per clip of that latent part:
                                                           key, text_embedding, text_shape,
                                                           text_dtype, token_count
    <output>/text/<tag>/errors/<latent part>.<digest>.parquet
                                                           clips whose caption failed
    <output>/text/<tag>/_manifest/<unit>.json              the unit's text marker

`<tag>` is the encoder's name and a hash of its identity (`TextIdentity.tag`), so another
encoder, max_tokens or dtype is another folder, and the latents never change for text. A text
unit commits as a latent unit does (`pipeline.manifest`): workers write the parts, the driver
writes the marker once every clip of the unit has its text row, listing the parts. The marker
records the latent parts it embedded; while the latent unit's marker lists the same parts the
text is current, otherwise (the unit was redone or retired) the next run with this encoder
deletes it and embeds the unit anew. A text part is named after the latent part whose rows it
holds, so a reader of one latent part reads its text parts only.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import re

from pydantic import BaseModel, Field

from model.storage import StorageSettings, open_fs
from model.text_encoder import TextEncoderCard
from pipeline.manifest import LATENTS_DIR, PARQUET, UnitMarker
from pipeline.storage import atomic_write, is_local, join_uri

log = logging.getLogger(__name__)

__all__ = [
    "TextIdentity",
    "TextUnitMarker",
    "choose_text_folder",
    "delete_text_unit",
    "is_current",
    "list_text_folders",
    "load_text_markers",
    "remove_text_orphans",
    "text_files_by_latent",
    "text_part_name",
    "text_prefix",
    "write_identity",
    "write_text_marker",
]

TEXT_DIR = "text"
EMBEDDINGS_DIR = "embeddings"
TEXT_ERRORS_DIR = "errors"
MANIFEST_DIR = "_manifest"
IDENTITY_FILE = "text_encoder.json"
MARKER_SUFFIX = ".json"
TAG_HASH_CHARS = 12
NOT_IN_TAG = re.compile(r"[^A-Za-z0-9_-]+")


class TextIdentity(BaseModel):
    """What makes two embeddings interchangeable: the encoder, its config and tokenizer, the
    token budget and the dtype as asked for (`auto` stays `auto`; each unit's marker records
    what it resolved to, and one folder holds one resolved dtype)."""

    text_encoder_id: str
    model_type: str
    config_hash: str
    tokenizer_hash: str
    max_tokens: int
    dim: int
    dtype: str

    @classmethod
    def of(cls, card: TextEncoderCard, dtype: str) -> TextIdentity:
        return cls(
            text_encoder_id=card.text_encoder_id,
            model_type=card.model_type,
            config_hash=card.config_hash,
            tokenizer_hash=card.tokenizer_hash,
            max_tokens=card.max_tokens,
            dim=card.dim,
            dtype=dtype,
        )

    def tag(self) -> str:
        """The folder's name under `text/`: readable, and unique to this identity."""
        name = NOT_IN_TAG.sub("_", self.text_encoder_id.rstrip("/").split("/")[-1]).strip("_")
        digest = hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:TAG_HASH_CHARS]
        return f"{name or 'text'}-{digest}"


class TextUnitMarker(BaseModel):
    """A unit whose every clip has its text row (an embedding, a null, or an error)."""

    unit_id: str
    latent_files: list[str] = Field(description="the latent unit's parts these rows embed")
    embedding_files: dict[str, list[str]] = Field(
        default_factory=dict, description="latent part -> its parts under embeddings/"
    )
    error_files: list[str] = Field(default_factory=list, description="parts under errors/")
    rows: int
    embedded: int
    nulls: int = Field(description="clips without a caption: a null embedding")
    errors: int
    errors_by_reason: dict[str, int] = Field(default_factory=dict)
    tokens: int = Field(default=0, description="token count summed over the embedded clips")
    text_dtype: str = Field(description="the dtype the encoder ran in")


def text_prefix(output: str, tag: str) -> str:
    return join_uri(output, TEXT_DIR, tag)


def text_part_name(latent_file: str, digest: str) -> str:
    """A text part's name: the latent part's stem (its unit, then its digest), then a digest of
    the text rows' keys, so a retried write of the same rows lands on the same object."""
    return f"{latent_file.removesuffix(PARQUET)}.{digest}{PARQUET}"


def is_current(text: TextUnitMarker, latent: UnitMarker) -> bool:
    """Whether `text` embeds exactly the rows the latent unit's marker lists now."""
    return sorted(text.latent_files) == sorted(latent.files(LATENTS_DIR))


def write_identity(prefix: str, identity: TextIdentity, storage: StorageSettings) -> None:
    atomic_write(
        join_uri(prefix, IDENTITY_FILE), identity.model_dump_json(indent=2).encode(), storage
    )


def list_text_folders(output: str, storage: StorageSettings) -> dict[str, TextIdentity]:
    """Every text folder under `output`, by tag, with its identity."""
    fs, path = open_fs(join_uri(output, TEXT_DIR), storage)
    try:
        names = sorted(fs.glob(f"{path.rstrip('/')}/*/{IDENTITY_FILE}"))
    except FileNotFoundError:
        return {}
    contents = fs.cat(names) if names else {}
    return {
        posixpath.basename(posixpath.dirname(name)): TextIdentity.model_validate_json(data)
        for name, data in sorted(contents.items())
    }


def _listing(prefix: str, folder: str, suffix: str, storage: StorageSettings) -> dict[str, str]:
    """File name -> path of every `*suffix` file under `prefix/folder` (fresh, not cached)."""
    fs, path = open_fs(join_uri(prefix, folder), storage)
    try:
        entries = fs.ls(path, detail=False, **({} if is_local(fs) else {"refresh": True}))
    except FileNotFoundError:
        return {}
    return {posixpath.basename(e): e for e in entries if e.endswith(suffix)}


def load_text_markers(prefix: str, storage: StorageSettings) -> dict[str, TextUnitMarker]:
    """Every text marker under a text folder, by unit id (one listing, then concurrent GETs)."""
    listed = _listing(prefix, MANIFEST_DIR, MARKER_SUFFIX, storage)
    if not listed:
        return {}
    fs, _ = open_fs(prefix, storage)
    markers = [
        TextUnitMarker.model_validate_json(d) for d in fs.cat(sorted(listed.values())).values()
    ]
    return {m.unit_id: m for m in sorted(markers, key=lambda m: m.unit_id)}


def write_text_marker(prefix: str, marker: TextUnitMarker, storage: StorageSettings) -> None:
    uri = join_uri(prefix, MANIFEST_DIR, f"{marker.unit_id}{MARKER_SUFFIX}")
    atomic_write(uri, marker.model_dump_json().encode(), storage)


def _files(marker: TextUnitMarker) -> list[str]:
    return [
        join_uri(EMBEDDINGS_DIR, name)
        for names in marker.embedding_files.values()
        for name in names
    ] + [join_uri(TEXT_ERRORS_DIR, name) for name in marker.error_files]


def delete_text_unit(prefix: str, marker: TextUnitMarker, storage: StorageSettings) -> None:
    """Remove a text unit: its marker first, then its parts (a crash between leaves orphans)."""
    for relative in [join_uri(MANIFEST_DIR, f"{marker.unit_id}{MARKER_SUFFIX}"), *_files(marker)]:
        fs, path = open_fs(join_uri(prefix, relative), storage)
        if fs.exists(path):
            fs.rm_file(path)


def remove_text_orphans(
    prefix: str, markers: dict[str, TextUnitMarker], storage: StorageSettings
) -> int:
    """Delete the text parts no marker lists (an interrupted run's, a retried write's); their count."""
    listed = {relative for marker in markers.values() for relative in _files(marker)}
    stray = [
        path
        for folder in (EMBEDDINGS_DIR, TEXT_ERRORS_DIR)
        for name, path in _listing(prefix, folder, PARQUET, storage).items()
        if join_uri(folder, name) not in listed
    ]
    if stray:
        fs, _ = open_fs(prefix, storage)
        fs.rm(stray)
        log.info("removed %d text parts of unfinished text units under %s", len(stray), prefix)
    return len(stray)


def choose_text_folder(
    output: str, storage: StorageSettings, text_encoder: str | None = "auto"
) -> tuple[str, TextIdentity] | None:
    """The text folder a reader reads: `auto` the only one (None where there is none; an error
    where there are several), a tag, or a text encoder id; None for no text."""
    if text_encoder is None:
        return None
    folders = list_text_folders(output, storage)
    if text_encoder == "auto":
        if len(folders) > 1:
            raise ValueError(
                f"{output} holds text from {len(folders)} text encoders "
                f"({', '.join(sorted(folders))}): name one (text_encoder=<tag or id>)"
            )
        return next(iter(folders.items()), None)
    chosen = [
        (tag, identity)
        for tag, identity in folders.items()
        if text_encoder in (tag, identity.text_encoder_id)
    ]
    if len(chosen) != 1:
        found = "several" if chosen else "no"
        raise ValueError(
            f"{found} text folders under {output} match {text_encoder!r}; there are: "
            f"{', '.join(sorted(folders)) or 'none'}"
        )
    return chosen[0]


def text_files_by_latent(
    prefix: str, latent_markers: dict[str, UnitMarker], storage: StorageSettings
) -> dict[str, list[str]]:
    """Latent part name -> URIs of its text parts, for every unit whose text is current."""
    files: dict[str, list[str]] = {}
    for unit_id, marker in load_text_markers(prefix, storage).items():
        latent = latent_markers.get(unit_id)
        if latent is None or not is_current(marker, latent):
            continue
        for latent_file, names in marker.embedding_files.items():
            files[latent_file] = [join_uri(prefix, EMBEDDINGS_DIR, name) for name in names]
    return files
