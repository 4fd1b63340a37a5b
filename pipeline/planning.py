"""What a run will do, decided on the driver before anything runs: the units to encode (the
inputs against the output's manifest) and the one encoding every encoder actor is given (the
model, its dtype, the metadata every part file carries)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from model.errors import ConfigError
from model.latents import EncoderSettings, ModelCard
from model.precision import DtypeChoice, choose_dtype
from pipeline.manifest import UnitMarker, delete_unit, load_markers, remove_orphans
from pipeline.settings import PipelineSettings
from pipeline.sources import (
    InputsNotTaken,
    NoInputsError,
    WorkUnit,
    group_items,
    inputs_not_taken,
    list_sources,
)
from pipeline.storage import list_inputs

log = logging.getLogger(__name__)

__all__ = [
    "Encoding",
    "RunPlan",
    "check_one_precision",
    "encode_precision",
    "plan_encoding",
    "plan_run",
]


@dataclass
class RunPlan:
    """Units to run now, and the markers of units already finished."""

    units: list[WorkUnit]
    finished: dict[str, UnitMarker]
    skipped: int
    not_taken: InputsNotTaken = field(default_factory=InputsNotTaken)


def plan_run(settings: PipelineSettings, model_id: str) -> RunPlan:
    """Compare the inputs with the manifest: drop stale units, clean orphans, keep only new work."""
    listing = list_inputs(settings.inputs, settings.storage, settings.input_lists)
    own = settings.output.rstrip("/") + "/"  # an input folder holding the output: not its parts
    uris = [u for u in listing.inputs if not u.startswith(own)]
    not_taken = inputs_not_taken([u for u in listing.not_taken if not u.startswith(own)], uris)
    if not_taken.count:
        log.warning("%s", not_taken.describe())
    tars, items = list_sources(uris, settings.storage)
    if not tars and not items:  # a mistyped prefix must not look like a finished job
        raise NoInputsError(settings.inputs + settings.input_lists)
    current = {t.shard: t.version for t in tars} | {i.uri: i.version for i in items}
    markers = load_markers(settings.output, settings.storage)
    settings_hash = settings.output_hash(model_id)
    foreign = sorted(m.unit_id for m in markers.values() if m.settings_hash != settings_hash)
    if foreign:
        raise ConfigError(
            f"{settings.output} holds {len(foreign)} units written with other clip, model or latent "
            f"settings (e.g. {foreign[0]}); use a new output prefix"
        )
    for marker in list(markers.values()):  # a source changed since: redo its whole unit
        if any(
            uri in current and current[uri] != version for uri, version in marker.sources.items()
        ):
            log.info("unit %s has changed sources; it will be rewritten", marker.unit_id)
            delete_unit(settings.output, marker.unit_id, settings.storage)
            del markers[marker.unit_id]
    remove_orphans(settings.output, markers, settings.storage)
    done = set().union(*(m.done_sources() for m in markers.values())) if markers else set()
    pending_tars = [t for t in tars if f"{t.shard}@{t.version}" not in done]
    pending_items = [i for i in items if f"{i.uri}@{i.version}" not in done]
    units = pending_tars + group_items(pending_items, settings.files_per_unit)
    skipped = sum(1 for m in markers.values() if any(uri in current for uri in m.sources))
    return RunPlan(units=units, finished=markers, skipped=skipped, not_taken=not_taken)


@dataclass(frozen=True)
class Encoding:
    """What every encoder actor of a run is given, decided once on the driver."""

    encoder: EncoderSettings  # the run's, with the model's id filled in
    precision: DtypeChoice
    settings_hash: str  # `PipelineSettings.output_hash`: one prefix holds one such hash
    file_metadata: dict[str, object]  # every part file's `wfvae.*` metadata


def plan_encoding(settings: PipelineSettings, model: ModelCard, gpus: float) -> Encoding:
    """The run's encoding on a cluster with `gpus`."""
    encoder = settings.encoder.model_copy(update={"model_id": model.model_id})
    precision = encode_precision(encoder, gpus > 0)
    settings_hash = settings.output_hash(model.model_id)
    file_metadata = {
        **model.metadata(encoder.latent_kind, precision),
        "latent_dtype": settings.latent_dtype,
        "settings_hash": settings_hash,
        "clip_settings": settings.clips.model_dump(mode="json"),
    }
    return Encoding(encoder, precision, settings_hash, file_metadata)


def encode_precision(encoder: EncoderSettings, gpus: bool) -> DtypeChoice:
    """The run's encode dtype, decided once on the driver and handed to every encoder actor (the
    files' metadata names it). On a GPU cluster one GPU worker decides (the driver often runs on
    a CPU-only head node; `model.precision`: bfloat16 where the GPU has it natively, else
    float16); on a CPU cluster the driver's CPU decides (bfloat16 with AMX-BF16, else float32).
    An actor whose own device would run the dtype slowly refuses it as it loads the model
    (`SlowPrecisionError`)."""
    if gpus:
        import ray

        ask_a_gpu = ray.remote(num_gpus=1, num_cpus=0, max_retries=0)(choose_dtype)
        return ray.get(ask_a_gpu.remote(encoder.dtype, "cuda", force=encoder.force_dtype))
    return choose_dtype(encoder.dtype, "cpu", force=encoder.force_dtype)


def check_one_precision(
    output: str, finished: Iterable[UnitMarker], encode_dtype: DtypeChoice
) -> None:
    """Refuses to add latents in `encode_dtype` to a prefix whose finished units name another.

    `encoder.dtype` `auto` (the hash's value) resolves per machine: bfloat16 on GPUs and CPUs
    with AMX-BF16, float32 on other CPUs, so a refresh run elsewhere could mix the two in one
    dataset (bf16 and fp32 latents differ by ~1%)."""
    others = Counter(
        m.encode_dtype for m in finished if m.encode_dtype not in (None, encode_dtype.name)
    )
    if others:
        dtype, units = others.most_common(1)[0]
        raise ConfigError(
            f"{output} holds {units} units encoded in {dtype}, and this run would encode in "
            f"{encode_dtype.name} ({encode_dtype.reason}): one prefix holds one precision; run "
            f"where encoder.dtype resolves to {dtype}, or use a new output prefix"
        )
