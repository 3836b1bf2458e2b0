"""The dense coupled net of Flach, Shekhovtsov & Fikar 2017, Sec. 3.1: "three
fully connected layers with 512, 512, 10 nodes ... Sigmoid activation was
chosen for all but the last layer, for which we used soft-max activation".

Forward: 784 binary pixels -> ip1 (512, sigmoid) -> ip2 (512, sigmoid) ->
ip3 (10, softmax). Reverse (coupled.py): class -> Embed on ip3's weights
(+ ip2's bias, sigmoid) -> ip2's weights transposed (+ ip1's bias, sigmoid)
-> ip1's weights transposed + a bias per pixel -> 784 pixel logits.
"""
from .coupled import CoupledArchitecture, Dense
from .lenet import MNIST_DATA
from dataclasses import replace

# Batch 32: the paper names no batch size; Keras's fit() default (the paper
# used Keras). Test batch 100 x 100 iterations = the 10,000 test images.
COUPLED_MNIST_DATA = replace(MNIST_DATA, train_batch=32, test_batch=100, scale=1.0 / 255)

ARCH = CoupledArchitecture(
    key="coupled_dense",
    name="CoupledDense",
    layers=(Dense(512), Dense(512), Dense(10)),
    input_shape=(1, 28, 28),
    data=COUPLED_MNIST_DATA,
    about=("Coupled dense net of Flach, Shekhovtsov & Fikar 2017, Sec. 3.1 (512-512-10,\n"
           "sigmoid, softmax); data: tools/make_mnist_lmdb.py, pixels scaled by 1/255."),
)
