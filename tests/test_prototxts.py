"""Every prototxt under models/ and solvers/ parses; the MNIST solvers encode
the paper's schedule (Dai, Lu & Wu 2016, Sec. 5.1) correctly."""
import glob
import math
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_FILES = sorted(glob.glob(os.path.join(REPO, "models", "**", "*.prototxt"), recursive=True))
SOLVER_FILES = sorted(glob.glob(os.path.join(REPO, "solvers", "**", "*.prototxt"), recursive=True))

caffe_pb2 = pytest.importorskip("caffe.proto.caffe_pb2", reason="pycaffe not built")
from google.protobuf import text_format  # noqa: E402  (protobuf comes with pycaffe)

ITERATIONS_PER_EPOCH = math.ceil(60000 / 64)


def parse(path, message):
    with open(path) as handle:
        return text_format.Parse(handle.read(), message)  # strict: unknown fields fail


def net(relative):
    return parse(os.path.join(REPO, relative), caffe_pb2.NetParameter())


def solver(name):
    return parse(os.path.join(REPO, "solvers", name), caffe_pb2.SolverParameter())


def layer(net_param, name):
    return next(l for l in net_param.layer if l.name == name)


def test_files_exist():
    names = {os.path.relpath(p, REPO) for p in MODEL_FILES + SOLVER_FILES}
    assert {"models/lenet/lenet_dg.prototxt", "models/lenet/lenet_gg.prototxt",
            "models/lenet/lenet_deploy.prototxt", "solvers/lenet_dg.prototxt",
            "solvers/lenet_gg.prototxt", "solvers/lenet_gg_dg_stage1.prototxt",
            "solvers/lenet_gg_dg_stage2.prototxt"} <= names


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: os.path.relpath(p, REPO))
def test_model_parses(path):
    assert len(parse(path, caffe_pb2.NetParameter()).layer) > 0


@pytest.mark.parametrize("path", SOLVER_FILES, ids=lambda p: os.path.relpath(p, REPO))
def test_solver_parses_and_its_net_exists(path):
    param = parse(path, caffe_pb2.SolverParameter())
    assert os.path.isfile(os.path.join(REPO, param.net)), param.net
    assert param.snapshot_prefix.startswith("runs/")
    assert param.snapshot_prefix.endswith(os.path.splitext(os.path.basename(path))[0])


def test_one_epoch_is_a_full_pass_over_the_train_set():
    assert ITERATIONS_PER_EPOCH == 938 and (ITERATIONS_PER_EPOCH - 1) * 64 < 60000 <= 938 * 64


@pytest.mark.parametrize("name, epochs, base_lr, net_file", [
    ("lenet_dg.prototxt", 25, 0.01, "models/lenet/lenet_dg.prototxt"),
    ("lenet_gg.prototxt", 25, 0.01, "models/lenet/lenet_gg.prototxt"),
    ("lenet_gg_dg_stage1.prototxt", 16, 0.01, "models/lenet/lenet_gg.prototxt"),
    ("lenet_gg_dg_stage2.prototxt", 9, 0.003, "models/lenet/lenet_dg.prototxt"),
])
def test_solver_schedule_matches_the_paper(name, epochs, base_lr, net_file):
    param = solver(name)
    assert param.net == net_file
    assert param.max_iter == epochs * ITERATIONS_PER_EPOCH
    assert param.test_interval == ITERATIONS_PER_EPOCH          # a test pass per epoch
    assert param.max_iter % param.test_interval == 0            # ... including the last one
    assert param.base_lr == pytest.approx(base_lr)
    assert (param.momentum, param.weight_decay) == (pytest.approx(0.9), pytest.approx(0.0005))
    assert (param.lr_policy, param.gamma, param.power) == ("inv", pytest.approx(1e-4), 0.75)
    assert param.display == 100 and param.solver_mode == caffe_pb2.SolverParameter.CPU
    # test_iter x test batch covers the 10,000 test images exactly once
    test_data = [l for l in net(net_file).layer if l.type == "Data"
                 and any(rule.phase == caffe_pb2.TEST for rule in l.include)]
    assert param.test_iter == [100] and param.test_iter[0] * test_data[0].data_param.batch_size == 10000


def test_gg_dg_stages_add_up_to_the_full_schedule():
    assert solver("lenet_gg_dg_stage1.prototxt").max_iter + \
        solver("lenet_gg_dg_stage2.prototxt").max_iter == solver("lenet_dg.prototxt").max_iter


@pytest.mark.parametrize("net_file", ["models/lenet/lenet_dg.prototxt", "models/lenet/lenet_gg.prototxt"])
def test_train_nets_read_the_mnist_lmdbs(net_file):
    data = {rule.phase: l for l in net(net_file).layer if l.type == "Data" for rule in l.include}
    assert data[caffe_pb2.TRAIN].data_param.source == "data/mnist/mnist_train_lmdb"
    assert data[caffe_pb2.TRAIN].data_param.batch_size == 64
    assert data[caffe_pb2.TEST].data_param.source == "data/mnist/mnist_test_lmdb"
    assert data[caffe_pb2.TEST].data_param.batch_size == 100
    for l in data.values():
        assert l.data_param.backend == caffe_pb2.DataParameter.LMDB
        assert l.transform_param.scale == pytest.approx(0.00390625)
    accuracy = layer(net(net_file), "accuracy")
    assert accuracy.type == "Accuracy" and [r.phase for r in accuracy.include] == [caffe_pb2.TEST]


