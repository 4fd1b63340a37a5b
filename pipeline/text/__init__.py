"""The optional text stage: caption embeddings beside the latents, in a folder per text encoder
(`text/<tag>/`), joined to the latent rows by `key`. Modules:
    layout      the text folder: identity, embedding and error parts, per-unit text markers
    stages      the Ray Data callables: captions from committed latent parts, the text encoder
                actors, the writes
    committer   the driver's commit: a unit's text marker once every clip has its text row
    run         run_text_stage: plan against the latent units, embed, commit, summarise
The encoder itself (no Ray): `model.text_encoder`.
"""
