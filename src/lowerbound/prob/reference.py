"""A reference model with exact evidence and posterior: the linear Gaussian (probabilistic PCA / factor
analysis with isotropic noise; Tipping & Bishop 1999, "Probabilistic Principal Component Analysis";
Bishop, "Pattern Recognition and Machine Learning" (2006), sec. 2.3.3 and 12.2).

    z ~ N(0, I_d),   x | z ~ N(W z + b, s^2 I_D)
    p(x)     = N(x; b, W W^T + s^2 I_D)
    p(z | x) = N(z; S W^T (x - b) / s^2, S),   S = (I_d + W^T W / s^2)^{-1}

Everything an estimator of log p(x) can be checked against: `log_evidence`, `posterior`, `log_joint`.
"""

from __future__ import annotations

import torch
import torch.distributions as D
from torch import Tensor

from ..errors import UserError


class LinearGaussian:
    """W [D, d], b [D], noise_std s > 0 (a float).  Data x: [*batch, D]; latents z: [*batch, d]."""

    def __init__(self, W: Tensor, b: Tensor, noise_std: float) -> None:
        W, b = torch.as_tensor(W), torch.as_tensor(b)
        if W.dim() != 2:
            raise UserError(f"W must be a matrix [data_dim, latent_dim], got shape {tuple(W.shape)}.")
        if b.shape != W.shape[:1]:
            raise UserError(f"b must have shape [{W.shape[0]}] to match W, got {tuple(b.shape)}.")
        noise_std = float(noise_std)
        if not noise_std > 0.0:
            raise UserError(f"noise_std must be positive, got {noise_std}.")
        self.W, self.b, self.noise_std = W, b.to(W.dtype), noise_std
        eye = torch.eye(W.shape[1], dtype=W.dtype, device=W.device)
        # built once, valid by construction (validation would re-check the identity at every call)
        self._prior = D.MultivariateNormal(W.new_zeros(W.shape[1]), scale_tril=eye, validate_args=False)

    @classmethod
    def random(
        cls,
        latent_dim: int,
        data_dim: int,
        *,
        noise_std: float = 0.5,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> LinearGaussian:
        """A model with W, b ~ N(0, 1) entries drawn from `generator`."""
        W = torch.randn(data_dim, latent_dim, generator=generator, dtype=dtype)
        b = torch.randn(data_dim, generator=generator, dtype=dtype)
        return cls(W, b, noise_std)

    @property
    def latent_dim(self) -> int:
        return self.W.shape[1]

    @property
    def data_dim(self) -> int:
        return self.W.shape[0]

    def prior(self) -> D.MultivariateNormal:
        """p(z) = N(0, I_d)."""
        return self._prior

    def likelihood(self, z: Tensor) -> D.Independent:
        """p(x | z) = N(W z + b, s^2 I) for z [*batch, d]; event shape [D]."""
        mean = z @ self.W.T + self.b
        return D.Independent(D.Normal(mean, torch.full_like(mean, self.noise_std), validate_args=False), 1,
                             validate_args=False)

    def marginal(self) -> D.MultivariateNormal:
        """p(x) = N(b, W W^T + s^2 I_D)."""
        cov = self.W @ self.W.T + self.noise_std**2 * torch.eye(self.data_dim, dtype=self.W.dtype)
        return D.MultivariateNormal(self.b, covariance_matrix=cov)

    def log_evidence(self, x: Tensor) -> Tensor:
        """log p(x) in nats, [*batch], exact."""
        return self.marginal().log_prob(self._check_x(x))

    def posterior(self, x: Tensor) -> D.MultivariateNormal:
        """p(z | x) with batch shape [*batch] and event shape [d], exact."""
        x = self._check_x(x)
        s2 = self.noise_std**2
        precision = torch.eye(self.latent_dim, dtype=self.W.dtype) + self.W.T @ self.W / s2
        chol = torch.linalg.cholesky(precision)
        cov = torch.cholesky_inverse(chol)
        mean = ((x - self.b) @ self.W / s2) @ cov  # cov is symmetric: (cov W^T (x - b))^T
        return D.MultivariateNormal(mean, covariance_matrix=cov.expand(*mean.shape[:-1], -1, -1))

    def log_joint(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x, z) = log p(z) + log p(x | z) in nats.

        x [*batch, D], z [*sample, *batch, d] -> [*sample, *batch]."""
        x = self._check_x(x)
        if z.shape[-1:] != (self.latent_dim,):
            raise UserError(f"z must end in the latent dimension {self.latent_dim}, "
                            f"got shape {tuple(z.shape)}.")
        return self.prior().log_prob(z) + self.likelihood(z).log_prob(x)

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(z [n, d], x [n, D]) drawn from the joint."""
        z = torch.randn(n, self.latent_dim, generator=generator, dtype=self.W.dtype)
        eps = torch.randn(n, self.data_dim, generator=generator, dtype=self.W.dtype)
        return z, z @ self.W.T + self.b + self.noise_std * eps

    def _check_x(self, x: Tensor) -> Tensor:
        x = torch.as_tensor(x)
        if x.shape[-1:] != (self.data_dim,):
            raise UserError(f"x must end in the data dimension {self.data_dim}, got shape {tuple(x.shape)}.")
        return x.to(self.W.dtype)
