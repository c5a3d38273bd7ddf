"""Vector flows from zuko (Rozet et al., github.com/probabilists/zuko), behind our `Bijection`:

- nsf:     neural spline flow, monotonic rational-quadratic splines on [-5, 5] (identity outside)
           with a linear tail (Durkan et al. 2019, "Neural Spline Flows"); `passes=2` makes each
           transform a coupling layer, so both directions cost one pass; `passes=0` is the fully
           autoregressive variant, whose inverse (sampling) costs D passes.
- realnvp: affine coupling layers with alternating masks (Dinh et al. 2017, "Density estimation
           using Real NVP").  Both directions cost one pass.
- maf:     masked autoregressive flow with affine transforms (Papamakarios et al. 2017).  Density
           evaluation (x -> z) is one pass; sampling (z -> x) is D sequential passes, the slow one.

zuko's flows carry their own N(0, I) base; we use only their transforms (`flow.transform(context)`,
whose `call_and_ladj` maps x -> z with log |det|, and `.inv` maps back), and keep the base ourselves.
"""

from __future__ import annotations

from torch import Tensor

from .base import Bijection


def zuko_flow(arch: str, features: int, *, context: int = 0, transforms: int = 4,
              hidden: tuple[int, ...] = (128, 128), bins: int = 8, passes: int = 2):
    """A zuko lazy flow of `arch` over `features` dimensions (conditioned on `context` features)."""
    import zuko

    common = {"context": context, "transforms": transforms, "hidden_features": tuple(hidden)}
    if arch == "nsf":
        return zuko.flows.NSF(features, bins=bins, passes=passes or None, **common)
    if arch == "realnvp":
        return zuko.flows.RealNVP(features, **common)
    if arch == "maf":
        return zuko.flows.MAF(features, **common)
    raise ValueError(f"unknown vector flow arch {arch!r}")


class ZukoBijection(Bijection):
    """A zuko flow's transform on [B, D] (context [B, C] or None), x -> z."""

    def __init__(self, arch: str, features: int, **options):
        super().__init__()
        self.flow = zuko_flow(arch, features, **options)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.flow.transform(context).call_and_ladj(x)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        return self.flow.transform(context).inv(z)

    def inverse_and_ladj(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.flow.transform(context).inv.call_and_ladj(z)
