"""When to switch from GG to DG: a rule on the GG run's per-epoch test
outputs (the accuracy and the GenerativeLoss diagnostic tops ess,
ess_within, ess_within_sd, cross_weight). Plain Python, no Caffe: the
switch sweep judges rules against its runs, and the Table 1 runner's
automatic switch (gg_dg_auto) applies one.

Rules, as written on command lines:
  OUTPUT<THRESHOLD        switch after the first epoch whose test OUTPUT is below THRESHOLD
  OUTPUT~CHANGE/WINDOW    switch after the first epoch at which OUTPUT has changed by
                          less than CHANGE (absolute) over the last WINDOW epochs
optionally named, NAME=RULE (the sweep's tables show the name).
"""
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

OUTPUTS = ("accuracy", "ess", "ess_within", "ess_within_sd", "cross_weight")


@dataclass(frozen=True)
class Criterion:
    """Switch after the first epoch whose test `output` is below `threshold`
    (kind "below"), or after the first epoch from which `output` has changed by
    less than `threshold` (absolute) over the previous `window` epochs (kind
    "plateau"). Never before epoch 1 nor at the last epoch."""
    name: str
    output: str
    kind: str
    threshold: float
    window: int = 2

    def choose(self, epochs: Sequence[Tuple[int, Dict[str, float]]],
               total_epochs: int) -> Optional[int]:
        """The epoch to switch after, or None (no switch: GG throughout).
        epochs: [(epoch, test outputs)] of the test passes after each epoch."""
        values = [(e, out.get(self.output)) for e, out in epochs if 1 <= e < total_epochs]
        if any(v is None for _, v in values):
            raise ValueError("the GG log has no '%s' test output; is that GenerativeLoss top "
                             "in the net?" % self.output)
        for i, (epoch, value) in enumerate(values):
            if self.kind == "below" and value < self.threshold:
                return epoch
            if self.kind == "plateau" and i >= self.window and \
                    abs(value - values[i - self.window][1]) < self.threshold:
                return epoch
        return None

    def rule(self) -> str:
        """The rule as parse_criterion reads it (without the name)."""
        if self.kind == "below":
            return "%s<%g" % (self.output, self.threshold)
        return "%s~%g/%d" % (self.output, self.threshold, self.window)

    def describe(self) -> str:
        if self.kind == "below":
            return "first epoch with test %s < %g" % (self.output, self.threshold)
        return ("first epoch at which test %s changed by < %g over the last %d epochs"
                % (self.output, self.threshold, self.window))


def parse_criterion(text: str) -> Criterion:
    """'[NAME=]OUTPUT<THRESHOLD' or '[NAME=]OUTPUT~CHANGE/WINDOW' (plateau);
    the name defaults to the rule. ValueError with the expected forms."""
    name, sep, rule = text.partition("=")
    if not sep:
        name, rule = text, text
    criterion = None
    try:
        if "<" in rule:
            output, _, threshold = rule.partition("<")
            criterion = Criterion(name, output.strip(), "below", float(threshold))
        elif "~" in rule:
            output, _, rest = rule.partition("~")
            threshold, _, window = rest.partition("/")
            criterion = Criterion(name, output.strip(), "plateau", float(threshold),
                                  int(window or 2))
    except ValueError:
        criterion = None
    if criterion is None or criterion.window < 1 or criterion.output not in OUTPUTS:
        raise ValueError("criterion %r: expected [NAME=]OUTPUT<THRESHOLD or "
                         "[NAME=]OUTPUT~CHANGE/WINDOW, OUTPUT one of %s"
                         % (text, ", ".join(OUTPUTS)))
    return criterion
