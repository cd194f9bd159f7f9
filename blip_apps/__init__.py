"""Applications above the framework-free core (:mod:`blip_core`) and the backends.

* :mod:`blip_apps.cli` — the ``blip`` command (caption, vqa, match, search, convert);
* :mod:`blip_apps.pipeline` — load a model directory with a named backend, batch a folder of
  images with decoding overlapped, caption / answer / match / search;
* :mod:`blip_apps.backends` — :func:`~blip_apps.backends.load_backend`: a backend package's
  adapter (:class:`blip_core.adapter.Backend`) by name;
* :mod:`blip_apps.demo` — the small demo models shipped with the package, the scene generator
  they were trained on, their evaluation and the demo run;
* :mod:`blip_apps.convert` — the ``blip-convert`` command line and its numeric verification;
* the other sub-packages (dataset runs, export, serving) say what they do in their docstrings.

Importing :mod:`blip_apps` imports no framework; a backend is imported when one is asked for
by name.
"""
