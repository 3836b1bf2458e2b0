"""The net generator (python/gencaffe/nets/, tools/make_nets.py): the committed
prototxt are its output, AlexNet is upstream's bvlc_alexnet, ZF has the map
sizes of Zeiler & Fergus's Fig. 3, and every variant has the head it claims."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
caffe_pb2 = pytest.importorskip("caffe.proto.caffe_pb2", reason="pycaffe not built")
from google.protobuf import text_format  # noqa: E402

from gencaffe.nets import catalog, layers, variants  # noqa: E402

BUILD = os.environ.get("CAFFE_BUILD_DIR", os.path.join(REPO, "build", "cpu"))
UPSTREAM = os.path.join(BUILD, "caffe-src")


def parse(path):
    with open(path) as handle:
        return text_format.Parse(handle.read(), caffe_pb2.NetParameter())


def committed(key, variant):
    arch = catalog.architecture(key)
    return parse(catalog.committed_path(REPO, arch, variant))


def by_name(net):
    return {l.name: l for l in net.layer if l.type != "Data"}


def test_committed_nets_are_the_generators_output():
    stale = catalog.stale_nets(REPO)
    assert not stale, "regenerate with tools/make_nets.py: %s" % stale


def test_check_mode_names_a_changed_file(tmp_path, monkeypatch):
    """--check fails on any difference, naming the file (here: a comment edited)."""
    arch = catalog.architecture("zf")
    path = catalog.committed_path(str(tmp_path), arch, "dg")
    for p, text in catalog.committed_nets(str(tmp_path)).items():
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as handle:
            handle.write(text)
    assert catalog.stale_nets(str(tmp_path)) == []
    with open(path, "a") as handle:
        handle.write("# a hand edit\n")
    assert catalog.stale_nets(str(tmp_path)) == [path]


def strip_data_paths(layer):
    out = caffe_pb2.LayerParameter()
    out.CopyFrom(layer)
    out.data_param.ClearField("source")
    out.transform_param.ClearField("mean_file")
    return out


@pytest.mark.parametrize("variant", ["dg", "gg"])
def test_alexnet_is_upstreams_bvlc_alexnet(variant):
    """Layer for layer the same as models/bvlc_alexnet/train_val.prototxt, but
    for the data paths, our extra top-5 accuracy and (GG) the loss layer."""
    upstream = parse(os.path.join(UPSTREAM, "models", "bvlc_alexnet", "train_val.prototxt"))
    ours = committed("alexnet", variant)
    ours_layers = [l for l in ours.layer if l.name != "accuracy_top5"]
    assert [l.name for l in ours_layers] == [l.name for l in upstream.layer]
    for mine, theirs in zip(ours_layers, upstream.layer):
        if variant == "gg" and mine.name == "loss":
            assert mine.type == "GenerativeLoss" and theirs.type == "SoftmaxWithLoss"
            assert list(mine.bottom) == list(theirs.bottom) == ["fc8", "label"]
            continue
        assert strip_data_paths(mine) == strip_data_paths(theirs), mine.name


def test_alexnet_deploy_is_upstreams():
    """The same layers as upstream's deploy.prototxt, which leaves out the
    fillers (ours keep them: one body for every variant; they are unused)."""
    upstream = parse(os.path.join(UPSTREAM, "models", "bvlc_alexnet", "deploy.prototxt"))
    ours = committed("alexnet", "deploy")
    assert [(l.name, l.type, list(l.bottom), list(l.top)) for l in ours.layer] == \
        [(l.name, l.type, list(l.bottom), list(l.top)) for l in upstream.layer]
    for mine, theirs in zip(ours.layer, upstream.layer):
        mine = caffe_pb2.LayerParameter.FromString(mine.SerializeToString())
        for name in ("convolution_param", "inner_product_param"):
            if mine.HasField(name):
                getattr(mine, name).ClearField("weight_filler")
                getattr(mine, name).ClearField("bias_filler")
        assert mine == theirs, mine.name
    assert ours.force_backward


def test_lenet_is_upstreams_lenet_train_test():
    upstream = parse(os.path.join(UPSTREAM, "examples", "mnist", "lenet_train_test.prototxt"))
    ours = committed("lenet", "dg")
    assert [l.name for l in ours.layer[2:]] == [l.name for l in upstream.layer[2:]]
    for mine, theirs in zip(ours.layer, upstream.layer):
        mine, theirs = strip_data_paths(mine), strip_data_paths(theirs)
        mine.ClearField("name")
        theirs.ClearField("name")
        assert mine == theirs


def blob_shapes(model_path):
    import caffe
    net = caffe.Net(model_path, caffe.TEST)
    return {name: blob.data.shape for name, blob in net.blobs.items()}


def test_zf_has_the_map_sizes_of_zeiler_fergus_fig3():
    shapes = blob_shapes(catalog.committed_path(REPO, catalog.architecture("zf"), "deploy"))
    sizes = {name: shapes[name][1:] for name in
             ("conv1", "pool1", "norm1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5")}
    assert sizes == {"conv1": (96, 110, 110), "pool1": (96, 55, 55), "norm1": (96, 55, 55),
                     "conv2": (256, 26, 26), "pool2": (256, 13, 13), "conv3": (384, 13, 13),
                     "conv4": (384, 13, 13), "conv5": (256, 13, 13), "pool5": (256, 6, 6)}
    assert shapes["fc8"] == (10, 1000) and shapes["prob"] == (10, 1000)


def test_alexnet_shapes():
    shapes = blob_shapes(catalog.committed_path(REPO, catalog.architecture("alexnet"), "deploy"))
    assert shapes["data"] == (10, 3, 227, 227)
    assert shapes["conv1"][1:] == (96, 55, 55) and shapes["pool5"][1:] == (256, 6, 6)


@pytest.mark.parametrize("key", ["lenet", "alexnet", "zf"])
def test_heads(key):
    dg, gg, semi = (by_name(committed(key, v)) for v in ("dg", "gg", "semi_gg"))
    score = catalog.architecture(key).score
    assert dg["loss"].type == "SoftmaxWithLoss" and list(dg["loss"].bottom) == [score, "label"]
    for net in (gg, semi):
        loss = net["loss"]
        assert loss.type == "GenerativeLoss"
        assert list(loss.top) == ["loss", "ess", "ess_within", "ess_within_sd", "cross_weight"]
        assert list(loss.loss_weight) == [1, 0, 0, 0, 0]       # diagnostics only
    assert not gg["loss"].generative_loss_param.semi_supervised
    param = semi["loss"].generative_loss_param
    assert param.semi_supervised and param.unlabeled_weight == pytest.approx(0.1)
    assert param.unlabeled_label == -1
    for net in (dg, gg, semi):
        assert [r.phase for r in net["accuracy"].include] == [caffe_pb2.TEST]


@pytest.mark.parametrize("key", ["lenet", "alexnet", "zf"])
def test_semi_batches_concatenate_labelled_and_unlabelled(key):
    net = committed(key, "semi_gg")
    arch = catalog.architecture(key)
    train = [l for l in net.layer if l.type == "Data" and l.include[0].phase == caffe_pb2.TRAIN]
    assert [l.data_param.source for l in train] == [arch.semi_data.train_source,
                                                      arch.semi_data.unlabelled_source]
    sizes = [l.data_param.batch_size for l in train]
    assert sum(sizes) == arch.data.train_batch           # the paper's batch size
    assert sizes[0] == round(arch.data.train_batch * variants.DEFAULT_LABELLED_SHARE)
    concat = {l.top[0]: list(l.bottom) for l in net.layer if l.type == "Concat"}
    assert concat == {"data": ["data_labelled", "data_unlabelled"],
                      "label": ["label_labelled", "label_unlabelled"]}
    test = [l for l in net.layer if l.type == "Data" and l.include[0].phase == caffe_pb2.TEST]
    assert [l.data_param.source for l in test] == [arch.data.test_source]


@pytest.mark.parametrize("key", ["lenet", "alexnet", "zf"])
def test_one_body_in_every_variant_so_weights_transfer(key):
    def learnable(net):
        return [(l.name, l.type, list(l.bottom), l.convolution_param.SerializeToString(),
                 l.inner_product_param.SerializeToString(), [p.SerializeToString() for p in l.param])
                for l in net.layer if l.type in ("Convolution", "InnerProduct")]
    nets = [committed(key, v) for v in variants.VARIANTS]
    assert all(learnable(n) == learnable(nets[0]) for n in nets[1:])


def test_custom_data_and_class_count(tmp_path):
    out = tmp_path / "net.prototxt"
    subprocess.run([sys.executable, os.path.join(REPO, "tools", "make_nets.py"), "--arch", "zf",
                    "--variant", "gg", "--train-source", "/d/train", "--test-source", "/d/val",
                    "--mean-file", "/d/mean.binaryproto", "--num-classes", "12",
                    "--train-batch", "16", "--test-batch", "8", "--out", str(out)],
                   check=True, capture_output=True)
    net = parse(str(out))
    data = [l for l in net.layer if l.type == "Data"]
    assert [(l.data_param.source, l.data_param.batch_size, l.transform_param.mean_file,
             l.transform_param.crop_size, l.transform_param.mirror) for l in data] == \
        [("/d/train", 16, "/d/mean.binaryproto", 224, True),
         ("/d/val", 8, "/d/mean.binaryproto", 224, False)]
    assert by_name(net)["fc8"].inner_product_param.num_output == 12
    # top-5 accuracy only where there are more than 5 classes
    assert "accuracy_top5" in by_name(net)


def test_bad_requests_get_a_message(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, os.path.join(REPO, "tools", "make_nets.py"),
                               *args], capture_output=True, text=True)
    result = run("--arch", "vgg", "--out", str(tmp_path / "x.prototxt"))
    assert result.returncode != 0 and "unknown architecture 'vgg'" in result.stderr
    result = run("--arch", "lenet", "--variant", "semi", "--out", str(tmp_path / "x.prototxt"))
    assert result.returncode != 0 and "unknown variant 'semi'" in result.stderr
    for option, value, message in (("--train-batch", "0", "must be >= 1, got 0"),
                                   ("--labelled-share", "1.5", "must be < 1"),
                                   ("--unlabeled-weight", "-0.1", "must be >= 0")):
        result = run("--arch", "lenet", "--variant", "semi_gg", option, value,
                     "--out", str(tmp_path / "x.prototxt"))
        assert result.returncode == 2 and option in result.stderr and message in result.stderr
    assert not (tmp_path / "x.prototxt").exists()


def test_dummy_data_and_engine_options():
    """Benchmark nets: DummyData (no LMDB) of the net's input shape, and every
    engine-selectable layer forced to one engine."""
    from dataclasses import replace
    arch = catalog.architecture("alexnet")
    options = variants.NetOptions(data=replace(arch.data, dummy=True, train_batch=3),
                                  engine="CAFFE", num_classes=5)
    net = variants.build(arch, "gg", options)
    dummy = net.layer[0]
    assert dummy.type == "DummyData" and list(dummy.top) == ["data", "label"]
    assert [list(s.dim) for s in dummy.dummy_data_param.shape] == [[3, 3, 227, 227], [3]]
    # constant fillers: Caffe fills them once, not on the CPU at every pass
    assert [f.type for f in dummy.dummy_data_param.data_filler] == ["constant", "constant"]
    assert not [l for l in net.layer if l.type == "Data"]
    engines = {l.name: getattr(l, layers.ENGINE_FIELDS[l.type]).engine
               for l in net.layer if l.type in layers.ENGINE_FIELDS}
    assert set(engines) >= {"conv1", "relu1", "norm1", "pool1", "conv5", "relu7"}
    assert set(engines.values()) == {caffe_pb2.ConvolutionParameter.CAFFE}   # CAFFE = 1 in each enum
    import caffe
    caffe_net = caffe.Net(_write(net), caffe.TRAIN)
    assert caffe_net.blobs["fc8"].data.shape == (3, 5)


def _write(net_param):
    import tempfile
    handle = tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False)
    handle.write(text_format.MessageToString(net_param))
    handle.close()
    return handle.name


# ---------------------------------------------------------------- input size (Tiny ImageNet)

@pytest.mark.parametrize("key,maps,millions", [
    ("alexnet_tiny", {"conv1": 23, "pool1": 11, "conv2": 11, "pool2": 5, "conv3": 5,
                      "conv5": 5, "pool5": 2}, 24.1),
    ("zf_tiny", {"conv1": 52, "pool1": 26, "conv2": 11, "pool2": 5, "conv3": 5, "conv5": 5,
                 "pool5": 2}, 25.5)])
def test_tiny_map_sizes_and_parameters(key, maps, millions):
    """56x56 crops, conv1's stride halved: the maps alexnet.py and zf.py document,
    pool5 2x2, and the parameter count at 200 classes."""
    import caffe
    net = caffe.Net(catalog.committed_path(REPO, catalog.architecture(key), "deploy"), caffe.TEST)
    assert net.blobs["data"].data.shape[1:] == (3, 56, 56)
    assert {name: net.blobs[name].data.shape[2] for name in maps} == maps
    assert net.blobs["fc8"].data.shape[1:] == (200,)
    count = sum(b.data.size for blobs in net.params.values() for b in blobs)
    assert round(count / 1e6, 1) == millions


@pytest.mark.parametrize("key", ["alexnet", "zf"])
def test_tiny_nets_differ_from_the_paper_only_in_conv1_stride_and_sizes(key):
    """Layer for layer the ImageNet net but conv1's stride, the crop, the class
    count and the data paths (everything else: LRN, groups, dropout, fillers,
    lr and decay multipliers)."""
    for variant in ("dg", "gg", "semi_gg", "deploy"):
        full, tiny = committed(key, variant), committed(key + "_tiny", variant)
        assert [l.name for l in full.layer] == [l.name for l in tiny.layer]
        for a, b in zip(full.layer, tiny.layer):
            a, b = strip_data_paths(a), strip_data_paths(b)
            for layer in (a, b):
                layer.transform_param.ClearField("crop_size")
                layer.data_param.ClearField("batch_size")
                if layer.name == "fc8":
                    layer.inner_product_param.ClearField("num_output")
                if layer.name == "conv1":
                    del layer.convolution_param.stride[:]
                if layer.type == "Input":
                    layer.input_param.ClearField("shape")
            assert a == b, "%s %s: %s" % (key, variant, a.name)
        conv1 = [l for l in tiny.layer if l.name == "conv1"][0]
        assert list(conv1.convolution_param.stride) == [{"alexnet": 2, "zf": 1}[key]]


def test_input_size_option_of_make_nets(tmp_path):
    out = tmp_path / "a.prototxt"
    subprocess.run([sys.executable, os.path.join(REPO, "tools", "make_nets.py"), "--arch",
                    "alexnet", "--variant", "deploy", "--input-size", "56", "--out", str(out)],
                   check=True, capture_output=True)
    net = parse(str(out))
    assert list(net.layer[0].input_param.shape[0].dim) == [10, 3, 56, 56]
    assert [l for l in net.layer if l.name == "conv1"][0].convolution_param.stride == [2]
    with pytest.raises(ValueError, match="no input-size option"):
        catalog.architecture("lenet").at_input_size(20)
