"""The pieces every net of ours is built from, as pycaffe NetSpec calls: data
layers, the loss heads of the three approaches (DG, GG, semi-supervised GG) and
the deploy ends. The architectures (lenet.py, alexnet.py, zf.py) give the body
between them; variants.py puts the pieces together.

Nothing here does arithmetic on shapes: Caffe does that when it loads a net.
"""
from dataclasses import dataclass, replace
from typing import Optional, Sequence, Tuple


def _caffe():
    # late import: only needed when a net is generated
    import caffe
    from caffe import params as P
    from caffe import layers as L
    return caffe, L, P


@dataclass(frozen=True)
class DataSpec:
    """Where a train_val net reads its data and how Caffe transforms it.

    Paths are written into the prototxt as given (relative paths are resolved
    by Caffe against its working directory).
    """
    train_source: str
    test_source: str
    train_batch: int
    test_batch: int
    backend: str = "LMDB"
    scale: Optional[float] = None
    crop_size: Optional[int] = None
    mean_file: Optional[str] = None
    mirror: bool = False              # train phase only; test never mirrors
    # Semi-supervised mixed batches (the semi-supervised variant only): the
    # labelled examples come from train_source (train_batch per batch), the
    # unlabelled ones, labelled with the loss layer's unlabelled marker,
    # from unlabelled_source (unlabelled_batch per batch).
    unlabelled_source: Optional[str] = None
    unlabelled_batch: int = 0
    # Benchmarks: DummyData instead of Data (no LMDB; Gaussian images, labels
    # 0), one layer for both phases; the sources are then unused.
    dummy: bool = False

    def with_crop(self, crop_size):
        return replace(self, crop_size=crop_size)

    def with_sources(self, train_source=None, test_source=None, mean_file=None,
                     unlabelled_source=None):
        changes = {k: v for k, v in dict(train_source=train_source, test_source=test_source,
                                          mean_file=mean_file,
                                          unlabelled_source=unlabelled_source).items()
                   if v is not None}
        return replace(self, **changes)


def transform_param(spec: DataSpec, train: bool):
    param = {}
    if spec.scale is not None:
        param["scale"] = spec.scale
    if spec.crop_size is not None:
        param["mirror"] = bool(spec.mirror and train)
        param["crop_size"] = spec.crop_size
    if spec.mean_file is not None:
        param["mean_file"] = spec.mean_file
    return param


def data_layer(spec: DataSpec, source: str, batch: int, train: bool, phase=None):
    """A Data layer (tops data, label); phase None = both phases."""
    caffe, L, P = _caffe()
    kwargs = dict(data_param=dict(source=source, batch_size=batch,
                                  backend=getattr(P.Data, spec.backend)),
                  ntop=2)
    transform = transform_param(spec, train)
    if transform:
        kwargs["transform_param"] = transform
    if phase is not None:
        kwargs["include"] = dict(phase=phase)
    return L.Data(**kwargs)


def train_data(n, spec: DataSpec, semi_supervised=False):
    """The TRAIN-phase data: n.data, n.label (one Data layer, or for mixed
    semi-supervised batches a labelled and an unlabelled one, concatenated)."""
    caffe, L, P = _caffe()
    if not (semi_supervised and spec.unlabelled_source):
        n.data, n.label = data_layer(spec, spec.train_source, spec.train_batch, True,
                                     caffe.TRAIN)
        return
    n.data_labelled, n.label_labelled = data_layer(spec, spec.train_source, spec.train_batch,
                                                   True, caffe.TRAIN)
    n.data_unlabelled, n.label_unlabelled = data_layer(spec, spec.unlabelled_source,
                                                       spec.unlabelled_batch, True, caffe.TRAIN)
    n.data = L.Concat(n.data_labelled, n.data_unlabelled, concat_param=dict(axis=0),
                      include=dict(phase=caffe.TRAIN))
    n.label = L.Concat(n.label_labelled, n.label_unlabelled, concat_param=dict(axis=0),
                       include=dict(phase=caffe.TRAIN))


