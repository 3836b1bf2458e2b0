"""HMC generative visualization: the sampler (plain NumPy), the pycaffe
target, the input-size search on Caffe's own shapes (geometry, shape_probe),
labels, and the driver that writes samples and pictures."""
