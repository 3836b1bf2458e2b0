"""The same net in PyTorch, built from its Caffe NetParameter, for a same-device
baseline of Caffe's training speed (tools/bench_nets.py --torch).

What the papers' nets use is covered: Convolution (pad, stride, group, bias),
ReLU, LRN across channels (PyTorch's LocalResponseNorm divides alpha by the
size as Caffe does: b = a (k + alpha/n sum a^2)^-beta), Pooling MAX/AVE
(ceil_mode: Caffe rounds the output size up and drops a last window that
would start in the padding, as PyTorch's ceil_mode does), InnerProduct
(flattening its input, in_features found at the first call), Dropout,
Softmax (a deploy net's last layer); the
loss SoftmaxWithLoss (cross entropy) or GenerativeLoss (journal Eq. 15 with
the layer's default VALID normalisation: -1/n sum_i [f_{y_i}(x_i) -
log(1/n sum_k exp f_{y_i}(x_k))]). Input, Data, DummyData and Accuracy
layers are skipped: the caller feeds the input. The layers must form one
chain, as LeNet, AlexNet and ZF do; anything else is refused by name.

`layer_plan` is plain Python (a test reads it without PyTorch); `build`
needs torch.
"""
import math
from typing import List, Optional, Tuple

SKIPPED = ("Input", "Data", "DummyData", "Accuracy", "Silence")
LOSSES = ("SoftmaxWithLoss", "GenerativeLoss")


class PortError(ValueError):
    pass


def _test_only(layer) -> bool:
    return any(rule.HasField("phase") and rule.phase == 1 for rule in layer.include)


def _pair(values, single, default):
    """Caffe's kernel/pad/stride: the repeated field, or its _h/_w form."""
    if len(values) == 1:
        return (values[0], values[0])
    if len(values) == 2:
        return (values[0], values[1])
    return single if single is not None else (default, default)


def layer_plan(net_param) -> Tuple[List[Tuple[str, dict]], Optional[str]]:
    """([(kind, arguments)] in order, the loss type) of a chain net's TRAIN
    phase; kind is conv, relu, lrn, pool, linear, dropout or softmax."""
    plan, loss, top = [], None, None
    for layer in net_param.layer:
        if _test_only(layer) or layer.type in SKIPPED:
            if layer.type in ("Input", "Data", "DummyData") and not _test_only(layer):
                top = layer.top[0]
            continue
        if layer.type in LOSSES:
            loss = layer.type
            if layer.bottom[0] != top:
                raise PortError("the loss layer %s reads %s, not the chain's last top %s"
                                % (layer.name, layer.bottom[0], top))
            continue
        if top is not None and layer.bottom[0] != top:
            raise PortError("layer %s reads %s, not %s: only chain nets can be ported"
                            % (layer.name, layer.bottom[0], top))
        top = layer.top[0]
        if layer.type == "Convolution":
            p = layer.convolution_param
            plan.append(("conv", dict(
                out_channels=p.num_output, groups=p.group, bias=p.bias_term,
                kernel_size=_pair(p.kernel_size, (p.kernel_h, p.kernel_w) if p.kernel_h else
                                  None, 1),
                stride=_pair(p.stride, (p.stride_h, p.stride_w) if p.stride_h else None, 1),
                padding=_pair(p.pad, (p.pad_h, p.pad_w) if p.pad_h else None, 0))))
        elif layer.type == "ReLU":
            if layer.relu_param.negative_slope:
                raise PortError("layer %s: leaky ReLU is not ported" % layer.name)
            plan.append(("relu", {}))
        elif layer.type == "LRN":
            p = layer.lrn_param
            if p.norm_region != 0:
                raise PortError("layer %s: only LRN across channels is ported" % layer.name)
            plan.append(("lrn", dict(size=p.local_size, alpha=p.alpha, beta=p.beta, k=p.k)))
        elif layer.type == "Pooling":
            p = layer.pooling_param
            if p.pool not in (0, 1) or p.global_pooling:
                raise PortError("layer %s: only MAX and AVE pooling are ported" % layer.name)
            plan.append(("pool", dict(
                mode="max" if p.pool == 0 else "avg",
                kernel_size=(p.kernel_h, p.kernel_w) if p.kernel_h else (p.kernel_size,) * 2,
                stride=(p.stride_h, p.stride_w) if p.stride_h else (p.stride,) * 2,
                padding=(p.pad_h, p.pad_w) if p.pad_h else (p.pad,) * 2)))
        elif layer.type == "InnerProduct":
            p = layer.inner_product_param
            plan.append(("linear", dict(out_features=p.num_output, bias=p.bias_term)))
        elif layer.type == "Dropout":
            plan.append(("dropout", dict(p=layer.dropout_param.dropout_ratio)))
        elif layer.type == "Softmax":       # a deploy net's class probabilities
            plan.append(("softmax", {}))
        else:
            raise PortError("layer %s: type %s is not ported to PyTorch" % (layer.name,
                                                                            layer.type))
    return plan, loss


