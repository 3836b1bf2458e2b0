"""AlexNet (Krizhevsky et al. 2012) exactly as upstream Caffe's
models/bvlc_alexnet/train_val.prototxt: the two-GPU grouping of conv2, conv4
and conv5 (group 2), LRN after conv1 and conv2 (before pooling), dropout 0.5
on fc6 and fc7, Gaussian fillers (std 0.01; 0.005 for fc6 and fc7), bias 0.1
on conv2, conv4, conv5, fc6, fc7, and the lr_mult/decay_mult of every layer.
tests/test_nets.py compares the body with upstream's file layer by layer.
"""
from .layers import (conv, constant, dropout, gaussian, inner_product, lrn, max_pool,
                     relu)
from .variants import IMAGENET_DATA, IMAGENET_SEMI_DATA, Architecture


def body(n, num_classes=1000):
    n.conv1 = conv(n.data, 96, 11, gaussian(0.01), constant(0), stride=4)
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
    n.fc6 = inner_product(n.pool5, 4096, gaussian(0.005), constant(0.1))
    n.relu6 = relu(n.fc6)
    n.drop6 = dropout(n.relu6)
    n.fc7 = inner_product(n.drop6, 4096, gaussian(0.005), constant(0.1))
    n.relu7 = relu(n.fc7)
    n.drop7 = dropout(n.relu7)
    n.fc8 = inner_product(n.drop7, num_classes, gaussian(0.01), constant(0))
    return n.fc8


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
    files={"dg": "train_val_dg.prototxt", "gg": "train_val_gg.prototxt",
           "semi_gg": "train_val_semi_gg.prototxt",
           "semi_dg": "train_val_semi_dg.prototxt", "deploy": "deploy.prototxt"},
    about=("AlexNet as upstream Caffe's models/bvlc_alexnet (227x227 crops of\n"
           "256x256 images). Data: tools/make_imagenet_lmdb.py -> data/imagenet/."),
)
