"""`python -m serve`: start a local Ray cluster and run the service until interrupted."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading

__all__ = ["main"]

logger = logging.getLogger("serve")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m serve",
        description="Run the WF-VAE latent service locally. Every other setting is a "
        "WFVAE_SERVE_* environment variable (see serve/settings.py).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="HTTP listen address")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs for the local Ray cluster")
    parser.add_argument("--app-name", default="wfvae", help="Serve application name")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # advertise loopback only

    import ray
    from ray import serve

    from .app import build_app
    from .settings import ServeSettings

    settings = ServeSettings()  # from WFVAE_SERVE_* variables; invalid ones fail here, clearly
    ray.init(
        num_cpus=args.num_cpus,
        include_dashboard=False,
        runtime_env={"env_vars": {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}},
    )
    serve.start(http_options={"host": args.host, "port": args.port})
    serve.run(build_app(settings), name=args.app_name, route_prefix="/")
    logger.info("serving on http://%s:%d (Ctrl-C stops)", args.host, args.port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
