"""The network file contract, in numpy only: the file format (read, write, validate), the bit-exact
integer reference model, the N-hot code, the quantizer, activity and reconstruction metrics, NIR
conversion, data sets and random networks for tests.

This package is the only thing the training side (:mod:`hone.training`) and the hardware side
(:mod:`hone.rtl` and above) share. It imports nothing from Keras, TensorFlow, JAX, Amaranth, cocotb
or pyserial (an import-linter contract and a test in a fresh interpreter hold it to that).
"""
