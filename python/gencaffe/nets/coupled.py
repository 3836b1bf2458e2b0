"""Coupled recognition/generation nets (Flach, Shekhovtsov & Fikar 2017, Sec.
2.3 and 3): one sigmoid net read as a pair of deep conditional independent
models, the forward (recognition) model p(x^d | x^0) and the reverse
(generator) model q(x^0 | x^d), in one train_val prototxt.

The pair shares its parameters (Eq. 20: V^{k-1} = (W^k)^T for the weights;
biases on the same units are the same). The reverse net is the forward net
run backwards, each layer by the Caffe layer that applies the transposed
weights of its forward twin, on the same blob (`param { name: ... }`):

    forward layer k                 reverse layer (x^k -> x^{k-1})
    InnerProduct  W_k (n_k x n_{k-1})   InnerProduct transpose: true, W_k
    Convolution   W_k (C_k x C_{k-1} x k x k, stride s)
                                        Deconvolution (same kernel, stride), W_k
    class layer (InnerProduct W_d) fed the one-hot class y (Eq. 21):
                                        Embed(y), weight W_d: row y of W_d is
                                        W_d^T onehot(y), no one-hot needed

Biases. Eq. 20 cancels the bias terms when the reverse conditional
q(x^k | x^{k+1}) has the bias of the forward conditional p(x^k | x^{k-1}):
both are the bias of the units x^k. (The paper prints "b^k = a^{k-1}"; with
its own indexing of (20), <x^k, b^k> in the numerator cancels <x^k, a^k> in
the denominator, so we read it as a^k = b^k: one bias per layer of units,
used in both directions.) So the reverse layer that computes x^{k-1} shares
the bias of forward layer k-1; the pixel layer x^0 has no forward bias and
gets its own (`pixel_b`); the class layer's bias b_d is used by the forward
model only. Where x^{k-1} is a convolution map but the reverse layer an
InnerProduct (the first dense layer above the convolutions), the
InnerProduct has no bias, a Reshape restores the map and a Bias layer adds
the convolution's per-channel bias.

Units. Every hidden unit is a Bernoulli variable whose mean-field
probability is a Sigmoid (Eq. 7, 14: sigmoid for 0/1 units); the class layer
is a softmax (SoftmaxWithLoss); the reverse pixel layer gives logits to
SigmoidCrossEntropyLoss against the binarised image (log q(x^0 | .)).

Objectives (train_val variants):
    disc      log p(x^d | x^0): the forward net only (the discriminative baseline)
    eq21      log p(x^d | x^0) + log q(x^0 | x^d), the reverse net fed the class
    eq22      log p(x^d | x^0) + log q(x^0 | x^{d-1}), x^{d-1} a BernoulliSample
              of the forward net's layer d-1 (no gradient through the sample)
    eq21_sum, eq22_sum   the same two with another weight on the reverse term
The reverse loss "rev_loss" is logged as its mean per pixel and image
(normalization VALID: the scale of the paper's "0.23" and "0.14"). In eq21 /
eq22 it enters the objective with loss_weight 1 -- cross-entropy + mean
per-pixel binary cross-entropy, which is what Keras's binary_crossentropy
(the paper used Keras) optimises and logs; in the _sum variants with
loss_weight = the pixel count, i.e. log q summed over the pixels, the
equations as printed. results/coupled_mnist.md measures both on the dense
net.

Binarised pixels (Sec. 2.2: every variable x^0 ... x^d is binary; the paper
does not say how MNIST was binarised): the Data layer scales pixels to
[0, 1] and a BernoulliSample layer draws a fresh binary image every time an
image passes (train and test), each grey level read as the probability that
the pixel is on; `binarize="threshold"` uses Caffe's Threshold at 0.5
instead. The forward net and the reverse loss see the same binary image.

Deploy nets for the sampling tool (python/coupled_sample.py):
    deploy_forward   Input "image" -> forward net -> Softmax "prob"
    deploy_reverse   Input "label" -> Embed -> ... reverse net -> Sigmoid
                     "pixel_prob"; every hidden reverse layer ends in a
                     Sigmoid, where the tool may put a sample instead
Layer names are the train_val nets', so a trained caffemodel loads by name.

Shapes: the map sizes below are valid-convolution arithmetic, needed for the
Reshape and for the check that each Deconvolution gives its forward twin's
input size back exactly; tests/test_coupled_nets.py compares them with the
shapes Caffe computes.
"""
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple, Union

