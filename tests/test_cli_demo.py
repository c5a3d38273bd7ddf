"""`lowerbound demo vi` and the curve plotter: the demo's numbers obey log p(x) = ELBO + KL(q || posterior),
its gap closes to the mean-field floor, and bad arguments give one sentence and exit status 2."""

import io

import pytest
import torch
import torch.distributions as D
from PIL import Image

from lowerbound.cli import main
from lowerbound.errors import UserError
from lowerbound.io.curves import plot_curves
from lowerbound.prob import LinearGaussian, kl_divergence
from lowerbound.train.demos.vi import VIDemoConfig, mean_field_floor, run_vi_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = io.StringIO()
    path = tmp_path_factory.mktemp("demo") / "curves.png"
    hist = run_vi_demo(VIDemoConfig(steps=200, seed=1), path, progress=False, out=out)
    return hist, out.getvalue()


def test_demo_elbo_estimates_are_unbiased_for_evidence_minus_gap(demo):
    hist, _ = demo
    exact = [hist["log_evidence"] - g for g in hist["gap"]]  # the exact ELBO of each step's q
    residual = torch.tensor(hist["elbo"]) - torch.tensor(exact)
    # each step draws afresh, so the residuals are independent with mean 0: their mean is within its stderr
    assert abs(residual.mean().item()) <= 4 * residual.std().item() / len(residual) ** 0.5
    # and each step's own stderr is about right: 8 draws, t with 7 degrees of freedom, 95% within 2.36
    z = residual / torch.tensor(hist["elbo_stderr"])
    assert (z.abs() <= 2.36).double().mean().item() > 0.8  # skewed log-weights cost a little


def test_demo_gap_closes_to_the_mean_field_floor(demo):
    hist, text = demo
    assert hist["gap"][0] > 1.0  # q starts at the prior, far from the posterior
    assert hist["floor"] - 1e-9 <= hist["final_gap"] <= hist["floor"] + 0.05
    assert "log p(x)" in text and "gap" in text and "wrote" in text
    with Image.open(hist["plot"]) as im:
        assert im.format == "PNG" and im.size[0] > 200


def test_mean_field_floor_is_reached_by_its_closed_form_optimum():
    g = torch.Generator().manual_seed(3)
    model = LinearGaussian.random(3, 6, generator=g)
    _, x = model.sample(1, generator=g)
    post = model.posterior(x)
    lam = post.precision_matrix[0]
    best = D.Independent(D.Normal(post.loc, torch.diagonal(lam).rsqrt().unsqueeze(0)), 1)
    floor = mean_field_floor(post)
    assert kl_divergence(best, post).value.item() == pytest.approx(floor, abs=1e-10)
    # any perturbation of the optimum is worse
    worse = D.Independent(D.Normal(post.loc + 0.1, torch.diagonal(lam).rsqrt().unsqueeze(0) * 1.1), 1)
    assert kl_divergence(worse, post).value.item() > floor


def test_cli_runs_the_demo_and_writes_the_plot(tmp_path, capsys):
    path = tmp_path / "sub" / "vi.png"
    assert main(["demo", "vi", "--steps", "20", "--latent-dim", "3", "-o", str(path), "--no-progress"]) == 0
    assert path.exists()
    assert "exact log p(x)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, words",
    [
        (["demo", "vi", "--steps", "0"], "steps must be a positive integer"),
        (["demo", "vi", "--steps", "many"], "invalid int value"),
        (["demo", "vi", "--lr", "-1"], "lr must be a positive number"),
        (["demo", "vi", "--samples", "1"], "samples must be at least 2"),
        (["demo", "vi", "-o", "curves.jpg"], "must end in .png"),
        (["demo", "nope"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_one_sentence(argv, words, capsys):
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and words in err[0]
    assert err[0].startswith("lowerbound: error:") and err[0].endswith(".")


def test_plot_curves_writes_a_png_and_refuses_bad_series(tmp_path):
    path = plot_curves(tmp_path / "a.png", [1, 2, 3], {"loss": [3.0, 2.0, 1.5], "other": [1.0, 1.0, 1.0]},
                       xlabel="step", ylabel="bits/dim", title="t", logy=True)
    with Image.open(path) as im:
        assert im.format == "PNG"
    with pytest.raises(UserError, match="has 2 values"):
        plot_curves(tmp_path / "b.png", [1, 2, 3], {"loss": [1.0, 2.0]}, xlabel="", ylabel="", title="")
    with pytest.raises(UserError, match="logarithmic"):
        plot_curves(tmp_path / "c.png", [1, 2], {"loss": [1.0, -2.0]}, xlabel="", ylabel="", title="",
                    logy=True)
    with pytest.raises(UserError, match="at least one"):
        plot_curves(tmp_path / "d.png", [], {}, xlabel="", ylabel="", title="")
