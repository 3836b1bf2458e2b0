"""HMC with the chains on the GPU (gencaffe/hmc/blob_arrays.py, issue 27), checked
on the CPU with a strict CuPy stand-in (tests/fake_cupy.py): the sampler and the
node score run unchanged on device arrays, give what the host path gives for the
same seed, move only one energy per chain to the host per trajectory, and the
device views are made from the blobs' GPU addresses as CuPy expects. The real
CuPy path runs in scripts/gpu_checks.sh (tools/bench_hmc.py --chains-on device)."""
import sys

import numpy as np
import pytest

import fake_cupy
from gencaffe.hmc import blob_arrays, sampler as hmc


@pytest.fixture
def cupy(monkeypatch):
    """fake_cupy installed as 'cupy' (so blob_arrays.array_module sees it)."""
    module = fake_cupy.as_module()
    monkeypatch.setitem(sys.modules, "cupy", module)
    module.transfers.update(to_device=0, to_host=0)
    return module


def gaussian_score(centre):
    """f(x) = -|x - centre|^2 / 2 per chain, in x's array module (host or device)."""
    def score_and_grad(x):
        xp = blob_arrays.array_module(x)
        c = xp.asarray(centre)
        d = x - c
        f = -(d * d).reshape(x.shape[0], -1).sum(axis=1) / 2
        return f, -d
    return score_and_grad


def run_chains(x0, score, seed, iterations=6, warmup=3):
    settings = hmc.HMCSettings(step_size=0.3, n_leapfrog=5, mass=1.0, n_iterations=iterations,
                               n_warmup=warmup)
    potential = hmc.make_potential(score, sigma=3.0, temperature=1.0)
    return list(hmc.sample(x0, potential, settings, np.random.default_rng(seed)))


def test_the_stand_in_is_as_strict_as_cupy(cupy):
    dev = cupy.asarray(np.ones((2, 3), np.float32))
    with pytest.raises(TypeError):
        np.asarray(dev)
    with pytest.raises(TypeError):
        dev + np.ones((2, 3), np.float32)
    with pytest.raises(TypeError):
        np.multiply(dev, 2.0)
    assert cupy.asnumpy(dev * 2 + 1).tolist() == [[3.0] * 3] * 2


