"""Conditional GANs in TensorFlow/Keras, trained data-parallel with Horovod."""
