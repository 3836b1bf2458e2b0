"""LeNet for MNIST, as upstream Caffe's examples/mnist/lenet_train_test.prototxt
(Dai, Lu & Wu 2016 Sec. 5.1: "the experiment settings are identical to [11]",
Caffe): two 5x5 convolutions (20, 50 filters) with 2x2 max pooling, a
500-unit ReLU layer and 10 class scores, Xavier-initialised.
"""
from dataclasses import replace

from .layers import LENET_PARAMS, DataSpec, conv, inner_product, max_pool, relu
from .variants import Architecture

MNIST_DATA = DataSpec(train_source="data/mnist/mnist_train_lmdb",
                      test_source="data/mnist/mnist_test_lmdb",
                      train_batch=64, test_batch=100, scale=0.00390625)
XAVIER = {"type": "xavier"}
CONSTANT = {"type": "constant"}   # Caffe's LeNet gives no value: 0


def body(n, num_classes=10):
    n.conv1 = conv(n.data, 20, 5, XAVIER, CONSTANT, stride=1, params=LENET_PARAMS)
    n.pool1 = max_pool(n.conv1, 2, 2)
    n.conv2 = conv(n.pool1, 50, 5, XAVIER, CONSTANT, stride=1, params=LENET_PARAMS)
    n.pool2 = max_pool(n.conv2, 2, 2)
    n.ip1 = inner_product(n.pool2, 500, XAVIER, CONSTANT, params=LENET_PARAMS)
    n.relu1 = relu(n.ip1)
    n.ip2 = inner_product(n.relu1, num_classes, XAVIER, CONSTANT, params=LENET_PARAMS)
    return n.ip2


ARCH = Architecture(
    key="lenet",
    name="LeNet",
    body=body,
    score="ip2",
    num_classes=10,
    deploy_shape=(1, 1, 28, 28),
    accuracy_top_k=(1,),
    data=MNIST_DATA,
    semi_data=replace(MNIST_DATA, train_source="data/mnist/semi/labelled_lmdb",
                      unlabelled_source="data/mnist/semi/unlabelled_lmdb"),
    files={"dg": "lenet_dg.prototxt", "gg": "lenet_gg.prototxt",
           "semi_gg": "lenet_semi_gg.prototxt",
           "semi_dg": "lenet_semi_dg.prototxt", "deploy": "lenet_deploy.prototxt"},
    about=("Caffe's LeNet for MNIST (upstream examples/mnist/lenet_train_test.prototxt);\n"
           "data: tools/make_mnist_lmdb.py. Deploy input is pixel/256 (the Data\n"
           "layer's scale 0.00390625)."),
)
