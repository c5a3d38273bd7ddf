"""The autoregressive family against its oracles: exact normalization over every sequence, causality
by perturbation, ancestral samples against the likelihood (chi-square), the logistic mixture against
scipy's logistic CDF, and the sampler's step-by-step (key/value cached) conditionals against the
full pass.  Tiny nets in float64, so equalities hold to round-off."""

import itertools

import pytest
import torch
from scipy import stats

from lowerbound.errors import UserError
from lowerbound.models import registry
from lowerbound.models.autoregressive import image_view

ARCHS = ["pixelcnn", "transformer"]
OUTPUTS = ["categorical", "logistic-mixture"]


def build(arch, output, levels, shape, layers=2, width=8, seed=0):
    torch.manual_seed(seed)
    options = {"arch": arch, "output": output, "width": width, "layers": layers, "heads": 2,
               "mixtures": 2, "dropout": 0.0}
    return registry.build("autoregressive", options, levels, shape).double()


def every_sequence(levels, shape):
    d = int(torch.tensor(shape).prod())
    return torch.tensor(list(itertools.product(range(levels), repeat=d))).reshape(-1, *shape)


def fit_briefly(model, levels, shape, steps=25):
    """A few Adam steps towards a skewed distribution, so the conditionals are far from uniform."""
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, levels, (64, *shape), generator=g)
    first = x.flatten(1)[:, :1].reshape(64, *[1] * len(shape))
    x = torch.where(torch.rand(x.shape, generator=g) < 0.5, first, x)  # dependence to learn
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    model.train()
    for _ in range(steps):
        loss = model.loss(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def sequence_order(shape):
    """Index of each data-layout dimension in the model's order (pixel-major, channel within)."""
    c, h, w = image_view(shape)
    grid = torch.arange(c * h * w).view(h, w, c).permute(2, 0, 1)
    return grid.reshape(-1)  # data-layout dim -> position in the sequence


@pytest.mark.parametrize("trained", [False, True])
@pytest.mark.parametrize("shape", [(1, 2, 2), (2, 1, 2)])
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("arch", ARCHS)
def test_probabilities_of_all_81_sequences_sum_to_one(arch, output, shape, trained):
    model = build(arch, output, 3, shape)
    if trained:
        fit_briefly(model, 3, shape)
    x = every_sequence(3, shape)
    with torch.no_grad():
        b = model.bound(x)
    assert b.exact and b.estimator == "exact" and b.dims == 4 and set(b.terms) == {"nll"}
    assert torch.exp(-b.nats).sum().item() == pytest.approx(1.0, abs=1e-5)
    if trained:  # not trivially uniform
        assert b.nats.max() - b.nats.min() > 0.5


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("arch", ARCHS)
def test_conditional_i_depends_on_earlier_dimensions_only(arch, layers):
    """Perturb one dimension j at a time: the conditional of dimension i (all K probabilities)
    moves only if j comes before i in the order (R, G, B within a pixel, pixels in raster order)."""
    shape, levels = (2, 3, 3), 4
    model = build(arch, "categorical", levels, shape, layers=layers).eval()
    g = torch.Generator().manual_seed(2)
    x = torch.randint(0, levels, (3, *shape), generator=g)
    order = sequence_order(shape)
    with torch.no_grad():
        base = model.conditionals(x).flatten(2)
        d = base.shape[-1]
        moved = torch.zeros(d, d)  # [i, j] in sequence order
        for j in range(d):
            y = x.clone().flatten(1)
            y[:, j] = (y[:, j] + 1 + torch.randint(0, levels - 1, (3,), generator=g)) % levels
            delta = (model.conditionals(y.view_as(x)).flatten(2) - base).abs().amax((0, 1))
            moved[order, order[j]] = delta.float()
    assert moved.triu().max() < 1e-12  # later dimensions and itself: never
    assert all(moved[i, :i].max() > 1e-6 for i in range(1, d))  # some earlier dimension: always
    if arch == "transformer" or layers >= 2:  # receptive field covers the 3x3 image: every one
        assert moved.tril(-1)[torch.ones(d, d).tril(-1).bool()].min() > 1e-9


@pytest.mark.parametrize("arch,output,shape", [("pixelcnn", "categorical", (1, 2, 2)),
                                               ("transformer", "logistic-mixture", (2, 1, 2))])
def test_ancestral_samples_follow_the_likelihood(arch, output, shape):
    """20k samples over the 81 sequences against exp(-bound), by Pearson's chi-square."""
    model = fit_briefly(build(arch, output, 3, shape), 3, shape)
    x = every_sequence(3, shape)
    with torch.no_grad():
        p = torch.exp(-model.bound(x).nats)
    n = 20000
    s = model.sample(n, torch.Generator().manual_seed(3))
    assert s.shape == (n, *shape) and s.dtype == torch.long
    code = (s.flatten(1) * 3 ** torch.arange(3, -1, -1)).sum(1)  # the row of x it equals
    counts = torch.bincount(code, minlength=81).double()
    expected = n * p / p.sum()
    result = stats.chisquare(counts.numpy(), expected.numpy())
    assert result.pvalue > 1e-3, result


def test_logistic_mixture_matches_scipys_logistic_cdf():
    levels, mixtures = 5, 2
    model = build("transformer", "logistic-mixture", levels, (3,))
    torch.nn.init.normal_(model.head.mlp[-1].weight, std=0.5)  # spread means, scales and weights
    x = torch.tensor([[0, 4, 2], [3, 1, 1]])
    with torch.no_grad():
        out = model.params(x)  # [B, 3M, 3]: logits, means, log-scales
        probs = model.conditionals(x).exp()
    assert probs.sum(1).sub(1).abs().max() < 1e-12
    w = torch.softmax(out[:, :mixtures], 1).numpy()
    mean, scale = out[:, mixtures:2 * mixtures].numpy(), out[:, 2 * mixtures:].clamp_min(-7).exp().numpy()
    half = 1.0 / (levels - 1)
    for k in range(levels):
        y = 2.0 * k / (levels - 1) - 1.0
        upper = 1.0 if k == levels - 1 else stats.logistic.cdf(y + half, mean, scale)
        lower = 0.0 if k == 0 else stats.logistic.cdf(y - half, mean, scale)
        expected = (w * (upper - lower)).sum(1)
        assert probs[:, k].numpy() == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("arch", ARCHS)
def test_the_samplers_steps_give_the_full_pass_conditionals(arch):
    """The path sample() walks (key/value cache for the transformer, rows for the PixelCNN), fed the
    levels of x dimension by dimension, gives the same conditionals as one full pass."""
    shape, levels = (2, 2, 3), 5
    model = fit_briefly(build(arch, "categorical", levels, shape), levels, shape, steps=5)
    x = torch.randint(0, levels, (4, *shape), generator=torch.Generator().manual_seed(4))
    grid = torch.zeros(4, *image_view(shape), dtype=torch.long)
    stepped = torch.zeros(4, levels, *image_view(shape), dtype=torch.float64)
    with torch.no_grad():
        full = model.conditionals(x)
        for c, i, j, out in model.steps(grid):
            stepped[:, :, c, i, j] = model.likelihood.level_log_probs(out)
            grid[:, c, i, j] = x[:, c, i, j]
    torch.testing.assert_close(stepped, full, rtol=0, atol=1e-10)


def test_vectors_and_many_levels_and_the_defaults():
    model = registry.build("autoregressive", {}, 300, (6,))
    assert model.config.arch == "transformer" and model.config.output == "logistic-mixture"
    image = registry.build("autoregressive", {}, 17, (1, 8, 8))
    assert image.config.arch == "pixelcnn" and image.config.output == "categorical"
    x = torch.randint(0, 300, (5, 6))
    assert model.bound(x).nats.shape == (5,)
    s = model.sample(3, torch.Generator().manual_seed(0))
    assert s.shape == (3, 6) and 0 <= s.min() and s.max() < 300


@pytest.mark.parametrize("options,levels,shape", [({}, None, (2,)), ({"kernel": 4}, 5, (1, 4, 4)),
                                                  ({"dropout": 1.0}, 5, (3,)), ({"colour": 1}, 5, (3,)),
                                                  ({"width": 6, "heads": 4, "arch": "transformer"}, 5, (3,))])
def test_bad_input_is_refused_with_one_sentence(options, levels, shape):
    with pytest.raises(UserError):
        registry.build("autoregressive", options, levels, shape)


def test_unknown_estimator_is_refused():
    model = build("transformer", "categorical", 3, (2,))
    with pytest.raises(UserError):
        model.bound(torch.zeros(1, 2, dtype=torch.long), estimator="iwae")


def test_train_eval_and_sample_through_the_command_line(tmp_path, capsys, request):
    import json

    from lowerbound.cli import main

    d = tmp_path / "ar"
    # a run flushes denormals process-wide (train.runtime); later tests in this process need them
    request.addfinalizer(lambda: torch.set_flush_denormal(False))
    assert main(["train", "autoregressive", "--data", "digits", "--steps", "2", "--eval-every", "1",
                 "--set", "model.width=8", "--set", "model.layers=1", "--set", "num_samples=4",
                 "--run-dir", str(d), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["estimator"] == "exact" and set(out["terms"]) == {"nll"} and 2 < out["bits_per_dim"] < 5
    assert sorted(p.name for p in (d / "samples").glob("*.png")) == ["final.png"]
    assert main(["sample", str(d), "-n", "4", "-o", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").is_file()
