"""``blip export --format savedmodel``: plain TensorFlow, without this project, gives blip_tf's ids."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig

import numpy as np
import pytest

from tests.helpers import FIXTURES

tf = pytest.importorskip("tensorflow")

# -S: no site processing, so the editable install's finder (.pth) is not active; only the venv's
# site-packages directory is put on the path, and the working directory is /tmp (-I: no cwd).
SCRIPT = """
import json, sys
sys.path.append(sys.argv[1])
try:
    import blip_core  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("the project is importable in the serving process")
import numpy as np
import tensorflow as tf
serve = tf.saved_model.load(sys.argv[2]).signatures["serving_default"]
pixels = np.load(sys.argv[3])
out = serve(pixel_values=tf.constant(pixels), max_new_tokens=tf.constant(int(sys.argv[4])),
            min_new_tokens=tf.constant(int(sys.argv[5])))
seq = out["sequences"]
assert seq.dtype == tf.int64, seq.dtype
print(json.dumps(seq.numpy().tolist()))
assert not any(m.startswith(("blip_", "torch")) for m in sys.modules), "project imported"
"""


@pytest.fixture(scope="module")
def savedmodel(tmp_path_factory):
    from blip_apps.export import export_savedmodel

    out = tmp_path_factory.mktemp("sm") / "serving"
    path = export_savedmodel(FIXTURES / "caption", out, serving_layout=True)
    assert path == out / "1" and (path / "saved_model.pb").is_file()
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    return path


@pytest.mark.parametrize("max_new, min_new", [(10, 0), (7, 5)])
def test_fresh_process_gives_blip_tf_greedy_ids(savedmodel, tmp_path, max_new, min_new):
    import blip_tf

    pixels = np.random.default_rng(3).standard_normal((3, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "pixels.npy", pixels)
    site = sysconfig.get_paths()["purelib"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", SCRIPT, site, str(savedmodel),
         str(tmp_path / "pixels.npy"), str(max_new), str(min_new)],
        cwd="/tmp", env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    got = np.array(json.loads(result.stdout.strip().splitlines()[-1]))
    model = blip_tf.BlipForConditionalGeneration.from_pretrained(FIXTURES / "caption")
    expected = np.asarray(model.generate(pixels, max_new_tokens=max_new, min_new_tokens=min_new))
    np.testing.assert_array_equal(got, expected)


def test_refuses_non_captioning_models(tmp_path):
    from blip_apps.export import ExportError, export_savedmodel

    with pytest.raises(ExportError, match="captioning"):
        export_savedmodel(FIXTURES / "vqa", tmp_path / "out")
    assert not (tmp_path / "out").exists()
