"""The 8-layer coupled CNN of Flach, Shekhovtsov & Fikar 2017, Sec. 3.2:
((3,1,32), (3,1,32), (2,2,32), (3,1,64), (3,1,64), (2,2,64), (50), (10)),
"The components of the triplets denote the window size, stride and kernel
number for convolutional layers. The singletons denote the size of dense
layers. Sigmoid activation was used for all but the last layer."

So the (2,2,..) layers are convolutions with a 2x2 window and stride 2 (a
learned downsampling; the paper counts eight layers, all with weights, and
has no pooling, which would also have no transposed twin in the reverse
net). Padding is not given: we use valid convolutions (Keras's default
padding), giving maps 28 -> 26 -> 24 -> 12 -> 10 -> 8 -> 4, so that every
Deconvolution gives its twin's input size back exactly; ip7 sees 64x4x4 =
1024 inputs.
"""
from .coupled import Conv, CoupledArchitecture, Dense
from .coupled_dense import COUPLED_MNIST_DATA

ARCH = CoupledArchitecture(
    key="coupled_cnn",
    name="CoupledCNN",
    layers=(Conv(3, 1, 32), Conv(3, 1, 32), Conv(2, 2, 32), Conv(3, 1, 64), Conv(3, 1, 64),
            Conv(2, 2, 64), Dense(50), Dense(10)),
    input_shape=(1, 28, 28),
    data=COUPLED_MNIST_DATA,
    about=("Coupled 8-layer CNN of Flach, Shekhovtsov & Fikar 2017, Sec. 3.2 (valid\n"
           "convolutions, sigmoid, softmax); data: tools/make_mnist_lmdb.py, pixels/255."),
)
