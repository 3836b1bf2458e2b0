"""Data sets as Caffe reads them: MNIST LMDBs, ImageNet-style trees, splits."""
