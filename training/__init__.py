"""Whetstone training in Keras 3: spiking activations, sharpeners, N-hot output, BN folding, export.

The public names are gathered in :mod:`hone`. This package imports nothing heavy, so the hardware
side can use its Keras-free modules (``netfile``, ``integer``, ``nhot``, ``quantize``) and the
``hone`` command starts fast.
"""
