"""Generative Caffe's Python tools: HMC generative visualization, MNIST data,
training-log parsing. Each module has one job; none imports caffe at import time
unless it must."""