from .layers import DataSpec, test_data_layer, train_data

COUPLED_VARIANTS = ("disc", "eq21", "eq22", "eq21_sum", "eq22_sum", "deploy_forward",
                    "deploy_reverse")
TRAIN_VARIANTS = ("disc", "eq21", "eq22", "eq21_sum", "eq22_sum")
DEPLOY_VARIANTS = ("deploy_forward", "deploy_reverse")
BINARIZE = ("sample", "threshold")
VARIANT_TITLES = {
    "disc": ("disc: the forward (recognition) net alone, SoftmaxWithLoss: log p(x^d | x^0),\n"
             "the discriminative baseline."),
    "eq21": ("eq21: Eq. 21, log p(x^d | x^0) + log q(x^0 | x^d): the reverse net is fed the\n"
             "class (Embed on the class layer's weights = W_d^T onehot(label)). The reverse\n"
             "loss enters as its mean per pixel (loss_weight 1), as Keras's\n"
             "binary_crossentropy."),
    "eq22": ("eq22: Eq. 22, log p(x^d | x^0) + log q(x^0 | x^{d-1}): the reverse net is fed\n"
             "x^{d-1} sampled (BernoulliSample, no gradient) from the forward net. The\n"
             "reverse loss enters as its mean per pixel (loss_weight 1), as Keras's\n"
             "binary_crossentropy."),
    "eq21_sum": ("eq21_sum: Eq. 21 as printed, log p(x^d | x^0) + log q(x^0 | x^d) with\n"
                 "log q summed over the pixels (loss_weight = the pixel count on the\n"
                 "logged per-pixel mean); the reverse net is fed the class as in eq21."),
    "eq22_sum": ("eq22_sum: Eq. 22 as printed, log p(x^d | x^0) + log q(x^0 | x^{d-1}) with\n"
                 "log q summed over the pixels (loss_weight = the pixel count on the\n"
                 "logged per-pixel mean); x^{d-1} sampled as in eq22."),
    "deploy_forward": ("deploy_forward: Input \"image\" (binary pixels) -> forward net -> Softmax\n"
                       "\"prob\"; the sampling tool classifies its samples with it."),
    "deploy_reverse": ("deploy_reverse: Input \"label\" -> reverse net -> Sigmoid \"pixel_prob\";\n"
                       "each hidden reverse layer ends in a Sigmoid (mean-field probabilities),\n"
                       "where python/coupled_sample.py may put a sample instead."),
}
# Pixels scaled to [0, 1] (255 -> 1), read as Bernoulli probabilities.
PIXEL_SCALE = 1.0 / 255
THRESHOLD = 0.5
# Keras's glorot_uniform (the paper used Keras; it names no initialisation)
# is Caffe's xavier filler with variance_norm AVERAGE: U(+-sqrt(6/(fan_in +
# fan_out))); biases zero, as Keras's default.
GLOROT = {"type": "xavier", "variance_norm": 2}   # FillerParameter.AVERAGE = 2
ZERO = {"type": "constant", "value": 0}

@dataclass(frozen=True)
class Dense:
    num_output: int


@dataclass(frozen=True)
class Conv:
    """(window, stride, kernels), the paper's triplets; valid convolution."""
    kernel: int
    stride: int
    num_output: int


Layer = Union[Dense, Conv]


@dataclass(frozen=True)
class CoupledArchitecture:
    key: str                         # models/<key>/
    name: str                        # the net's name: field
    layers: Tuple[Layer, ...]        # forward layers 1..d; the last one is the class layer
    input_shape: Tuple[int, int, int]
    data: DataSpec                   # the committed nets' data
    about: str                       # header lines
    files: Dict[str, str] = field(default_factory=lambda: {
        v: ("train_val_%s.prototxt" % v if v in TRAIN_VARIANTS else "%s.prototxt" % v)
        for v in COUPLED_VARIANTS})

    @property
    def num_classes(self):
        return self.layers[-1].num_output

    @property
    def depth(self):
        return len(self.layers)


