"""AlexNet (Krizhevsky et al. 2012) exactly as upstream Caffe's
models/bvlc_alexnet/train_val.prototxt: the two-GPU grouping of conv2, conv4
and conv5 (group 2), LRN after conv1 and conv2 (before pooling), dropout 0.5
on fc6 and fc7, Gaussian fillers (std 0.01; 0.005 for fc6 and fc7), bias 0.1
on conv2, conv4, conv5, fc6, fc7, and the lr_mult/decay_mult of every layer.
tests/test_nets.py compares the body with upstream's file layer by layer.

Input size (Architecture.at_input_size; TINY: Tiny ImageNet's 56x56 crops of
64x64 images): only conv1's stride depends on it. At ImageNet's 227 the
paper's stride 4 gives Caffe's maps 55, 27, 13, 13, 13, 6 (conv1, pool1,
conv2, conv3-5, pool5). At 56 stride 4 gives 12, 6, 6, 3, 1: pool5 would be
a single position and fc6 would see no spatial layout at all. Stride 2 gives
23, 11, 11, 5, 2 (tests/test_nets.py checks them with pycaffe); the
stride-1 alternative (46, 23, 23, 11, 5) costs about four times the
multiply-adds, as much as the full-size net, which a CPU cannot train in
the budget. Everything else (kernels, LRN, groups, dropout, fillers, lr and
decay multipliers) is the paper's. fc6 then has 256 x 2 x 2 inputs instead
of 256 x 6 x 6: 24.1 M parameters at 200 classes against 61.0 M at 1000.
"""
from .layers import conv, constant, dropout_classifier, gaussian, lrn, max_pool, relu
from .variants import (IMAGENET_DATA, IMAGENET_FILES, IMAGENET_SEMI_DATA, Architecture,
                       tiny_imagenet)


# crops below this are small-image data sets (Tiny ImageNet's 56): conv1 stride 2
SMALL_INPUT = 160


def resolution(input_size):
    """The body's options at this input size: conv1's stride (see above)."""
    return {"conv1_stride": 4 if input_size >= SMALL_INPUT else 2}


def body(n, num_classes=1000, conv1_stride=4):
    n.conv1 = conv(n.data, 96, 11, gaussian(0.01), constant(0), stride=conv1_stride)
    n.relu1 = relu(n.conv1)
    n.norm1 = lrn(n.relu1)
    n.pool1 = max_pool(n.norm1, 3, 2)
    n.conv2 = conv(n.pool1, 256, 5, gaussian(0.01), constant(0.1), pad=2, group=2)
    n.relu2 = relu(n.conv2)
    n.norm2 = lrn(n.relu2)
    n.pool2 = max_pool(n.norm2, 3, 2)
    n.conv3 = conv(n.pool2, 384, 3, gaussian(0.01), constant(0), pad=1)
    n.relu3 = relu(n.conv3)
    n.conv4 = conv(n.relu3, 384, 3, gaussian(0.01), constant(0.1), pad=1, group=2)
    n.relu4 = relu(n.conv4)
    n.conv5 = conv(n.relu4, 256, 3, gaussian(0.01), constant(0.1), pad=1, group=2)
    n.relu5 = relu(n.conv5)
    n.pool5 = max_pool(n.relu5, 3, 2)
    return dropout_classifier(n, n.pool5, num_classes,
                              hidden_fillers=(gaussian(0.005), constant(0.1)),
                              score_fillers=(gaussian(0.01), constant(0)))


ARCH = Architecture(
    key="alexnet",
    name="AlexNet",
    body=body,
    score="fc8",
    num_classes=1000,
    deploy_shape=(10, 3, 227, 227),
    accuracy_top_k=(1, 5),
    data=IMAGENET_DATA.with_crop(227),
    semi_data=IMAGENET_SEMI_DATA.with_crop(227),
    files=IMAGENET_FILES,
    about=("AlexNet as upstream Caffe's models/bvlc_alexnet (227x227 crops of\n"
           "256x256 images). Data: tools/make_imagenet_lmdb.py -> data/imagenet/."),
    resolution=resolution,
)
TINY = tiny_imagenet(ARCH, about=(
    "AlexNet for Tiny ImageNet-200: 56x56 crops of its 64x64 images, 200 classes,\n"
    "conv1 stride 2 instead of 4 (python/gencaffe/nets/alexnet.py says why); otherwise\n"
    "upstream's bvlc_alexnet. Data: tools/make_imagenet_lmdb.py tiny-imagenet-200\n"
    "--out-dir data/tiny_imagenet."))
