"""The VAE's output likelihoods: normalized over the levels, consistent with a naive reference
computation, sampled with the right frequencies (within Monte Carlo error), and, for the dequantized
Gaussian, a density whose dequantization bound stays below the discrete probability (Jensen)."""

import math

import pytest
import torch
from torch.distributions import Normal

from lowerbound.errors import UserError
from lowerbound.models.decoders import DECODERS, make_decoder

SHAPE = (2, 3)


def random_out(decoder, batch=4, seed=0, spread=2.0):
    g = torch.Generator().manual_seed(seed)
    return spread * torch.randn(batch, decoder.num_params, *SHAPE, generator=g, dtype=torch.float64)


DISCRETE = [("categorical", 7, {}), ("bernoulli", 2, {}),
            ("discretized-logistic", 7, {"mixtures": 1}), ("discretized-logistic", 17, {"mixtures": 3})]


@pytest.mark.parametrize("name, levels, options", DISCRETE)
def test_probabilities_sum_to_one_over_the_levels(name, levels, options):
    dec = make_decoder(name, levels, SHAPE, **options)
    lp = dec.level_log_probs(random_out(dec))  # [B, K, *shape]
    assert lp.shape == (4, levels, *SHAPE)
    assert torch.allclose(torch.logsumexp(lp, 1), torch.zeros(4, *SHAPE, dtype=torch.float64), atol=1e-10)


@pytest.mark.parametrize("name, levels, options", DISCRETE)
def test_log_prob_is_the_sum_of_the_per_dimension_level_probabilities(name, levels, options):
    dec = make_decoder(name, levels, SHAPE, **options)
    out = random_out(dec, seed=1)
    x = torch.randint(0, levels, (4, *SHAPE), generator=torch.Generator().manual_seed(2))
    per_dim = dec.level_log_probs(out).gather(1, x.unsqueeze(1)).squeeze(1)
    assert torch.allclose(dec.log_prob(x, out), per_dim.sum((1, 2)), atol=1e-10)


def test_discretized_logistic_matches_a_naive_cdf_difference():
    """Reference: P(k) = sum_m pi_m (F((y_k + w/2 - mu_m) / s_m) - F((y_k - w/2 - mu_m) / s_m)),
    F the logistic CDF, the outer bins extended to -inf and +inf."""
    levels, m = 9, 2
    dec = make_decoder("discretized-logistic", levels, SHAPE, mixtures=m)
    out = random_out(dec, seed=3, spread=1.0)
    pi = torch.softmax(out[:, :m], 1)
    mu, s = out[:, m:2 * m], out[:, 2 * m:].exp()
    w = 2 / (levels - 1)
    probs = []
    for k in range(levels):
        y = -1 + k * w
        hi = torch.sigmoid((y + w / 2 - mu) / s) if k < levels - 1 else torch.ones_like(mu)
        lo = torch.sigmoid((y - w / 2 - mu) / s) if k > 0 else torch.zeros_like(mu)
        probs.append((pi * (hi - lo)).sum(1))
    ref = torch.stack(probs, 1).log()
    assert torch.allclose(dec.level_log_probs(out), ref, atol=1e-9)


def test_discretized_logistic_is_finite_in_the_tails():
    dec = make_decoder("discretized-logistic", 256, SHAPE)
    out = torch.zeros(3, 3, *SHAPE, dtype=torch.float32)
    out[0, 1], out[0, 2] = 50.0, -7.0  # mean far above every bin, tiny scale
    out[1, 1], out[1, 2] = -50.0, -7.0
    out[2, 1], out[2, 2] = 0.0, -20.0  # scale clamped
    for k in (0, 128, 255):
        lp = dec.log_prob(torch.full((3, *SHAPE), k), out)
        assert torch.isfinite(lp).all()


@pytest.mark.parametrize("name, levels, options", DISCRETE)
def test_samples_follow_the_probabilities_and_mode_is_their_argmax(name, levels, options):
    dec = make_decoder(name, levels, SHAPE, **options)
    out = random_out(dec, batch=1, seed=4, spread=1.0)
    n = 10000
    draws = dec.sample(out.expand(n, *out.shape[1:]), torch.Generator().manual_seed(5))  # [n, *shape]
    probs = dec.level_log_probs(out)[0].exp()  # [K, *shape]
    freq = torch.stack([(draws == k).double().mean(0) for k in range(levels)])
    stderr = (probs * (1 - probs) / n).sqrt()
    assert ((freq - probs).abs() <= 5 * stderr + 1e-3).all()
    assert torch.equal(dec.mode(out)[0], probs.argmax(0))


def test_gaussian_on_continuous_data_is_the_normal_density():
    dec = make_decoder("gaussian", None, SHAPE)
    out = random_out(dec, seed=6, spread=0.5)
    x = torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    ref = Normal(out[:, 0], out[:, 1].exp()).log_prob(x).sum((1, 2))
    assert torch.allclose(dec.log_prob(x, out), ref)
    assert torch.equal(dec.mode(out), out[:, 0])


def test_gaussian_shared_scale_is_one_learned_parameter():
    dec = make_decoder("gaussian", None, SHAPE, scale="shared")
    assert dec.num_params == 1 and [p.shape for p in dec.parameters()] == [torch.Size([])]
    with torch.no_grad():
        dec.log_scale.fill_(math.log(0.3))
    out = torch.zeros(2, 1, *SHAPE, dtype=torch.float64)
    x = torch.ones(2, *SHAPE, dtype=torch.float64)
    assert torch.allclose(dec.log_prob(x, out), Normal(0.0, 0.3).log_prob(x).sum((1, 2)))


def test_dequantized_gaussian_is_unbiased_for_its_closed_form_and_below_the_bin_mass():
    """E_u[log N(y + u; m, s^2)] + log w has a closed form, u ~ U(-w/2, w/2):
    -log(s sqrt(2 pi)) - ((y - m)^2 + w^2 / 12) / (2 s^2) + log w.  The Monte Carlo mean of log_prob
    over u is within its standard error of it, and the closed form is below log P(bin) (Jensen)."""
    levels, n = 5, 4000
    dec = make_decoder("gaussian", levels, (1,))
    mean, s = 0.2, 0.4
    out = torch.tensor([[[mean], [math.log(s)]]], dtype=torch.float64).expand(n, 2, 1)
    g = torch.Generator().manual_seed(8)
    w = 2 / (levels - 1)
    normal = Normal(mean, s)
    for k in range(levels):
        lp = dec.log_prob(torch.full((n, 1), k), out, g)
        y = -1 + k * w
        spread = ((y - mean) ** 2 + w ** 2 / 12) / (2 * s ** 2)
        closed = -math.log(s * math.sqrt(2 * math.pi)) - spread + math.log(w)
        assert abs(float(lp.mean()) - closed) < 4 * float(lp.std()) / math.sqrt(n), (k, float(lp.mean()))
        inner = torch.log(normal.cdf(torch.tensor(y + w / 2)) - normal.cdf(torch.tensor(y - w / 2)))
        assert closed <= float(inner)


def test_bad_data_for_a_decoder_is_refused_with_one_sentence():
    with pytest.raises(UserError, match="binary"):
        make_decoder("bernoulli", 17, SHAPE)
    for name in ("categorical", "discretized-logistic"):
        with pytest.raises(UserError, match="discrete data"):
            make_decoder(name, None, SHAPE)
    with pytest.raises(UserError, match="Unknown decoder"):
        make_decoder("poisson", 17, SHAPE)
    assert {"categorical", "discretized-logistic", "bernoulli", "gaussian"} <= set(DECODERS)
