"""The PyTorch port of the papers' nets (gencaffe.nets.torch_port), the bench's
same-device baseline: the layer plan read from the generated nets (no
PyTorch needed), and, where PyTorch is installed, the ported net computing
what Caffe computes with Caffe's weights, the GG loss equal to the reference
implementation, and a training-rate measurement."""
from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("caffe.proto.caffe_pb2", reason="the generator needs caffe_pb2")
from gencaffe.nets import catalog, torch_port, variants  # noqa: E402


def train_net(key, variant="dg", batch=4):
    arch = catalog.architecture(key)
    return variants.build(arch, variant, variants.NetOptions(
        data=replace(arch.data, dummy=True, train_batch=batch)))


def test_the_plan_of_alexnet_zf_and_lenet():
    plan, loss = torch_port.layer_plan(train_net("alexnet"))
    assert [kind for kind, _ in plan] == [
        "conv", "relu", "lrn", "pool", "conv", "relu", "lrn", "pool", "conv", "relu",
        "conv", "relu", "conv", "relu", "pool", "linear", "relu", "dropout", "linear", "relu",
        "dropout", "linear"]
    assert loss == "SoftmaxWithLoss"
    conv1, conv2 = plan[0][1], plan[4][1]
    assert (conv1["kernel_size"], conv1["stride"], conv1["padding"]) == ((11, 11), (4, 4), (0, 0))
    assert (conv2["groups"], conv2["padding"]) == (2, (2, 2))
    assert plan[2][1] == dict(size=5, alpha=pytest.approx(1e-4), beta=pytest.approx(0.75), k=1.0)
    assert plan[-1][1]["out_features"] == 1000
    assert torch_port.input_shape(train_net("alexnet")) == (4, 3, 227, 227)
    zf, zf_loss = torch_port.layer_plan(train_net("zf", "gg"))
    assert zf_loss == "GenerativeLoss" and zf[0][1]["stride"] == (2, 2)
    lenet, _ = torch_port.layer_plan(train_net("lenet"))
    assert [kind for kind, _ in lenet] == ["conv", "pool", "conv", "pool", "linear", "relu",
                                           "linear"]


def test_a_net_that_is_not_a_chain_is_refused_by_name():
    net = train_net("lenet")
    net.layer[3].bottom[0] = "data"        # conv2 reading the input: not a chain any more
    with pytest.raises(torch_port.PortError, match="layer %s reads data" % net.layer[3].name):
        torch_port.layer_plan(net)


@pytest.mark.parametrize("key", ["lenet", "alexnet_tiny", "zf"])  # zf: pool1 110 -> 55 needs ceil
def test_the_ported_net_computes_what_caffe_computes(key, tmp_path):
    torch = pytest.importorskip("torch")
    import caffe
    from google.protobuf import text_format
    arch = catalog.architecture(key)
    deploy = variants.build(arch, "deploy")
    deploy.layer[0].input_param.shape[0].dim[0] = 2
    path = tmp_path / "deploy.prototxt"
    path.write_text(text_format.MessageToString(deploy))
    caffe.set_mode_cpu()
    caffe.set_random_seed(3)
    net = caffe.Net(str(path), caffe.TEST)
    rng = np.random.default_rng(0)
    for name in net.params:                 # weights large enough to matter at every layer
        for blob in net.params[name]:
            blob.data[...] = rng.normal(0, 0.05, blob.data.shape)
    x = rng.normal(0, 1, net.blobs["data"].data.shape).astype(np.float32)
    net.blobs["data"].data[...] = x
    net.forward()
    # the last InnerProduct's scores (before the deploy net's Softmax): a port
    # that got a layer wrong moves them, where probabilities could stay near even
    score_blob = [l for l in deploy.layer if l.type == "InnerProduct"][-1].top[0]
    expected = net.blobs[score_blob].data.copy()
    assert expected.std() > 0.1
    model, _ = torch_port.build(deploy)
    model.eval()
    with torch.no_grad():
        model(torch.from_numpy(x))          # materialise the lazy layers
        params = [m for m in model if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        assert len(params) == len(net.params)
        for module, name in zip(params, net.params):
            module.weight.copy_(torch.from_numpy(net.params[name][0].data))
            module.bias.copy_(torch.from_numpy(net.params[name][1].data))
        assert isinstance(model[-1], torch.nn.Softmax)
        scores = model[:-1](torch.from_numpy(x)).numpy()
    assert scores.shape == expected.shape
    assert np.abs(scores - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())


def test_the_gg_loss_is_the_reference_generative_loss():
    torch = pytest.importorskip("torch")
    from generative_loss_reference import generative_loss
    _, criterion = torch_port.build(train_net("lenet", "gg"))
    rng = np.random.default_rng(1)
    scores, labels = rng.normal(0, 2, (8, 10)), rng.integers(0, 10, 8)
    ours = criterion(torch.from_numpy(scores), torch.from_numpy(labels)).item()
    assert ours == pytest.approx(generative_loss(scores, labels)[0], rel=1e-9)


def test_training_rate_on_the_cpu():
    pytest.importorskip("torch")
    rate = torch_port.training_images_per_second(train_net("lenet", batch=8), warm=1,
                                                 iterations=2)
    assert rate["images_per_s"] > 0 and rate["mode"] == "fp32"
    with pytest.raises(torch_port.PortError, match="one of fp32, tf32, bf16"):
        torch_port.training_images_per_second(train_net("lenet"), mode="fp16")
