"""The text folder kept in step with the latents: text of a redone or retired unit is deleted and
the unit embedded anew, stray parts removed, one resolved dtype per folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.errors import ConfigError
from model.precision import DtypeChoice
from model.storage import StorageSettings
from pipeline.manifest import UnitMarker
from pipeline.text.layout import (
    EMBEDDINGS_DIR,
    TextIdentity,
    TextUnitMarker,
    load_text_markers,
    text_prefix,
    write_text_marker,
)
from pipeline.text.run import check_one_dtype, plan_text

IDENTITY = TextIdentity(
    text_encoder_id="t5-tiny-0123456789ab",
    model_type="t5",
    config_hash="c" * 16,
    tokenizer_hash="d" * 16,
    max_tokens=8,
    dim=32,
    dtype="auto",
)


def latent_marker(unit_id: str, files: list[str], clips: int = 2) -> UnitMarker:
    return UnitMarker(
        unit_id=unit_id, sources={}, settings_hash="s", samples=clips, clips=clips, errors=0,
        latent_files=files, error_files=[],
    )  # fmt: skip


def text_marker(unit_id: str, latent_files: list[str], dtype: str = "float32") -> TextUnitMarker:
    parts = {name: [name.replace(".parquet", ".t.parquet")] for name in latent_files}
    return TextUnitMarker(
        unit_id=unit_id, latent_files=latent_files, embedding_files=parts, rows=2, embedded=2,
        nulls=0, errors=0, text_dtype=dtype,
    )  # fmt: skip


def write_unit(prefix: str, marker: TextUnitMarker) -> None:
    write_text_marker(prefix, marker, StorageSettings())
    for names in marker.embedding_files.values():
        for name in names:
            path = Path(prefix) / EMBEDDINGS_DIR / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"rows")


def test_text_follows_the_latent_units(tmp_path: Path) -> None:
    output, storage = str(tmp_path), StorageSettings()
    prefix = text_prefix(output, IDENTITY.tag())
    write_unit(prefix, text_marker("kept", ["kept.aa.parquet"]))
    write_unit(prefix, text_marker("redone", ["redone.aa.parquet"]))  # its latents changed since
    write_unit(prefix, text_marker("retired", ["retired.aa.parquet"]))  # its unit is gone
    stray = Path(prefix) / EMBEDDINGS_DIR / "lost.bb.cc.parquet"  # an interrupted run's part
    stray.write_bytes(b"rows")
    latents = {
        "kept": latent_marker("kept", ["kept.aa.parquet"]),
        "redone": latent_marker("redone", ["redone.bb.parquet"]),
        "new": latent_marker("new", ["new.aa.parquet"]),
        "empty": latent_marker("empty", [], clips=0),  # every video failed: nothing to embed
    }
    dry = plan_text(output, IDENTITY, latents, storage, prune=False)
    assert sorted(m.unit_id for m in dry.pending) == ["new", "redone"]
    assert sorted(load_text_markers(prefix, storage)) == ["kept", "redone", "retired"]  # untouched
    plan = plan_text(output, IDENTITY, latents, storage)
    assert sorted(m.unit_id for m in plan.pending) == ["new", "redone"]
    assert sorted(plan.current) == sorted(load_text_markers(prefix, storage)) == ["kept"]
    assert sorted(p.name for p in (Path(prefix) / EMBEDDINGS_DIR).iterdir()) == [
        "kept.aa.t.parquet"
    ]


def test_one_text_folder_holds_one_resolved_dtype(tmp_path: Path) -> None:
    current = {"a": text_marker("a", ["a.aa.parquet"], dtype="bfloat16")}
    check_one_dtype("out/text/x", current, DtypeChoice(torch.bfloat16, "auto on CUDA workers"))
    with pytest.raises(ConfigError, match="1 units embedded in bfloat16.*would embed in float32"):
        check_one_dtype("out/text/x", current, DtypeChoice(torch.float32, "auto on a CPU"))


def test_the_folder_is_named_by_the_identity() -> None:
    tag = IDENTITY.tag()
    assert tag.startswith("t5-tiny-0123456789ab-")
    for change in ({"max_tokens": 16}, {"dtype": "float32"}, {"tokenizer_hash": "e" * 16}):
        assert IDENTITY.model_copy(update=change).tag() != tag
    hub = IDENTITY.model_copy(update={"text_encoder_id": "google/umt5-xxl"})
    assert hub.tag().startswith("umt5-xxl-")
