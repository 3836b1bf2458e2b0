"""ZF-net ("ZeilerFergusNet (fast)" of Dai, Lu & Wu 2016, Sec. 5.1, citing
Zeiler & Fergus, "Visualizing and understanding convolutional networks", 2014).

Which layer table, and why: the journal cites Zeiler & Fergus directly, so we
follow their Fig. 3 (224x224 crops; conv1 96 7x7 stride 2; 3x3 max pooling
stride 2; contrast normalization; conv2 256 5x5 stride 2; pooling;
normalization; conv3 384, conv4 384, conv5 256, all 3x3; 3x3 max pooling
stride 2; fc6 4096, fc7 4096 with dropout 0.5; 1000-way softmax), the single-
GPU model with dense connections in layers 3-5. We read "(fast)" as the name
SPP-net (He et al. 2014) gives this model (ZF-5, after Zeiler & Fergus's
"fast", smaller model); SPP-net's ZF-5 has the same layer table.
Padding is chosen so that Caffe's shape rules give Fig. 3's map sizes exactly
(110, 55, 26, 13, 13, 13, 6; tests/test_nets.py checks them with pycaffe):
conv1 pad 1, conv3-5 pad 1, conv2 none; pooling rounds up in Caffe.
As in Fig. 3 each normalization follows the pooling. Normalization is LRN
ACROSS_CHANNELS with AlexNet's constants (size 5, alpha 1e-4, beta 0.75):
Fig. 3 normalizes "across feature maps" and gives no constants. (The public
ZF prototxt of py-faster-rcnn uses WITHIN_CHANNEL, size 3, alpha 5e-5, which
a cuDNN build of Caffe runs as cuDNN's LCN, a different operation from
Caffe's own WITHIN_CHANNEL LRN; ACROSS_CHANNELS runs as Caffe's LRN or
cuDNN's LRN, which compute the same function: the GPU checks compare the two
engines on this net.) Fillers as Zeiler & Fergus Sec. 3: "all weights
initialized to 10^-2 and biases set to 0" (Gaussian std 0.01); their
renormalization of convolution filters whose RMS exceeds 0.1 has no Caffe
equivalent and is left out. lr_mult/decay_mult as Caffe's ImageNet models.

Input size (Architecture.at_input_size; TINY: Tiny ImageNet's 56x56 crops of
64x64 images): only conv1's stride depends on it, halved as AlexNet's
(alexnet.py). At 56 the paper's stride 2 gives Caffe's maps 26, 13, 5, 2, 1
(conv1, pool1, conv2, conv3-5, pool5): conv3-5 would work on 2x2 maps and
pool5 on a single position. Stride 1 gives 52, 26, 11, 5, 2, about half of
Fig. 3's sizes throughout, and pool5 keeps a 2x2 map as AlexNet's does
(tests/test_nets.py checks them). fc6 has 256 x 2 x 2 inputs: 25.5 M
parameters at 200 classes against 62.4 M at 1000.
"""
from .layers import conv, constant, dropout_classifier, gaussian, lrn, max_pool, relu
from .variants import (IMAGENET_DATA, IMAGENET_FILES, IMAGENET_SEMI_DATA, Architecture,
                       tiny_imagenet)

W = gaussian(0.01)
B = constant(0)


# crops below this are small-image data sets (Tiny ImageNet's 56): conv1 stride 1
SMALL_INPUT = 160


def resolution(input_size):
    """The body's options at this input size: conv1's stride (see above)."""
    return {"conv1_stride": 2 if input_size >= SMALL_INPUT else 1}


def body(n, num_classes=1000, conv1_stride=2):
    n.conv1 = conv(n.data, 96, 7, W, B, stride=conv1_stride, pad=1)
    n.relu1 = relu(n.conv1)
    n.pool1 = max_pool(n.relu1, 3, 2)
    n.norm1 = lrn(n.pool1)
    n.conv2 = conv(n.norm1, 256, 5, W, B, stride=2)
    n.relu2 = relu(n.conv2)
    n.pool2 = max_pool(n.relu2, 3, 2)
    n.norm2 = lrn(n.pool2)
    n.conv3 = conv(n.norm2, 384, 3, W, B, pad=1)
    n.relu3 = relu(n.conv3)
    n.conv4 = conv(n.relu3, 384, 3, W, B, pad=1)
    n.relu4 = relu(n.conv4)
    n.conv5 = conv(n.relu4, 256, 3, W, B, pad=1)
    n.relu5 = relu(n.conv5)
    n.pool5 = max_pool(n.relu5, 3, 2)
    return dropout_classifier(n, n.pool5, num_classes, hidden_fillers=(W, B),
                              score_fillers=(W, B))


ARCH = Architecture(
    key="zf",
    name="ZF",
    body=body,
    score="fc8",
    num_classes=1000,
    deploy_shape=(10, 3, 224, 224),
    accuracy_top_k=(1, 5),
    data=IMAGENET_DATA.with_crop(224),
    semi_data=IMAGENET_SEMI_DATA.with_crop(224),
    files=IMAGENET_FILES,
    about=("ZF-net (Zeiler & Fergus 2014, Fig. 3; the journal's 'ZeilerFergusNet\n"
           "(fast)'): 224x224 crops of 256x256 images; see python/gencaffe/nets/zf.py\n"
           "for the layer table followed. Data: tools/make_imagenet_lmdb.py -> data/imagenet/."),
    resolution=resolution,
)
TINY = tiny_imagenet(ARCH, about=(
    "ZF-net for Tiny ImageNet-200: 56x56 crops of its 64x64 images, 200 classes,\n"
    "conv1 stride 1 instead of 2 (python/gencaffe/nets/zf.py says why); otherwise\n"
    "the layer table of python/gencaffe/nets/zf.py. Data: tools/make_imagenet_lmdb.py\n"
    "tiny-imagenet-200 --out-dir data/tiny_imagenet."))
