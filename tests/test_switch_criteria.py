"""Switch rules (gencaffe.experiments.switch_criteria): plain Python, no Caffe."""
import pytest

from gencaffe.experiments.switch_criteria import parse_criterion

EPOCHS = [(e, {"ess": 0.5 / (e + 1), "ess_within": 0.9 - 0.05 * e,
               "accuracy": min(0.99, 0.9 + 0.02 * e), "cross_weight": 0.1 / e})
          for e in range(1, 12)]


@pytest.mark.parametrize("text,epoch", [
    ("ess<0.1", 5),                        # 0.5 / 6 = 0.083
    ("ess_within<0.62", 6),                # 0.9 - 0.30 = 0.60
    ("accuracy~0.001/2", 7),               # 0.99 at 5, 6 and 7
    ("accuracy~0.001/1", 6),
    ("cross_weight~0.01/2", 6),            # 0.1/4 - 0.1/6 = 0.0083
    ("ess<0.0001", None),                  # never: no switch
])
def test_rules_pick_the_documented_epoch(text, epoch):
    assert parse_criterion(text).choose(EPOCHS, 12) == epoch


def test_never_the_last_epoch_and_never_epoch_zero():
    assert parse_criterion("ess<0.1").choose(EPOCHS, 5) is None        # 5 is the last
    assert parse_criterion("ess<1").choose([(0, {"ess": 0.0})] + EPOCHS, 12) == 1


def test_names_rules_and_errors():
    named = parse_criterion("plateau=accuracy~0.001/2")
    assert (named.name, named.rule()) == ("plateau", "accuracy~0.001/2")
    assert parse_criterion(named.rule()).choose(EPOCHS, 12) == named.choose(EPOCHS, 12)
    assert parse_criterion("ess<0.15").name == "ess<0.15"
    assert "below 0.15" not in parse_criterion("ess<0.15").describe()
    for bad in ("nonsense", "loss<1", "ess<x", "ess~0.1/0", "accuracy~"):
        with pytest.raises(ValueError, match=r"expected \[NAME=\]OUTPUT"):
            parse_criterion(bad)
    with pytest.raises(ValueError, match="no 'cross_weight' test output"):
        parse_criterion("cross_weight<1").choose([(1, {"ess": 0.5})], 12)
