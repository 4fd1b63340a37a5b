"""WF-VAE latent service: a Ray Serve application encoding videos and decoding latents over HTTP.

Run it with `serve run serve.app:build_app`, `serve deploy serve/serve_config.yaml`, or
`python -m serve`; settings are `ServeArgs` fields, or `WFVAE_SERVE_*` environment variables.
"""

from .app import LatentServer, build_app
from .settings import ServeArgs, ServeSettings, resolve_settings

__all__ = ["LatentServer", "ServeArgs", "ServeSettings", "build_app", "resolve_settings"]
