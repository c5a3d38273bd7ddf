"""The VAE against its oracles: probabilistic PCA in closed form (Tipping & Bishop 1999), the exact
ELBO and log p(x) of a linear-Gaussian model, IWAE >= ELBO and its monotonicity in K (Burda et al.
2016), and the identities KL = 0, reconstruction = log P(x) when the decoder ignores z."""

import math

import pytest
import torch
from torch.distributions import MultivariateNormal

from lowerbound.errors import UserError
from lowerbound.models import registry
from lowerbound.models.vae import VAE, VAEConfig

from ..coverage import assert_coverage

D, L, N = 5, 2, 1000


def ppca_data(seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(D, L, generator=g, dtype=torch.float64) * 1.5
    b = torch.randn(D, generator=g, dtype=torch.float64)
    z = torch.randn(N, L, generator=g, dtype=torch.float64)
    return z @ w.T + b + 0.5 * torch.randn(N, D, generator=g, dtype=torch.float64)


def ppca_max_log_likelihood(x):
    """Mean log-likelihood per example at the PPCA maximum (Tipping & Bishop 1999, eqs. 7-8)."""
    xc = x - x.mean(0)
    s = xc.T @ xc / len(x)
    evals, evecs = torch.linalg.eigh(s)
    evals, evecs = evals.flip(0), evecs.flip(1)
    sigma2 = evals[L:].mean()
    w = evecs[:, :L] * (evals[:L] - sigma2).sqrt()
    c = w @ w.T + sigma2 * torch.eye(D, dtype=x.dtype)
    return float(-0.5 * (D * math.log(2 * math.pi) + torch.logdet(c) + torch.trace(torch.linalg.solve(c, s))))


def linear_parts(model):
    """(W [D, L], b [D], noise variance) of a linear-Gaussian decoder."""
    lin = model.decoder.net[0]
    return lin.weight, lin.bias, torch.exp(2 * model.likelihood.log_scale)


def exact_log_px(model, x):
    """log p(x) = log N(x; b, W W^T + s^2 I): [B] nats."""
    w, b, s2 = linear_parts(model)
    return MultivariateNormal(b, w @ w.T + s2 * torch.eye(D, dtype=x.dtype)).log_prob(x)


def exact_elbo(model, x):
    """E_q[log p(x|z)] - KL(q || p) for the linear-Gaussian decoder, in closed form: [B] nats."""
    w, b, s2 = linear_parts(model)
    q = model.posterior(x)
    resid = x - q.loc @ w.T - b
    spread = (q.scale**2) @ (w**2).T  # diag(W diag(var) W^T)
    recon = -0.5 * (D * torch.log(2 * math.pi * s2) + ((resid**2 + spread) / s2).sum(1))
    return recon - model.kl_per_dim(q).sum(1)


def linear_vae():
    config = VAEConfig(hidden=(), latent_dim=L, decoder="gaussian", gaussian_scale="shared")
    return VAE(config, None, (D,)).double()


@pytest.fixture(scope="module")
def trained_ppca(one_thread):
    torch.manual_seed(0)
    x = ppca_data()
    model = linear_vae()
    g = torch.Generator().manual_seed(1)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 600)
    for _ in range(600):
        loss = model.loss(x, generator=g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model.eval(), x


def test_linear_vae_reaches_the_ppca_maximum_likelihood(trained_ppca):
    model, x = trained_ppca
    best = ppca_max_log_likelihood(x)
    with torch.no_grad():
        reached = float(exact_log_px(model, x).mean())
        elbo = float(exact_elbo(model, x).mean())
    assert reached <= best + 1e-9  # the maximum cannot be beaten on its own data
    assert best - reached < 0.01
    # a diagonal q is exact at the PPCA optimum (Lucas et al. 2019): the ELBO is tight there too
    assert 0 <= reached - elbo < 0.03


def test_elbo_estimate_matches_its_closed_form(trained_ppca):
    model, x = trained_ppca
    with torch.no_grad():
        b = model.bound(x, samples=64, generator=torch.Generator().manual_seed(100))
        exact = -exact_elbo(model, x)
    err = b.nats - exact
    stderr = b.variance.sum().sqrt() / len(x)  # of the mean over examples
    assert abs(float(err.mean())) < 4 * float(stderr) + 1e-9


def perturbed(model):
    """The trained model with a poor encoder: a wide, shifted q, so the ELBO gap is large."""
    bad = linear_vae()
    bad.load_state_dict(model.state_dict())
    with torch.no_grad():
        bad.encoder.net[0].bias[L:] += 0.5  # log-scales: q 1.6 times too wide
        bad.encoder.net[0].bias[:L] += 0.3
    return bad.eval()


def test_iwae_converges_to_the_exact_log_likelihood(trained_ppca):
    model, x = trained_ppca
    bad = perturbed(model)
    bad.config.chunk_elements = 200 * D * 300  # forces 7 chunks of 300 draws for K = 2000
    x = x[:200]
    with torch.no_grad():
        truth = -exact_log_px(bad, x)
        elbo = -exact_elbo(bad, x)
        b = bad.bound(x, estimator="iwae", samples=2000, generator=torch.Generator().manual_seed(3))
    assert b.estimator == "iwae-k=2000"
    assert float((elbo - truth).mean()) > 3  # the oracle is not trivial: the ELBO is 5 nats off
    assert -0.01 < float((b.nats - truth).mean()) < 0.03  # from above: the bias of IWAE is >= 0
    assert torch.allclose(b.extras["gap"], b.extras["elbo"] - b.nats)
    assert abs(float((b.extras["elbo"] - elbo).mean())) < 0.05  # the K-draw ELBO estimates the ELBO


def test_iwae_and_elbo_variances_cover_their_expectations(trained_ppca):
    """Bound.variance pooled over 100 examples, as eval reports it (sqrt(sum var_i) / n): over 200
    repeats the 95% interval of the mean holds the mean of E[IWAE-50] (from 300 repeats) and of the
    closed-form ELBO within binomial error.  (Per example, with only 50 weights each, the jackknife
    interval holds E[IWAE-50] 92% of the time here: the weights' skew makes a low estimate and a low
    variance go together.)"""
    model, x = trained_ppca
    bad = perturbed(model)
    x = x[:100]
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        expected = torch.stack([bad.bound(x, estimator="iwae", samples=50, generator=g).nats
                                for _ in range(300)]).mean()
        iwae = [bad.bound(x, estimator="iwae", samples=50, generator=g) for _ in range(200)]
        elbos = [bad.bound(x, samples=4, generator=g) for _ in range(200)]
        exact = -exact_elbo(bad, x).mean()
    for runs, want in ((iwae, expected), (elbos, exact)):
        assert_coverage(torch.stack([r.nats.mean() for r in runs]),
                        torch.stack([r.variance.sum().sqrt() / len(x) for r in runs]), want)


def test_iwae_is_above_the_elbo_and_monotone_in_k(trained_ppca):
    model, x = trained_ppca
    bad = perturbed(model)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        elbo = -exact_elbo(bad, x)
        nll = [bad.bound(x, estimator="iwae", samples=k, generator=g).nats for k in (1, 4, 16, 64)]
    diff = nll[0] - elbo  # IWAE-1 is the one-draw ELBO: unbiased for it
    assert abs(float(diff.mean())) < 4 * float(diff.std()) / math.sqrt(len(x))
    means = [float(v.mean()) for v in nll]
    assert all(a > b for a, b in zip(means, means[1:]))
    assert float(elbo.mean()) > means[1]


def test_kl_is_zero_and_reconstruction_is_log_p_when_the_decoder_ignores_z():
    model = VAE(VAEConfig(hidden=(), latent_dim=3), 5, (4,)).double()
    with torch.no_grad():
        model.decoder.net[0].weight.zero_()
        model.encoder.net[0].weight.zero_()
        model.encoder.net[0].bias.zero_()  # q(z|x) = N(0, I) = p(z)
    x = torch.randint(0, 5, (16, 4), generator=torch.Generator().manual_seed(0))
    logits = model.decoder.net[0].bias.view(5, 4)
    log_p = torch.log_softmax(logits, 0).gather(0, x).sum(1)  # [16]
    g = torch.Generator().manual_seed(1)
    b = model.bound(x, generator=g)
    assert torch.equal(b.terms["kl"], torch.zeros(16, dtype=torch.float64))
    assert torch.allclose(-b.terms["reconstruction"], log_p)
    iw = model.bound(x, estimator="iwae", samples=10, generator=g)
    assert torch.allclose(-iw.nats, log_p) and torch.allclose(iw.extras["gap"], torch.zeros(16).double())


def test_free_bits_and_beta_warmup_shape_the_training_kl():
    x = torch.randint(0, 5, (8, 4), generator=torch.Generator().manual_seed(0))
    model = registry.build("vae", {"hidden": [], "latent_dim": 3, "free_bits": 0.25}, 5, (4,))
    with torch.no_grad():
        model.encoder.net[0].weight.zero_()
        model.encoder.net[0].bias.zero_()  # KL = 0 < 0.25: every dimension is free
    loss = model.loss(x)
    assert loss.estimator == "elbo(free-bits=0.25)"
    assert torch.allclose(loss.terms["kl"], torch.full((8,), 0.75))
    warm = registry.build("vae", {"beta": 0.5, "warmup_steps": 4, "dropout": 0.0}, 5, (4,)).train()
    q = warm.posterior(x)
    kl = warm.kl_per_dim(q).sum(1)
    for step in (1, 2):
        loss = warm.loss(x)
        assert torch.allclose(loss.terms["kl"], 0.5 * step / 4 * kl)
    assert warm.loss(x).estimator == "elbo(beta=0.5,warmup=4)"


def test_iwae_objective_and_estimator_names():
    model = registry.build("vae", {"objective": "iwae", "k": 5, "hidden": [16]}, 5, (4,))
    x = torch.randint(0, 5, (8, 4), generator=torch.Generator().manual_seed(0))
    assert model.loss(x).estimator == "iwae-k=5"
    assert model.bound(x).estimator == "elbo"
    assert model.bound(x, estimator="iwae", samples=7).estimator == "iwae-k=7"
    assert model.bound(x, estimator="iwae", samples=1).variance is None  # one weight: no error bar
    assert torch.isfinite(model.bound(x, estimator="iwae", samples=2).variance).all()  # two: the jackknife


@pytest.mark.parametrize("options", [{"architecture": "conv", "channels": [4, 8], "conv_hidden": 16},
                                     {"architecture": "mlp", "hidden": [16]}])
@pytest.mark.parametrize("shape", [(1, 7, 5), (2, 8, 8)])
def test_a_decoder_that_ignores_z_gives_the_exact_probability_on_images(options, shape):
    """q(z|x) = p(z) and a decoder that ignores z: the ELBO and IWAE are log P(x) exactly, the sum over
    pixels of the log-softmax of the decoder's one output; the KL is 0 in every latent dimension, the
    reconstruction is the output's argmax and samples follow its softmax (within Monte Carlo error)."""
    model = registry.build("vae", {**options, "latent_dim": 3}, 17, shape).double().eval()
    conv = options["architecture"] == "conv"
    with torch.no_grad():
        (model.decoder.head[0] if conv else model.decoder.net[0]).weight.zero_()
        model.encoder.net[-1].weight.zero_()
        model.encoder.net[-1].bias.zero_()
        logits = model.decoder(torch.zeros(1, 3, dtype=torch.float64)).reshape(17, *shape)
    log_p = torch.log_softmax(logits, 0)  # [K, *shape]
    x = torch.randint(0, 17, (6, *shape), generator=torch.Generator().manual_seed(0))
    exact = torch.stack([log_p.reshape(17, -1).gather(0, xi.reshape(1, -1)).sum() for xi in x])
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        elbo = model.bound(x, generator=g)
        iwae = model.bound(x, estimator="iwae", samples=3, generator=g)
        draws = model.sample(2000, g)
    assert torch.equal(elbo.terms["kl"], torch.zeros(6, dtype=torch.float64))
    torch.testing.assert_close(-elbo.terms["reconstruction"], exact)
    torch.testing.assert_close(-iwae.nats, exact)
    assert torch.equal(model.reconstruct(x), logits.argmax(0).expand(6, *shape))
    probs = log_p.exp()
    freq = torch.stack([(draws == k).double().mean(0) for k in range(17)])
    assert ((freq - probs).abs() <= 5 * (probs * (1 - probs) / 2000).sqrt() + 1e-3).all()
    diag = model.diagnostics(x)
    assert diag["kl_per_dim"] == [0.0, 0.0, 0.0] and diag["active_units"] == 0


@pytest.mark.parametrize("options, levels, shape", [
    ({"architecture": "conv"}, 17, (64,)),
    ({"decoder": "bernoulli"}, 17, (4,)),
    ({"decoder": "categorical"}, None, (4,)),
    ({"objective": "iwae", "beta": 0.5}, 17, (4,)),
    ({"latent_dim": 0}, 17, (4,)),
    ({"no_such_option": 1}, 17, (4,)),
])
def test_bad_options_are_refused_with_one_sentence(options, levels, shape):
    with pytest.raises(UserError, match=r"\.$"):
        registry.build("vae", options, levels, shape)


def test_unknown_estimator_is_refused():
    model = registry.build("vae", {"hidden": [8]}, 5, (4,))
    x = torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(UserError, match="no estimator"):
        model.bound(x, estimator="exact")
    with pytest.raises(UserError, match="at least 1"):
        model.bound(x, estimator="iwae", samples=0)
