"""The upstream fetch refuses what it cannot verify, with a message that says
what failed and what to do, and never leaves a half-prepared source tree.

The mirror is pointed at a closed port on localhost, so these tests need no
network and are quick; only the already-verified cache (if this machine has
one) is read.
"""
import os
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FETCH = os.path.join(REPO, "scripts", "fetch_upstream.sh")
PREPARE = os.path.join(REPO, "scripts", "prepare_source.sh")
UNREACHABLE = "http://127.0.0.1:9/debian"  # discard port: connection refused


def upstream_env():
    values = {}
    with open(os.path.join(REPO, "scripts", "upstream.env")) as f:
        for line in f:
            if "=" in line and not line.startswith("#"):
                key, value = line.strip().split("=", 1)
                values[key] = value
    return values


def run(cmd, cache):
    env = dict(os.environ, CAFFE_UPSTREAM_CACHE=str(cache), CAFFE_UPSTREAM_MIRROR=UNREACHABLE)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def test_corrupted_cache_with_no_network_fails_clearly(tmp_path):
    pin = upstream_env()
    cache = tmp_path / "cache"
    cache.mkdir()
    for name in (pin["UPSTREAM_DSC"], pin["UPSTREAM_ORIG"], pin["UPSTREAM_DEBIAN"]):
        (cache / name).write_bytes(b"not the real file")
    proc = run([FETCH, str(cache)], cache)
    assert proc.returncode != 0
    assert "apt-get update for the bullseye deb-src entry failed" in proc.stderr
    assert "Retry when the archive is reachable" in proc.stderr
    # the bad files were not "verified" into use: a prepare on this cache fails
    # and leaves no tree behind
    dest = tmp_path / "build" / "caffe-src"
    proc = run([PREPARE, str(dest)], cache)
    assert proc.returncode != 0
    assert not dest.exists()
    assert not [p for p in (tmp_path / "build").iterdir() if p.name.startswith(".prepare")]


def test_verified_cache_is_used_without_network(tmp_path):
    pin = upstream_env()
    real_cache = os.path.expanduser("~/.cache/generative-caffe/upstream")
    names = (pin["UPSTREAM_DSC"], pin["UPSTREAM_ORIG"], pin["UPSTREAM_DEBIAN"])
    if not all(os.path.exists(os.path.join(real_cache, n)) for n in names):
        pytest.skip("no verified upstream download cached on this machine")
    cache = tmp_path / "cache"
    cache.mkdir()
    for name in names:
        shutil.copy(os.path.join(real_cache, name), cache / name)
    proc = run([FETCH, str(cache)], cache)
    assert proc.returncode == 0, proc.stderr
    assert "cached and verified" in proc.stdout
    # one flipped byte in the tarball: no longer verified, and (no network) refused
    orig = cache / pin["UPSTREAM_ORIG"]
    data = bytearray(orig.read_bytes())
    data[1000] ^= 0xFF
    orig.write_bytes(bytes(data))
    proc = run([FETCH, str(cache)], cache)
    assert proc.returncode != 0
    assert "failed" in proc.stderr


def test_overlay_may_not_replace_an_upstream_file(tmp_path):
    """caffe/ holds additions only; a file shadowing upstream is refused."""
    pin = upstream_env()
    real_cache = os.path.expanduser("~/.cache/generative-caffe/upstream")
    if not os.path.exists(os.path.join(real_cache, pin["UPSTREAM_DSC"])):
        pytest.skip("no verified upstream download cached on this machine")
    repo = tmp_path / "repo"
    shutil.copytree(os.path.join(REPO, "scripts"), repo / "scripts")
    shutil.copytree(os.path.join(REPO, "caffe", "patches"), repo / "caffe" / "patches")
    shadow = repo / "caffe" / "src" / "caffe" / "net.cpp"
    shadow.parent.mkdir(parents=True)
    shadow.write_text("// not upstream\n")
    env = dict(os.environ, CAFFE_UPSTREAM_CACHE=real_cache)
    proc = subprocess.run([str(repo / "scripts" / "prepare_source.sh"), str(tmp_path / "src")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode != 0
    assert "caffe/src/caffe/net.cpp would replace the upstream file" in proc.stderr
