"""The base layer: spec schema and loader, atomic files, exit codes, runtime and logging, stop
signals, image conversions and the HDF5 face-file layout.

Everything above (``gan/``, ``preprocess/`` and the orchestration in ``jobs/``) may import
these modules; they import nothing from above (``tests/test_layers.py`` checks it).
"""
