"""HMC generative visualization: the sampler (plain NumPy), the pycaffe target
(target.py, assembled from node_spec, net_surgery, node_geometry, weights_check,
node_net and node_score), the input-size search on Caffe's own shapes (geometry,
shape_probe), labels, and the driver that writes samples and pictures."""