def test_loss_heads():
    dg = layer(net("models/lenet/lenet_dg.prototxt"), "loss")
    assert dg.type == "SoftmaxWithLoss" and list(dg.bottom) == ["ip2", "label"]
    gg = layer(net("models/lenet/lenet_gg.prototxt"), "loss")
    assert gg.type == "GenerativeLoss" and list(gg.bottom) == ["ip2", "label"]
    assert list(gg.top) == ["loss", "ess", "ess_within", "ess_within_sd", "cross_weight"]
    assert list(gg.loss_weight) == [1, 0, 0, 0, 0]


def learnable_layers(net_param):
    return [(l.name, l.type, l.convolution_param.num_output or l.inner_product_param.num_output)
            for l in net_param.layer if l.type in ("Convolution", "InnerProduct")]


def test_same_lenet_body_everywhere_so_weights_transfer():
    expected = [("conv1", "Convolution", 20), ("conv2", "Convolution", 50),
                ("ip1", "InnerProduct", 500), ("ip2", "InnerProduct", 10)]
    for net_file in ("models/lenet/lenet_dg.prototxt", "models/lenet/lenet_gg.prototxt",
                     "models/lenet/lenet_deploy.prototxt"):
        assert learnable_layers(net(net_file)) == expected, net_file


def test_deploy_net():
    deploy = net("models/lenet/lenet_deploy.prototxt")
    data = deploy.layer[0]
    assert data.type == "Input" and list(data.top) == ["data"]
    assert list(data.input_param.shape[0].dim) == [1, 1, 28, 28]
    assert deploy.force_backward
    assert (deploy.layer[-1].name, deploy.layer[-1].type, list(deploy.layer[-1].bottom)) == \
        ("prob", "Softmax", ["ip2"])
    assert not [l for l in deploy.layer if l.type in ("Data", "SoftmaxWithLoss", "GenerativeLoss",
                                                       "Accuracy")]


def test_deploy_net_loads_in_pycaffe():
    try:
        import caffe
    except Exception as err:
        pytest.skip("pycaffe not importable: %s" % err)
    model = caffe.Net(os.path.join(REPO, "models/lenet/lenet_deploy.prototxt"), caffe.TEST)
    assert model.blobs["ip2"].data.shape == (1, 10) and model.blobs["prob"].data.shape == (1, 10)


IMAGENET_EPOCH = math.ceil(1281167 / 256)


@pytest.mark.parametrize("arch", ["alexnet", "zf"])
@pytest.mark.parametrize("name, epochs, base_lr, net_variant", [
    ("dg", 70, 0.01, "train_val_dg"),
    ("gg", 70, 0.01, "train_val_gg"),
    ("gg_dg_stage1", 45, 0.01, "train_val_gg"),
    ("gg_dg_stage2", 25, 0.003, "train_val_dg"),
    ("control_stage2", 25, 0.003, "train_val_dg"),
])
def test_imagenet_solvers_follow_the_paper(arch, name, epochs, base_lr, net_variant):
    """Journal Sec. 5.1 (batch 256, lr 0.01, momentum 0.9, decay 0.0005, 70
    epochs, GG stage 45, DG stage lr 0.003) and Caffe's ImageNet example
    (step policy, gamma 0.1 every 100,000 iterations; a val pass every epoch)."""
    param = solver("%s_%s.prototxt" % (arch, name))
    assert IMAGENET_EPOCH == 5005
    assert param.net == "models/%s/%s.prototxt" % (arch, net_variant)
    assert param.max_iter == epochs * IMAGENET_EPOCH
    assert param.test_interval == IMAGENET_EPOCH and param.max_iter % param.test_interval == 0
    assert param.base_lr == pytest.approx(base_lr)
    assert (param.momentum, param.weight_decay) == (pytest.approx(0.9), pytest.approx(0.0005))
    assert (param.lr_policy, param.gamma, param.stepsize) == ("step", pytest.approx(0.1), 100000)
    assert param.solver_mode == caffe_pb2.SolverParameter.GPU
    assert param.snapshot_prefix == "runs/imagenet/solvers/%s_%s" % (arch, name)
    layers = net(param.net).layer
    train = [l for l in layers if l.type == "Data" and l.include[0].phase == caffe_pb2.TRAIN]
    test = [l for l in layers if l.type == "Data" and l.include[0].phase == caffe_pb2.TEST]
    assert [l.data_param.batch_size for l in train] == [256]
    assert param.test_iter == [1000] and test[0].data_param.batch_size * 1000 == 50000


@pytest.mark.parametrize("arch", ["alexnet", "zf"])
def test_imagenet_gg_dg_stages_add_up_to_70_epochs(arch):
    assert solver("%s_gg_dg_stage1.prototxt" % arch).max_iter + \
        solver("%s_gg_dg_stage2.prototxt" % arch).max_iter == solver("%s_dg.prototxt" % arch).max_iter


@pytest.mark.parametrize("arch", ["alexnet", "zf"])
def test_imagenet_control_restarts_dg_exactly_as_gg_dg_stage2(arch):
    """The control's stage 2 differs from GG+DG's in nothing but where it writes
    its snapshots; its stage 1 is the DG run's epoch-45 snapshot, which the DG
    solver writes."""
    control, stage2 = solver("%s_control_stage2.prototxt" % arch), \
        solver("%s_gg_dg_stage2.prototxt" % arch)
    assert control.snapshot_prefix != stage2.snapshot_prefix
    control.snapshot_prefix = stage2.snapshot_prefix
    assert control == stage2
    dg = solver("%s_dg.prototxt" % arch)
    assert solver("%s_gg_dg_stage1.prototxt" % arch).max_iter % dg.snapshot == 0