def build(net_param):
    """(torch.nn.Sequential, loss function(scores, labels)) of a chain net."""
    import torch
    import torch.nn as nn
    plan, loss = layer_plan(net_param)
    modules, flat = [], False
    for kind, a in plan:
        if kind == "conv":
            modules.append(nn.LazyConv2d(a["out_channels"], a["kernel_size"], a["stride"],
                                         a["padding"], groups=a["groups"], bias=a["bias"]))
        elif kind == "relu":
            modules.append(nn.ReLU(inplace=True))
        elif kind == "lrn":
            modules.append(nn.LocalResponseNorm(a["size"], a["alpha"], a["beta"], a["k"]))
        elif kind == "pool":
            cls = nn.MaxPool2d if a["mode"] == "max" else nn.AvgPool2d
            modules.append(cls(a["kernel_size"], a["stride"], a["padding"], ceil_mode=True))
        elif kind == "linear":
            if not flat:
                modules.append(nn.Flatten())
                flat = True
            modules.append(nn.LazyLinear(a["out_features"], bias=a["bias"]))
        elif kind == "dropout":
            modules.append(nn.Dropout(a["p"]))
        elif kind == "softmax":
            modules.append(nn.Softmax(dim=1))

    def generative_loss(scores, labels):
        # Eq. 15 over the batch, VALID normalisation (GenerativeLoss's default)
        log_mean = torch.logsumexp(scores, dim=0) - math.log(scores.shape[0])
        return -(scores.gather(1, labels[:, None]).squeeze(1) - log_mean[labels]).mean()
    criterion = generative_loss if loss == "GenerativeLoss" else nn.functional.cross_entropy
    return nn.Sequential(*modules), criterion


def input_shape(net_param) -> Tuple[int, ...]:
    """The TRAIN input's shape: DummyData's or Input's first shape, or a Data
    layer's batch x 3 x crop x crop (crop_size required)."""
    for layer in net_param.layer:
        if _test_only(layer):
            continue
        if layer.type == "DummyData" and layer.dummy_data_param.shape:
            return tuple(layer.dummy_data_param.shape[0].dim)
        if layer.type == "Input":
            return tuple(layer.input_param.shape[0].dim)
        if layer.type == "Data" and layer.transform_param.crop_size:
            crop = layer.transform_param.crop_size
            return (layer.data_param.batch_size, 3, crop, crop)
    raise PortError("no DummyData, Input or cropped Data layer gives the input shape")


def training_images_per_second(net_param, device: str = "cpu", mode: str = "fp32",
                               warm: int = 5, iterations: int = 30, seed: int = 0) -> dict:
    """SGD training throughput of the ported net on constant random input, as
    the bench's Caffe runs from a constant DummyData: momentum 0.9, weight
    decay 0.0005, lr 0.01 (the solvers'). mode: fp32 (TF32 off, as Caffe's
    cuDNN port computes), tf32, or bf16 (autocast). cudnn.benchmark on: what a
    PyTorch user runs with. Returns images/s, ms per iteration and versions."""
    import time
    import torch
    if mode not in ("fp32", "tf32", "bf16"):
        raise PortError("mode %r: one of fp32, tf32, bf16" % mode)
    torch.manual_seed(seed)
    shape = input_shape(net_param)
    classes = [a for kind, a in layer_plan(net_param)[0] if kind == "linear"][-1]["out_features"]
    cuda = device.startswith("cuda")
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
        torch.backends.cudnn.allow_tf32 = mode == "tf32"
    model, criterion = build(net_param)
    model = model.to(device)
    x = torch.randn(*shape, device=device)
    y = torch.randint(0, classes, (shape[0],), device=device)
    with torch.no_grad():
        model(x)                          # materialise the lazy layers
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9,
                                weight_decay=0.0005)

    def step():
        optimiser.zero_grad(set_to_none=True)
        with torch.autocast("cuda" if cuda else "cpu", dtype=torch.bfloat16,
                            enabled=mode == "bf16"):
            loss = criterion(model(x), y)
        loss.backward()
        optimiser.step()

    def sync():
        if cuda:
            torch.cuda.synchronize()
    for _ in range(warm):
        step()
    sync()
    started = time.perf_counter()
    for _ in range(iterations):
        step()
    sync()
    seconds = time.perf_counter() - started
    return {"images_per_s": shape[0] * iterations / seconds,
            "ms_per_iteration": 1000.0 * seconds / iterations, "mode": mode,
            "torch": torch.__version__,
            "cudnn": torch.backends.cudnn.version() if cuda else None}
