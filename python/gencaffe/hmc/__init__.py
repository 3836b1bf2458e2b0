"""HMC generative visualization: the sampler (plain NumPy), the pycaffe
target, and the driver that writes samples and pictures."""
