"""The networks and what a generator is fed: the builders of each family (``builders``, named
in ``gan/families.py``), the conditions (``conditioning``), the latents (``latents``), and a
trained generator loaded from a run directory alone (``sampler``)."""
