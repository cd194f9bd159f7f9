"""One local Ray Serve instance for all of tests/serve, on a free loopback port, with the demo
models: the main app at ``/`` (batching on) and a tight one at ``/tight`` (batch 1, one request
in the replica, one waiting) for the queue-bound test.  Stopped when the session ends."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray.serve", reason="needs the serve extra (ray[serve])")
pytest.importorskip("multipart", reason="needs the serve extra (python-multipart)")
requests = pytest.importorskip("requests")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.png"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def server():
    """``{"url": main app, "tight": tight app}``."""
    from blip_apps.serve import server as serve_server
    from blip_apps.serve.app import ServeOptions, default_models

    port = free_port()
    try:
        url = serve_server.start(
            ServeOptions(models=default_models("all"), max_batch_size=8, max_ongoing_requests=16),
            port=port,
            num_cpus=2,
        )
        tight = serve_server.start(
            ServeOptions(
                models=default_models("caption"),
                max_batch_size=1,
                max_ongoing_requests=1,
                max_queued_requests=1,
                hold_s=1.0,  # each batch holds the one replica a second: queue tests don't race
            ),
            port=port,
            name="tight",
            route_prefix="/tight",
        )
        assert requests.get(f"{url}/health", timeout=30).status_code == 200
        yield {"url": url, "tight": tight}
    finally:
        serve_server.stop()


@pytest.fixture(scope="session")
def library():
    """The library's own task objects over the same demo models (the reference answers)."""
    from blip_apps.demo import model_dir
    from blip_apps.pipeline import Captioner, Matcher, QuestionAnswerer

    return {
        "caption": Captioner(model_dir("caption"), "torch"),
        "vqa": QuestionAnswerer(model_dir("vqa"), "torch"),
        "retrieval": Matcher(model_dir("retrieval"), "torch"),
    }


def pixels(task_object, path: Path) -> np.ndarray:
    """``(1, 3, H, W)`` pixels of the image file ``path``, as the library loads a file."""
    from blip_core.image_processing import load_image

    out = task_object.processor.image_processor([load_image(path)], return_tensors="np")
    return out["pixel_values"]


def upload(path: Path, **fields):
    """``requests`` ``files=`` for a multipart form with ``image`` = the file at ``path``."""
    parts = [("image", (path.name, path.read_bytes(), "image/png"))]
    for name, value in fields.items():
        for v in value if isinstance(value, list) else [value]:
            parts.append((name, (None, str(v))))
    return parts
