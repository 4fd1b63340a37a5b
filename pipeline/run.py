"""The batch job's story: plan units against the manifest, stream them through Ray Data, commit, summarise."""

from __future__ import annotations

import logging
import time

from model.latents import ModelCard
from pipeline.committer import UnitCommitter
from pipeline.dataset import Execution, execute, start_ray
from pipeline.manifest import remove_orphans, stats_uri, summary_uri, write_index, write_json
from pipeline.planning import check_one_precision, plan_encoding, plan_run
from pipeline.settings import PipelineSettings
from pipeline.summary import RunSummary, latent_stats, summarise
from pipeline.text.run import run_text_stage, text_identity

log = logging.getLogger(__name__)

__all__ = ["run_pipeline"]


def run_pipeline(settings: PipelineSettings) -> RunSummary:
    """Encode every new input under `settings` into Parquet latent shards, and with a text encoder
    embed the captions of every unit lacking them; return the summary."""
    start, driver_cpu = time.perf_counter(), time.process_time()
    model = ModelCard.read(settings.encoder.source, settings.encoder.model_id)  # fails on a bad one
    if settings.text.encoder:
        text_identity(settings.text)  # a bad text encoder fails here, not after the video
    plan = plan_run(settings, model.model_id)
    log.info("%d units to process, %d already done", len(plan.units), plan.skipped)
    gpus = start_ray(settings) if plan.units else 0.0
    encoding = plan_encoding(settings, model, gpus)
    if plan.units:
        check_one_precision(settings.output, plan.finished.values(), encoding.precision)
    committer = UnitCommitter(
        settings.output,
        settings.storage,
        plan.units,
        encoding.settings_hash,
        encoding.precision.name,
    )
    execution = Execution()
    if plan.units:
        execution = execute(settings, plan.units, encoding, gpus, committer, start)
    new_markers = committer.finish()
    finished = {**plan.finished, **{m.unit_id: m for m in new_markers}}
    if new_markers:
        # parts of a write retried with other rows: committed units list the kept ones
        remove_orphans(settings.output, finished, settings.storage)
        write_index(settings.output, finished, settings.storage)
    # the text stage reads committed latent parts only: the same step adds text to old units
    text = run_text_stage(settings, finished, start_ray) if settings.text.encoder else None
    seconds, driver_cpu_s = time.perf_counter() - start, time.process_time() - driver_cpu
    summary = summarise(settings.output, plan, new_markers, execution, seconds, driver_cpu_s)
    summary.text = text
    stats = latent_stats(
        [*plan.finished.values(), *new_markers], model.model_id, settings.encoder.latent_kind
    )
    write_json(stats_uri(settings.output), stats.model_dump(mode="json"), settings.storage)
    write_json(summary_uri(settings.output), summary.model_dump(mode="json"), settings.storage)
    log.info("pipeline done: %s", summary.table())
    return summary
