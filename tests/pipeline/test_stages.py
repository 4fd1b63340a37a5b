"""The Ray stage callables called directly: rows per sample, the unit's end row, encode errors as rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from bundled_model import LATENT_DIM

from model.latents import EncoderSettings
from model.media import ClipSettings
from model.storage import StorageSettings
from pipeline.records import ENCODED_SCHEMA, TRANSIT_SCHEMA
from pipeline.sources import list_sources
from pipeline.stages import EMPTY_ROW, EncodeStage, unit_rows

CLIPS = ClipSettings(num_frames=9, height=64, width=64, clip_mode="all")


def test_unit_rows_account_for_every_sample(corpus: Any) -> None:
    (unit,), _ = list_sources([str(corpus.root / "shards" / "shard-00000.tar")], StorageSettings())
    table = pa.concat_tables(unit_rows(unit, StorageSettings(), CLIPS, "model", "mean"))
    assert table.schema == TRANSIT_SCHEMA
    rows = table.to_pylist()
    assert rows[-1]["row_kind"] == "unit_end" and rows[-1]["unit_samples"] == 4
    per_sample: dict[int, list[dict[str, Any]]] = {}
    for row in rows[:-1]:
        per_sample.setdefault(row["sample_index"], []).append(row)
    assert sorted(per_sample) == [0, 1, 2, 3]
    for sample_rows in per_sample.values():
        assert all(r["sample_rows"] == len(sample_rows) for r in sample_rows)
    assert [r["row_kind"] for r in per_sample[2]] == ["error"]  # the truncated mp4
    assert per_sample[2][0]["stage"] == "decode" and per_sample[2][0]["reason"] == "unreadable"
    assert len(per_sample[3]) == 2  # synth_a: 20 frames, two 9-frame clips


def test_encode_stage_turns_model_errors_into_rows_and_keeps_the_rest() -> None:
    good = np.zeros((9, 64, 64, 3), np.uint8)
    bad = np.zeros((8, 64, 64, 3), np.uint8)  # 8 frames: not 1 + 4k, the model refuses it
    rows = [
        {
            **EMPTY_ROW,
            "row_kind": "clip",
            "unit_id": "u",
            "key": k,
            "frames": f.tobytes(),
            "frames_shape": list(f.shape),
        }
        for k, f in (("good", good), ("bad", bad))
    ] + [{**EMPTY_ROW, "row_kind": "unit_end", "unit_id": "u", "unit_samples": 2}]
    stage = EncodeStage(EncoderSettings(device="cpu", dtype="float32"), batch_size=4)
    out = stage(pa.Table.from_pylist(rows, schema=TRANSIT_SCHEMA))
    assert out.schema == ENCODED_SCHEMA
    by_key = {r["key"]: r for r in out.to_pylist()}
    assert by_key["good"]["row_kind"] == "clip"
    assert by_key["good"]["latent_shape"] == [LATENT_DIM, 3, 8, 8]
    assert by_key["bad"]["row_kind"] == "error" and by_key["bad"]["stage"] == "encode"
    assert by_key["bad"]["latent"] is None and by_key["bad"]["message"]
    assert by_key[""]["row_kind"] == "unit_end"