def dummy_data(n, spec: DataSpec, image_shape):
    """n.data (batch x image_shape, all ones) and n.label (batch, zeros).

    Constant fillers, because Caffe's DummyData layer fills those once at
    set-up and refills every other filler on every forward pass, on the CPU:
    a Gaussian image batch of AlexNet at 256 (39.6 M numbers) took longer than
    the net's whole forward and backward pass on an H200 (results/gpu_bench.md),
    so a benchmark timed the random number generator."""
    caffe, L, P = _caffe()
    n.data, n.label = L.DummyData(
        shape=[dict(dim=[spec.train_batch] + list(image_shape)), dict(dim=[spec.train_batch])],
        data_filler=[dict(type="constant", value=1), dict(type="constant", value=0)], ntop=2)


# Layer types whose implementation Caffe picks by an `engine` field (CAFFE or
# CUDNN; DEFAULT = cuDNN in a cuDNN build), and where that field lives.
ENGINE_FIELDS = {"Convolution": "convolution_param", "Deconvolution": "convolution_param",
                 "Pooling": "pooling_param", "ReLU": "relu_param", "Sigmoid": "sigmoid_param",
                 "TanH": "tanh_param", "LRN": "lrn_param", "Softmax": "softmax_param",
                 "SoftmaxWithLoss": "softmax_param"}


def set_engine(net, engine: str):
    """Set every engine-selectable layer of NetParameter `net` to `engine`
    ("CAFFE" or "CUDNN"), e.g. to time a net with and without cuDNN."""
    for layer in net.layer:
        field = ENGINE_FIELDS.get(layer.type)
        if field:
            param = getattr(layer, field)
            param.engine = getattr(type(param), engine)
    return net


def test_data_layer(spec: DataSpec):
    """The TEST-phase Data layer as a LayerParameter named like the train one
    ("data", tops data and label), for insertion after the TRAIN data: NetSpec
    cannot give two layers one name."""
    caffe, L, P = _caffe()
    test = caffe.NetSpec()
    test.data, test.label = data_layer(spec, spec.test_source, spec.test_batch, False,
                                       caffe.TEST)
    return test.to_proto().layer[0]


# Learning-rate multipliers: weights 1, biases 2; the ImageNet models also
# exempt biases from weight decay, Caffe's LeNet says nothing of decay.
IMAGENET_PARAMS = ({"lr_mult": 1, "decay_mult": 1}, {"lr_mult": 2, "decay_mult": 0})
LENET_PARAMS = ({"lr_mult": 1}, {"lr_mult": 2})


def _optional(**fields):
    """The fields that are given (None = leave Caffe's default unwritten)."""
    return {k: v for k, v in fields.items() if v is not None}


def conv(bottom, num_output, kernel_size, weight_filler, bias_filler, stride=None, pad=None,
         group=None, params=IMAGENET_PARAMS):
    caffe, L, P = _caffe()
    cp = dict(num_output=num_output, **_optional(pad=pad, kernel_size=kernel_size,
                                                 group=group, stride=stride))
    cp.update(weight_filler=weight_filler, bias_filler=bias_filler)
    return L.Convolution(bottom, param=[dict(p) for p in params], convolution_param=cp)


def inner_product(bottom, num_output, weight_filler, bias_filler, params=IMAGENET_PARAMS):
    caffe, L, P = _caffe()
    return L.InnerProduct(bottom, param=[dict(p) for p in params],
                          inner_product_param=dict(num_output=num_output,
                                                   weight_filler=weight_filler,
                                                   bias_filler=bias_filler))


def max_pool(bottom, kernel_size, stride):
    caffe, L, P = _caffe()
    return L.Pooling(bottom, pooling_param=dict(pool=P.Pooling.MAX, kernel_size=kernel_size,
                                                stride=stride))


