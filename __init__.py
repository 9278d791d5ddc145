"""hone: Whetstone-sharpened binary spiking networks, from Keras to an FPGA."""
