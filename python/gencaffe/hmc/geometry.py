"""The input size at which a node's response is 1x1, found by asking Caffe.

No layer arithmetic lives here. ``probe((h, w))`` returns the node blob's shape
that Caffe gives for an input of that height and width (or raises
:class:`SizeRejected` with Caffe's reason), and ``support((h, w))`` says which
input rows and columns the node's response depends on (Caffe's backward pass
on random weights and inputs). The search only looks at those answers, so any
net Caffe can load works, whatever its layer types (shape_probe.py asks Caffe
without risking this process).

Per input axis, with the other axis at the net's own size, the search bisects
on n(s), the number of response positions for input size s, assuming what
holds for sliding-window nets (convolution, pooling, crop, tile, concat, ...):
too small inputs are rejected or give nothing, and n(s) never decreases as s
grows. With s_k the smallest size giving k positions, n(s_1) must be 1 (else no
size gives a 1x1 response: an error), and every size in [s_1, s_2) gives one.

Which of those? Caffe gives one position even to inputs smaller than the
node's window (its C++ integer division rounds -0.x to 0; pooling rounds up),
the window then running past the edge; and sizes near s_2 - 1 add rows the
node never looks at. The size used is the largest in [s_1, s_2) whose every row
and column the node depends on: the node's receptive field, all of it, and
nothing else (for nets whose windows always fit, that is s_1 itself). It is
bisected on ``support`` over both axes at once. Without ``support``, s_1.

The pair found is then checked as a whole, so a net that breaks the
assumptions gets an error, never a wrong size.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from .errors import NetSetupError, SizeRejected

Shape = Tuple[int, ...]
ProbeFn = Callable[[Tuple[int, int]], Shape]
# (h, w) -> (rows used, columns used): one bool per input row / column
SupportFn = Callable[[Tuple[int, int]], Tuple[Sequence[bool], Sequence[bool]]]
AXES = ("height", "width")
MAX_SIZE = 4096


def response(shape: Sequence[int]) -> Shape:
    """Spatial part of a blob shape (axes after num and channels); () for a flat blob."""
    return tuple(int(d) for d in shape[2:])


def is_unit(shape: Sequence[int]) -> bool:
    """True for a flat (N, C) blob or a response of one position (1x1, 1, 1x1x1)."""
    return all(d == 1 for d in response(shape))


class _CachedProbe:
    def __init__(self, probe: ProbeFn):
        self._probe = probe
        self.results: Dict[Tuple[int, int], Union[Shape, SizeRejected]] = {}

    def __call__(self, hw: Tuple[int, int]) -> Union[Shape, SizeRejected]:
        hw = (int(hw[0]), int(hw[1]))
        if hw not in self.results:
            try:
                self.results[hw] = tuple(int(d) for d in self._probe(hw))
            except SizeRejected as err:
                self.results[hw] = err
        return self.results[hw]


def _one_position_range(shape_at, native_hw, axis, node, max_size) -> Tuple[int, int]:
    """(s_1, last size with one position) along ``axis``, the other at its own size."""
    name = AXES[axis]

    def extent(size):
        """Positions of the response along ``axis`` (0 if Caffe rejects the size)."""
        hw = list(native_hw)
        hw[axis] = size
        got = shape_at(tuple(hw))
        if isinstance(got, SizeRejected):
            return 0
        if len(got) != 4:
            raise NetSetupError(f"the response at '{node}' changes from 4-D to "
                                f"{list(got)} at input {hw[0]}x{hw[1]}; give --input-size")
        return max(0, got[2 + axis])

    def smallest(k, lo=0):
        """Smallest size with >= k positions (``lo`` has fewer), or None."""
        hi = max(native_hw[axis], lo + 1)
        while extent(hi) < k:                    # grow past the net's own size
            lo, hi = hi, 2 * hi
            if hi > max_size:
                return None
        while hi - lo > 1:                       # invariant: lo has < k, hi >= k
            mid = (lo + hi) // 2
            if extent(mid) >= k:
                hi = mid
            else:
                lo = mid
        return hi

    s1 = smallest(1)
    if s1 is None:
        raise NetSetupError(f"no input {name} up to {max_size} gives a non-empty response "
                            f"at '{node}'")
    if extent(s1) != 1:
        raise NetSetupError(
            f"no input {name} gives a 1x1 response at '{node}': the smallest {name} Caffe "
            f"accepts, {s1}, already gives {extent(s1)} positions along that axis")
    if extent(native_hw[axis]) == 1:
        return s1, max(s1, native_hw[axis])      # one position at the net's own size too
    s2 = smallest(2, s1)
    return s1, s2 - 1


def _widest_supported(support: SupportFn, ranges: List[Tuple[int, int]]) -> Tuple[int, int]:
    """Largest size per axis within ``ranges`` whose every row (column) the node
    uses, bisecting both axes with one ``support`` call per step. The lower end
    is taken as used; a rejected size counts as not."""
    lo = [r[0] for r in ranges]
    hi = [r[1] + 1 for r in ranges]              # exclusive: assumed not fully used
    while any(h - l > 1 for l, h in zip(lo, hi)):
        mid = [(l + h) // 2 if h - l > 1 else l for l, h in zip(lo, hi)]
        try:
            used = support((mid[0], mid[1]))
            full = [all(used[0]), all(used[1])]
        except SizeRejected:
            full = [False, False]
        for axis in (0, 1):
            if hi[axis] - lo[axis] > 1:
                if full[axis]:
                    lo[axis] = mid[axis]
                else:
                    hi[axis] = mid[axis]
    return lo[0], lo[1]


def unit_input_size(probe: ProbeFn, native_hw: Tuple[int, int], node: str,
                    support: Optional[SupportFn] = None,
                    max_size: int = MAX_SIZE) -> Tuple[int, int]:
    """The (height, width) at which Caffe gives ``node`` a 1x1 response covering the
    node's whole receptive field (see the module doc).

    ``native_hw`` is the net's own input size, which must be accepted. Raises
    NetSetupError when the response is not 4-D (N, C, H, W), when no size gives
    1 along an axis, or when the sizes found do not give 1x1 together.
    """
    shape_at = _CachedProbe(probe)
    native_hw = (int(native_hw[0]), int(native_hw[1]))
    native = shape_at(native_hw)
    if isinstance(native, SizeRejected):
        raise NetSetupError(f"Caffe rejects the net's own input size "
                            f"{native_hw[0]}x{native_hw[1]} {native.describe()}")
    if len(native) != 4:
        raise NetSetupError(
            f"the response at '{node}' has shape {list(native)}: only a 4-D (num, channels, "
            "height, width) response can be made 1x1 by choosing the input size; give "
            "--input-size")
    ranges = [_one_position_range(shape_at, native_hw, axis, node, max_size)
              for axis in (0, 1)]
    if support is None:
        hw = (ranges[0][0], ranges[1][0])
    else:
        hw = _widest_supported(support, ranges)
    joint = shape_at(hw)
    if isinstance(joint, SizeRejected):
        raise NetSetupError(f"the sizes found per axis, {hw[0]}x{hw[1]}, are rejected by "
                            f"Caffe {joint.describe()}; give --input-size")
    if response(joint) != (1, 1):
        raise NetSetupError(f"the sizes found per axis, {hw[0]}x{hw[1]}, give a "
                            f"{'x'.join(map(str, response(joint)))} response at '{node}', "
                            "not 1x1; give --input-size")
    return hw
