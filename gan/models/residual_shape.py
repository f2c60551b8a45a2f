"""The residual networks' shape (``model.architecture: residual``): read by the builders in
``gan.models.residual`` and by the FLOP and parameter counts in ``gan.scaling``, which must
not import Keras (``plan`` runs them on a login node in a fraction of a second)."""

EXPANSION = 2      # the inverted bottleneck's widening
TRANSITION = 3     # the kernel of the layers between stages (and of G's image, D's stem)
BLOCKS = 2         # residual blocks per stage