@dataclass(frozen=True)
class CoupledOptions:
    data: Optional[DataSpec] = None          # None: the architecture's
    binarize: str = "sample"                 # "sample" (Bernoulli) or "threshold" (0.5)


def _caffe():
    import caffe
    from caffe import layers as L
    from caffe import params as P
    return caffe, L, P


# ------------------------------------------------------------------ shapes

def layer_names(arch: CoupledArchitecture):
    """Forward layer names: conv<k> for convolutions, ip<k> for dense layers."""
    return ["%s%d" % ("conv" if isinstance(layer, Conv) else "ip", k)
            for k, layer in enumerate(arch.layers, start=1)]


def unit_shapes(arch: CoupledArchitecture):
    """Shapes of x^0 .. x^d (without the batch axis): (C, H, W) for maps,
    (n,) for dense layers. Raises ValueError where a Deconvolution could not
    give its forward twin's input size back (or a convolution follows a
    dense layer)."""
    shapes = [tuple(arch.input_shape)]
    names = layer_names(arch)
    for name, layer in zip(names, arch.layers):
        previous = shapes[-1]
        if isinstance(layer, Dense):
            shapes.append((layer.num_output,))
            continue
        if len(previous) != 3:
            raise ValueError("%s: a convolution after a dense layer is not supported" % name)
        channels, height, width = previous
        for size in (height, width):
            if size < layer.kernel or (size - layer.kernel) % layer.stride:
                raise ValueError(
                    "%s: input size %d, window %d, stride %d: (size - window) must be a "
                    "non-negative multiple of the stride, or the mirroring Deconvolution "
                    "cannot give the %dx%d map back" % (name, size, layer.kernel, layer.stride,
                                                        height, width))
        out = lambda size: (size - layer.kernel) // layer.stride + 1
        shapes.append((layer.num_output, out(height), out(width)))
    return shapes


def flat_units(arch: CoupledArchitecture, k: int) -> bool:
    """Whether x^k is a vector of units (dense layer, or the image of a net
    whose first layer is dense) rather than a convolution map."""
    if k == 0:
        return isinstance(arch.layers[0], Dense)
    return isinstance(arch.layers[k - 1], Dense)


def bias_name(arch: CoupledArchitecture, k: int) -> str:
    """The name of the bias blob of the units x^k (k < d): forward layer k's
    bias, or for the pixels (k = 0) the reverse model's own."""
    return "pixel_b" if k == 0 else "%s_b" % layer_names(arch)[k - 1]


def weight_name(arch: CoupledArchitecture, k: int) -> str:
    return "%s_w" % layer_names(arch)[k - 1]


def reverse_loss_weight(arch: CoupledArchitecture, variant: str) -> float:
    """loss_weight of the per-pixel reverse loss: 1 (eq21, eq22: the mean per
    pixel enters the objective) or the pixel count (eq21_sum, eq22_sum: the
    sum over pixels, log q of the equation)."""
    if not variant.endswith("_sum"):
        return 1.0
    channels, height, width = arch.input_shape
    return float(channels * height * width)


# ------------------------------------------------------------------ the nets

def forward_net(n, arch: CoupledArchitecture, bottom):
    """Forward layers 1..d on `bottom`; sigmoid on 1..d-1, class scores at d.
    Returns the class-score top."""
    caffe, L, P = _caffe()
    names = layer_names(arch)
    top = bottom
    for k, (name, layer) in enumerate(zip(names, arch.layers), start=1):
        params = [dict(name=weight_name(arch, k)), dict(name="%s_b" % name)]
        if isinstance(layer, Conv):
            top = L.Convolution(top, param=params, convolution_param=dict(
                num_output=layer.num_output, kernel_size=layer.kernel, stride=layer.stride,
                weight_filler=GLOROT, bias_filler=ZERO))
        else:
            top = L.InnerProduct(top, param=params, inner_product_param=dict(
                num_output=layer.num_output, weight_filler=GLOROT, bias_filler=ZERO))
        n[name] = top
        if k < arch.depth:
            n["%s_sig" % name] = L.Sigmoid(top, in_place=True)
    return top


