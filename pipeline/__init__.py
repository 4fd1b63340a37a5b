"""Ray Data pipelines from video shards on object storage to Parquet latent shards.

Modules (none imports Ray at import time):
    clips       decode bytes with decord and cut fixed-size clips (shared with serve)
    encoding    ClipEncoder: the model once, same-shape clip batches to latents (shared with serve)
    storage     fsspec filesystems, input globs / brace ranges / lists, atomic writes
    sources     WebDataset tars, plain video files and URI tables as streams of samples
    records     Arrow schemas, deterministic keys, latent bytes, Parquet writes
    stages      the Ray Data stage callables (read+decode, encode)
    parts       the write stage: Parquet part files from the workers, a small record each
    committer   the driver's commit: a unit's marker once all its parts are written
    progress    stage counters (progress actor, Ray metrics), stall watchdog, ETA
    manifest    output layout and per-unit markers (incremental, resumable runs)
    settings    PipelineSettings (file, env, CLI)
    run         run_pipeline: plan, execute, summarise, latent statistics
    reader      torch datasets over the written shards, for trainers
"""
