"""Training and reporting a model that has samples but no likelihood (a GAN).

With no bound to validate on, the loop selects weights by a validation sample metric: the Fréchet
distance (eval.samples) between samples of the averaged weights and the validation split (a tenth of
train), in the data set's feature space; never the test set.  The end of the run reports the sample
metrics on the test split where other families report their bound, with the reasons it cannot give
bits/dim or a Parzen-window number.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import Tensor, nn

from ..eval.features import for_dataset
from ..eval.samples import frechet_distance, sample_quality, sample_table
from . import runtime
from .rundir import draw

VALID_NAME = "valid_fd"
TEST_SAMPLES = 1000

NOTES = [
    "No likelihood: a GAN's generator defines a distribution only through its samples (an implicit "
    "model), so there is no bound on -log P(x) and no bits/dim to put beside the other families; "
    "its weights were selected by the Fréchet distance of samples to the validation split instead.",
    "No Parzen-window number: a Parzen (kernel density) estimate fitted to samples is not a bound and "
    "ranks models wrongly even in low dimension (Theis, van den Oord & Bethge 2016; see "
    "`lowerbound demo parzen`), so it is not reported as a likelihood.",
    "The sample metrics are comparable only between runs scored with the same feature net (its name "
    "and hash are printed with them).",
]


def validator(model: nn.Module, dataset, valid_x: Tensor, seed: int) -> Callable[[nn.Module], float]:
    """eval_model -> the Fréchet distance of its samples (fixed seed) to valid_x, lower is better."""
    features = for_dataset(dataset)
    real = features(valid_x)
    n = int(getattr(model.config, "validation_samples", 500))
    seed = runtime.derive_seed(seed, "valid-samples")

    def validate(eval_model: nn.Module) -> float:
        was_training = eval_model.training
        eval_model.eval()
        try:
            return frechet_distance(real, features(draw(eval_model, n, seed)))
        finally:
            eval_model.train(was_training)

    return validate


def score_test(model: nn.Module, dataset, seed: int, progress: bool = False) -> dict[str, Any]:
    """The test row of an implicit model: "no likelihood" and its sample metrics."""
    samples = draw(model, TEST_SAMPLES, runtime.derive_seed(seed, "sample-metrics"))
    return {"split": "test", "likelihood": "no likelihood", "model": getattr(model, "family", "?"),
            "sample_metrics": sample_quality(samples, dataset, "test", seed=seed, progress=progress)}


def report_notes(test: dict[str, Any]) -> list[str]:
    """Markdown paragraphs for report.md: the sample-metrics table, then why there is no bound."""
    return ["## Sample metrics (test split)\n\n    " + "\n    ".join(sample_table(test["sample_metrics"])),
            *NOTES]
