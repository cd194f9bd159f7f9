"""Start and stop the server: a local Ray instance (``ray.init``), Ray Serve's HTTP proxy on
``host:port`` and the :func:`~blip_apps.serve.app.build_app` application.

Ray is started with ``num_cpus`` logical CPUs (the replica reserves none, so the server fits a
machine of any size) and without its dashboard.  :func:`start` returns once the models are
loaded, i.e. once ``GET /health`` answers 200.
"""

from __future__ import annotations

import os

from blip_apps.serve.app import ServeOptions


def start(
    options: ServeOptions,
    host: str = "127.0.0.1",
    port: int = 8000,
    request_timeout_s: float | None = 60.0,
    name: str = "blip",
    route_prefix: str = "/",
    num_cpus: int | None = None,
) -> str:
    """Serve ``options`` at ``http://host:port`` + ``route_prefix``; returns that URL.

    A second call in the same process adds another application (another ``name`` and
    ``route_prefix``) to the running proxy; ``host``, ``port`` and ``request_timeout_s`` of the
    first call stay.  ``request_timeout_s``: a request still unanswered after it gets 408 and
    is cancelled (``None``: no limit).
    """
    import ray
    from ray import serve

    from blip_apps.serve.app import build_app

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not ray.is_initialized():
        ray.init(
            num_cpus=num_cpus or max(1, os.cpu_count() or 1),
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    http = {"host": host, "port": port}
    if request_timeout_s:
        http["request_timeout_s"] = request_timeout_s
    serve.start(http_options=http)
    serve.run(build_app(options), name=name, route_prefix=route_prefix, blocking=False)
    prefix = "" if route_prefix == "/" else route_prefix
    return f"http://{host}:{port}{prefix}"


def stop() -> None:
    """Shut Ray Serve and the local Ray instance down (no-op when not started)."""
    import ray
    from ray import serve

    if ray.is_initialized():
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


__all__ = ["start", "stop"]
