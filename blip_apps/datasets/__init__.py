"""Whole datasets: caption, answer and embed folders, lists, parquet tables and ``.tar`` shards.

* :mod:`~blip_apps.datasets.inputs` — what to read (:func:`iter_items`: items with stable ids,
  broken inputs as failures);
* :mod:`~blip_apps.datasets.outputs` — JSON lines / CSV / parquet in complete-or-absent chunks,
  ``resume``, sidecar caption files;
* :mod:`~blip_apps.datasets.run` — the local engine (:func:`run_dataset`);
* :mod:`~blip_apps.datasets.ray_engine` — the same job on Ray Data (:func:`run_ray`);
* :mod:`~blip_apps.datasets.embed` — an embedding index (build, add, search);
* :mod:`~blip_apps.datasets.cli` — the ``blip`` sub-command flags and handlers;
* :mod:`~blip_apps.datasets.bench` — dataset throughput (:func:`run_benchmark`).

The pipelines themselves are :mod:`blip_apps.api`.  Importing this package imports no framework,
no pyarrow and no Ray.
"""