def reverse_layer(n, arch: CoupledArchitecture, k: int, bottom, shapes):
    """The reverse layer mirroring forward layer k (k < d): x^k -> x^{k-1}
    pre-activations (Sigmoid added by the caller). Returns the top."""
    caffe, L, P = _caffe()
    name = "rev_%s" % layer_names(arch)[k - 1]
    layer = arch.layers[k - 1]
    target = shapes[k - 1]
    weight = dict(name=weight_name(arch, k))
    bias = dict(name=bias_name(arch, k - 1))
    # shared blobs take the owner's values; only the pixel bias is filled here
    own_bias = dict(bias_filler=ZERO) if k == 1 else {}
    if isinstance(layer, Conv):
        top = L.Deconvolution(bottom, param=[weight, bias], convolution_param=dict(
            num_output=target[0], kernel_size=layer.kernel, stride=layer.stride, **own_bias))
        n[name] = top
        return top
    if flat_units(arch, k - 1):
        count = 1
        for size in target:
            count *= size
        top = L.InnerProduct(bottom, param=[weight, bias], inner_product_param=dict(
            num_output=count, transpose=True, **own_bias))
        n[name] = top
        return top
    count = target[0] * target[1] * target[2]
    n[name] = L.InnerProduct(bottom, param=[weight], inner_product_param=dict(
        num_output=count, transpose=True, bias_term=False))
    n["%s_map" % name] = L.Reshape(n[name], reshape_param=dict(shape=dict(
        dim=[0] + list(target))))
    n["%s_bias" % name] = L.Bias(n["%s_map" % name], param=[bias], in_place=True,
                                 bias_param=dict(axis=1, num_axes=1))
    return n["%s_map" % name]


def reverse_net(n, arch: CoupledArchitecture, top_k: int, bottom):
    """Reverse layers top_k .. 1 from `bottom` (x^{top_k}); a Sigmoid after
    each but the pixel layer. Returns the pixel logits top."""
    caffe, L, P = _caffe()
    shapes = unit_shapes(arch)
    top = bottom
    for k in range(top_k, 0, -1):
        top = reverse_layer(n, arch, k, top, shapes)
        if k > 1:
            n["rev_%s_sig" % layer_names(arch)[k - 1]] = L.Sigmoid(top, in_place=True)
    return top


def class_embedding(n, arch: CoupledArchitecture, label):
    """x^{d-1} given the class (Eq. 21): Embed(label) on the class layer's
    weight blob W_d (num_classes x n_{d-1}, the InnerProduct's own shape), so
    that its output is W_d^T onehot(label) + b_{d-1}; then Sigmoid."""
    caffe, L, P = _caffe()
    d = arch.depth
    if not flat_units(arch, d - 1):
        raise ValueError("the layer below the class layer must be dense")
    name = "rev_%s" % layer_names(arch)[d - 1]
    n[name] = L.Embed(label, param=[dict(name=weight_name(arch, d)),
                                    dict(name=bias_name(arch, d - 1))],
                      embed_param=dict(input_dim=arch.num_classes,
                                       num_output=unit_shapes(arch)[d - 1][0],
                                       bias_term=True))
    n["%s_sig" % name] = L.Sigmoid(n[name], in_place=True)
    return n[name]


def binarized(n, options: CoupledOptions):
    caffe, L, P = _caffe()
    if options.binarize == "sample":
        n.image = L.BernoulliSample(n.data, name="binarize")
    elif options.binarize == "threshold":
        n.image = L.Threshold(n.data, name="binarize", threshold_param=dict(threshold=THRESHOLD))
    else:
        raise ValueError("binarize must be one of %s, got %r" % (BINARIZE, options.binarize))
    return n.image


