"""The smoke run's 5-crop evaluation of each approach's final model
(gencaffe.experiments.eval_crops), cached in the run directory as
eval.5crop.json and redone when the weights it read changed.

`run` is the last run of an approach (imagenet_smoke.approach_runs);
`settings` the smoke run's (imagenet_smoke.Settings).
"""
import json
import os
from typing import Optional

from .caffe_runs import CaffeTraining, file_sha256
from .imagenet_data import DataInfo, SmokeError

EVAL_NAME = "eval.5crop.json"


def eval_path(run: CaffeTraining) -> str:
    return os.path.join(run.run_dir, EVAL_NAME)


def read_eval(settings, run: CaffeTraining) -> Optional[dict]:
    """The evaluation of run's final snapshot, or None if missing or of other weights."""
    try:
        with open(settings.path(eval_path(run))) as handle:
            result = json.load(handle)
    except (OSError, ValueError):
        return None
    weights = settings.path(run.final_snapshot(settings))
    if result.get("weights_sha256") != file_sha256(weights):
        return None
    return result


def evaluate(settings, data: DataInfo, run: CaffeTraining) -> dict:
    """5-crop top-1/top-5 error of run's final snapshot on the val LMDB (cached)."""
    cached = read_eval(settings, run)
    if cached is not None:
        settings.log("[%s] 5-crop evaluation already done, skipped" % run.label)
        return cached
    from . import eval_crops
    weights = settings.path(run.final_snapshot(settings))
    config = eval_crops.EvalConfig(
        model=settings.path(os.path.join(run.run_dir, "deploy.prototxt")), weights=weights,
        lmdb=settings.path(data.path("val_lmdb")),
        classes=settings.path(data.path("classes.txt")),
        mean_file=settings.path(data.path("mean.binaryproto")), batch_size=settings.eval_batch,
        gpu=settings.gpu)
    settings.log("[%s] 5-crop evaluation of %s" % (run.label, run.final_snapshot(settings)))
    try:
        result = eval_crops.evaluate(config, log=settings.log,
                                    progress_factory=settings.progress_factory)
    except eval_crops.EvalError as err:
        raise SmokeError("[%s] evaluation: %s" % (run.label, err)) from None
    result["weights_sha256"] = file_sha256(weights)
    eval_crops.write_results(result, settings.path(eval_path(run)))
    settings.log("[%s] 5-crop top-1 error %.2f %%, top-5 error %.2f %%"
                 % (run.label, result["top1_error"], result["top5_error"]))
    return result