def test_sampler_on_device_arrays_matches_the_host(cupy):
    centre = np.linspace(-1, 1, 12, dtype=np.float32).reshape(1, 3, 2, 2)
    x0 = np.random.default_rng(5).normal(size=(4, 3, 2, 2)).astype(np.float32)
    host = run_chains(x0, gaussian_score(centre), seed=11)
    device = run_chains(cupy.asarray(x0), gaussian_score(centre), seed=11)
    assert len(host) == len(device) == 9
    for (it_h, warm_h, state_h, info_h), (it_d, warm_d, state_d, info_d) in zip(host, device):
        assert (it_h, warm_h) == (it_d, warm_d)
        assert isinstance(state_d.x, cupy.ndarray) and isinstance(state_d.grad_u, cupy.ndarray)
        # what the caller reads is on the host
        assert isinstance(state_d.u, np.ndarray) and isinstance(info_d.accept_prob, np.ndarray)
        np.testing.assert_array_equal(info_h.accepted, info_d.accepted)
        np.testing.assert_allclose(cupy.asnumpy(state_d.x), state_h.x, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(state_d.u, state_h.u, rtol=1e-9)
        np.testing.assert_allclose(info_d.energy_error, info_h.energy_error, rtol=1e-5,
                                   atol=1e-9)
    assert 0 < np.mean([i.accepted.mean() for _, _, _, i in host]) < 1   # a real test of MH


def test_one_energy_per_chain_crosses_per_trajectory(cupy):
    x0 = cupy.asarray(np.zeros((3, 5), np.float32))
    potential = hmc.make_potential(gaussian_score(np.zeros((1, 5), np.float32)), 3.0, 1.0)
    state = hmc.init_state(x0, potential)
    cupy.transfers.update(to_device=0, to_host=0)
    leapfrog_steps = 25
    hmc.hmc_step(state, potential, 0.1, leapfrog_steps, 1.0, np.random.default_rng(0))
    # U and K of the proposal, K of the start: three chain vectors back, whatever L is
    assert cupy.transfers["to_host"] == 3
    # the momenta, the score's centre once per gradient evaluation (this test's
    # score), the step size and the acceptance mask
    assert cupy.transfers["to_device"] == 1 + leapfrog_steps + 2


def test_node_score_through_device_views_matches_the_host(cupy, tmp_path):
    caffe = pytest.importorskip("caffe")
    from test_hmc_caffe import SMALL_NET
    from gencaffe.hmc import target as ct
    proto = tmp_path / "deploy.prototxt"
    proto.write_text(SMALL_NET)
    caffe.set_mode_cpu()
    caffe.set_random_seed(77)
    weights = str(tmp_path / "w.caffemodel")
    caffe.Net(str(proto), caffe.TEST).save(weights)

    class ViewsOfHostMemory:
        """DeviceBlobArrays' interface over the blobs' host memory: the code path
        of the GPU (views written in place, indices and results on the 'device')."""
        where = "device"
        xp = cupy

        @staticmethod
        def data(blob):
            return cupy.ndarray(blob.data)

        @staticmethod
        def diff(blob):
            return cupy.ndarray(blob.diff)

        @staticmethod
        def from_host(a):
            return cupy.asarray(a)

    for node in ("score", "relu2"):            # relu2: in place, one-hot reset each call
        channels = [0, 1, 2, 1]
        host = ct.build_node_target(str(proto), weights, node, channels)
        device = ct.build_node_target(str(proto), weights, node, channels,
                                      arrays=ViewsOfHostMemory)
        x = np.random.default_rng(3).normal(size=host.cut.input_shape).astype(np.float32)
        for _ in range(2):
            f_h, g_h = host.score(x)
            f_d, g_d = device.score(cupy.asarray(x))
            assert isinstance(f_d, cupy.ndarray) and isinstance(g_d, cupy.ndarray)
            np.testing.assert_array_equal(cupy.asnumpy(f_d), f_h)
            np.testing.assert_array_equal(cupy.asnumpy(g_d), g_h)
        assert np.abs(g_h).max() > 0


def test_device_views_wrap_the_blobs_gpu_addresses():
    made = {}

    class FakeCuda:
        class UnownedMemory:
            def __init__(self, pointer, size, owner):
                made["memory"] = (pointer, size, owner)

        class MemoryPointer:
            def __init__(self, memory, offset):
                made["offset"] = offset

    class FakeCupyModule:
        cuda = FakeCuda
        float32 = np.float32

        @staticmethod
        def ndarray(shape, dtype, memptr):
            made["array"] = (shape, dtype)
            return "view"

    class Blob:
        shape = [3, 2, 5]
        _gpu_data_ptr = 0x7f0000001000
        _gpu_diff_ptr = 0x7f0000002000

    arrays = blob_arrays.DeviceBlobArrays(FakeCupyModule)
    blob = Blob()
    assert arrays.data(blob) == "view"
    assert made["memory"] == (0x7f0000001000, 3 * 2 * 5 * 4, blob) and made["offset"] == 0
    assert made["array"] == ((3, 2, 5), np.float32)
    arrays.diff(blob)
    assert made["memory"][0] == 0x7f0000002000


def test_chain_placement_rules():
    pytest.importorskip("caffe")
    assert blob_arrays.chain_arrays("host", 0) is blob_arrays.HostBlobArrays
    assert blob_arrays.chain_arrays("auto", None) is blob_arrays.HostBlobArrays
    with pytest.raises(ValueError, match="needs --gpu"):
        blob_arrays.chain_arrays("device", None)
    with pytest.raises(ValueError, match="must be one of"):
        blob_arrays.chain_arrays("gpu", 0)
    import caffe
    if not hasattr(caffe._caffe.Blob, "_gpu_data_ptr"):       # this machine's CPU build
        with pytest.raises(ValueError, match="CPU-only build"):
            blob_arrays.chain_arrays("device", 0)
        assert blob_arrays.chain_arrays("auto", 0) is blob_arrays.HostBlobArrays