def build(arch: CoupledArchitecture, variant: str, options: CoupledOptions = CoupledOptions()):
    """The NetParameter of one variant."""
    caffe, L, P = _caffe()
    if variant not in COUPLED_VARIANTS:
        raise ValueError("unknown variant %r (one of %s)"
                         % (variant, ", ".join(COUPLED_VARIANTS)))
    n = caffe.NetSpec()
    d = arch.depth
    if variant == "deploy_forward":
        n.image = L.Input(input_param=dict(shape=dict(dim=[1] + list(arch.input_shape))))
        score = forward_net(n, arch, n.image)
        n.prob = L.Softmax(score)
        net = n.to_proto()
        net.name = "%s_forward" % arch.name
        return net
    if variant == "deploy_reverse":
        n.label = L.Input(input_param=dict(shape=dict(dim=[arch.num_classes])))
        top = reverse_net(n, arch, d - 1, class_embedding(n, arch, n.label))
        n.pixel_prob = L.Sigmoid(top)
        net = n.to_proto()
        net.name = "%s_reverse" % arch.name
        return net

    data = options.data or arch.data
    train_data(n, data)
    image = binarized(n, options)
    score = forward_net(n, arch, image)
    # accuracy in both phases: TRAIN logs it for each displayed batch (training curves)
    n.accuracy = L.Accuracy(score, n.label)
    n.loss = L.SoftmaxWithLoss(score, n.label)
    if variant != "disc":
        if variant.startswith("eq21"):
            start = class_embedding(n, arch, n.label)
        else:
            below = layer_names(arch)[d - 2]
            n["sample_%s" % below] = L.BernoulliSample(n[below], propagate_down=[False])
            start = n["sample_%s" % below]
        logits = reverse_net(n, arch, d - 1, start)
        n.rev_loss = L.SigmoidCrossEntropyLoss(
            logits, image, loss_weight=reverse_loss_weight(arch, variant),
            loss_param=dict(normalization=P.Loss.VALID), propagate_down=[True, False])
    net = n.to_proto()
    # the TEST Data layer goes right after the TRAIN one
    layers = list(net.layer)
    layers.insert(1, test_data_layer(data))
    del net.layer[:]
    net.layer.extend(layers)
    net.name = "%s_%s" % (arch.name, variant.upper())
    return net


def header(arch: CoupledArchitecture, variant: str, generated_by: str,
           options: CoupledOptions = CoupledOptions()) -> str:
    lines = ["Generated by %s: do not edit (tests/test_nets.py regenerates" % generated_by,
             "and compares). Definition: python/gencaffe/nets/%s.py and coupled.py." % arch.key]
    lines += arch.about.splitlines()
    lines += VARIANT_TITLES[variant].splitlines()
    if variant in TRAIN_VARIANTS:
        lines.append("Pixels: %s." % ("a fresh Bernoulli sample of pixel/255 on every pass"
                                      if options.binarize == "sample"
                                      else "pixel/255 > %g" % THRESHOLD))
    return "".join("# %s\n" % line if line else "#\n" for line in lines)


def prototxt(arch: CoupledArchitecture, variant: str, options: CoupledOptions = CoupledOptions(),
             generated_by="tools/make_nets.py") -> str:
    from google.protobuf import text_format
    from .variants import WHOLE_FLOAT
    text = text_format.MessageToString(build(arch, variant, options))
    text = WHOLE_FLOAT.sub(r"\1", text)
    return header(arch, variant, generated_by, options) + text


def with_data(arch: CoupledArchitecture, train_source=None, test_source=None) -> DataSpec:
    return arch.data.with_sources(train_source=train_source, test_source=test_source)


def committed_nets(repo, architectures):
    """{path under repo/models: text} of every committed variant of `architectures`."""
    import os
    return {os.path.join(repo, "models", arch.key, name): prototxt(arch, variant)
            for arch in architectures for variant, name in arch.files.items()}


__all__ = ["COUPLED_VARIANTS", "DEPLOY_VARIANTS", "TRAIN_VARIANTS", "CoupledArchitecture",
           "CoupledOptions", "Conv", "Dense", "build", "committed_nets", "prototxt",
           "unit_shapes", "layer_names"]
