"""Ray Data pipelines from video shards on object storage to Parquet latent shards.

The encoder, row keys and storage settings it shares with the service live in `model.latents`
and `model.storage`. Modules (none imports Ray at import time):
    storage     input globs / brace ranges / folders / lists, versions, atomic writes
    sources     WebDataset tars, plain video files and URI tables as streams of samples
    records     Arrow schemas, latent bytes, Parquet writes
    stages      the Ray Data stage callables (read+decode, encode)
    parts       the write stage: Parquet part files from the workers, a small record each
    committer   the driver's commit: a unit's marker once all its parts are written
    progress    stage counters (progress actor, Ray metrics), stall watchdog, ETA
    balance     decode tasks sized against the encoders; which stage held the other up
    manifest    output layout and per-unit markers (incremental, resumable runs)
    settings    PipelineSettings (file, env, CLI)
    planning    the units to run against the manifest; the run's one encoding (model, dtype, metadata)
    dataset     the Ray Data dataset of a run, streamed through the committer under the watchdog
    summary     RunSummary (summary.json) and the output's latent statistics
    run         run_pipeline: plan, execute, commit, summarise
    reader      torch datasets over the written shards, for trainers
    text        the optional text stage: caption embeddings in text/<tag>/, joined by key
"""