def relu(bottom):
    caffe, L, P = _caffe()
    return L.ReLU(bottom, in_place=True)


def dropout(bottom, ratio=0.5):
    caffe, L, P = _caffe()
    return L.Dropout(bottom, dropout_param=dict(dropout_ratio=ratio), in_place=True)


def lrn(bottom, local_size=5, alpha=1e-4, beta=0.75):
    """Caffe's LRN, ACROSS_CHANNELS (the default region)."""
    caffe, L, P = _caffe()
    return L.LRN(bottom, lrn_param=dict(local_size=local_size, alpha=alpha, beta=beta))


def gaussian(std):
    return dict(type="gaussian", std=std)


def constant(value=0):
    return dict(type="constant", value=value)


def dropout_classifier(n, bottom, num_classes, hidden_fillers, score_fillers, hidden=4096):
    """fc6-fc8 of the ImageNet nets (AlexNet, ZF): two fully connected ReLU
    layers of `hidden` units with dropout 0.5, then the class scores fc8.
    hidden_fillers / score_fillers: (weight, bias) filler pairs. Returns fc8."""
    n.fc6 = inner_product(bottom, hidden, *hidden_fillers)
    n.relu6 = relu(n.fc6)
    n.drop6 = dropout(n.relu6)
    n.fc7 = inner_product(n.drop6, hidden, *hidden_fillers)
    n.relu7 = relu(n.fc7)
    n.drop7 = dropout(n.relu7)
    n.fc8 = inner_product(n.drop7, num_classes, *score_fillers)
    return n.fc8


# ------------------------------------------------------------------ heads

def accuracy_layers(n, score, top_k=(1,)):
    """TEST-phase accuracy tops: "accuracy" (top-1), "accuracy_top5", ..."""
    caffe, L, P = _caffe()
    for k in top_k:
        name = "accuracy" if k == 1 else "accuracy_top%d" % k
        kwargs = dict(include=dict(phase=caffe.TEST))
        if k != 1:
            kwargs["accuracy_param"] = dict(top_k=k)
        n[name] = L.Accuracy(score, n.label, **kwargs)


def dg_loss(n, score):
    """DG: the usual softmax over classes."""
    caffe, L, P = _caffe()
    n.loss = L.SoftmaxWithLoss(score, n.label)


# GenerativeLoss's diagnostic tops, in the layer's order: the batch ESS
# fraction, and the within-class ESS fraction (mean, sd over classes) and the
# weight each column puts on other classes' examples (the layer's header).
GG_DIAGNOSTICS = ("ess", "ess_within", "ess_within_sd", "cross_weight")


def gg_loss(n, score, semi_supervised=False, unlabeled_weight=0.1,
            class_prior: Optional[Sequence[float]] = None):
    """GG: GenerativeLoss (softmax down the batch per class column) with its
    diagnostic tops logged at loss weight 0 (GG_DIAGNOSTICS); semi-supervised:
    Eq. 19 with lambda."""
    caffe, L, P = _caffe()
    kwargs = dict(ntop=1 + len(GG_DIAGNOSTICS), loss_weight=[1] + [0] * len(GG_DIAGNOSTICS))
    if semi_supervised:
        gp = dict(semi_supervised=True, unlabeled_weight=unlabeled_weight)
        if class_prior:
            gp["class_prior"] = list(class_prior)
        kwargs["generative_loss_param"] = gp
    tops = L.GenerativeLoss(score, n.label, **kwargs)
    n.loss = tops[0]
    for name, top in zip(GG_DIAGNOSTICS, tops[1:]):
        n[name] = top


def deploy_input(n, shape: Tuple[int, ...]):
    caffe, L, P = _caffe()
    n.data = L.Input(input_param=dict(shape=dict(dim=list(shape))))


def deploy_prob(n, score):
    caffe, L, P = _caffe()
    n.prob = L.Softmax(score)
