"""Sanity check by cascading model-parameter randomisation (Adebayo et al., NeurIPS 2018).

Starting from the top (the classifier), layers with parameters are re-initialised one after the
other, cumulatively, on a *copy* of the model; after each step the map is recomputed and compared
with the original map. A map that depends on what the model learned must drift away: its Spearman
rank correlation and SSIM-like similarity with the original drop.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

from medcam.cam import create_extractor

__all__ = ["RandomisationStep", "ssim_global", "cascading_randomisation"]


def ssim_global(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM over the whole map (one window), after min-max scaling each map to [0, 1].

    ``((2 mu_a mu_b + c1)(2 s_ab + c2)) / ((mu_a^2 + mu_b^2 + c1)(s_a^2 + s_b^2 + c2))`` with the
    usual constants for a unit range, c1 = 0.01^2 and c2 = 0.03^2.
    """

    def unit(v):
        v = np.asarray(v, dtype=np.float64).ravel()
        span = v.max() - v.min()
        return (v - v.min()) / span if span > 0 else np.zeros_like(v)

    a, b = unit(a), unit(b)
    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = a.mean(), b.mean()
    cov = ((a - mu_a) * (b - mu_b)).mean()
    return float(((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (a.var() + b.var() + c2)))


@dataclass(frozen=True)
class RandomisationStep:
    """One step of cascading randomisation: the layer re-initialised and the map's similarity to the original."""
    layer: str
    spearman: float
    ssim: float


def _parameter_layers(model: nn.Module) -> list[str]:
    """Names of modules that own weights, from the output back to the input."""
    names = [name for name, module in model.named_modules() if name and any(True for _ in module.parameters(recurse=False))]
    return names[::-1]


def cascading_randomisation(
    model: nn.Module, x: torch.Tensor, target: int, *, method: str = "cam", layer: str | None = None,
    fc_layer: str | None = None, seed: int = 0
) -> list[RandomisationStep]:
    """Similarity of the map to the original after each cumulative re-initialisation, top down.

    The caller's model is never modified: the randomisation happens on a deep copy.
    """
    with create_extractor(method, model, layer, fc_layer=fc_layer) as extractor:
        original = extractor(x, target=target).map[0].cpu().numpy().ravel()
    randomised = copy.deepcopy(model)
    modules = dict(randomised.named_modules())
    generator = torch.Generator().manual_seed(seed)
    steps = []
    for name in _parameter_layers(randomised):
        module = modules[name]
        with torch.no_grad():
            for parameter in module.parameters(recurse=False):
                if parameter.dim() > 1:
                    bound = 1.0 / np.sqrt(parameter[0].numel())
                    parameter.copy_(torch.empty_like(parameter).uniform_(-bound, bound, generator=generator))
                else:
                    parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1 + (1.0 if "weight" in name else 0.0))
        with create_extractor(method, randomised, layer, fc_layer=fc_layer) as extractor:
            current = extractor(x, target=target).map[0].cpu().numpy().ravel()
        rho = spearmanr(original, current).statistic
        steps.append(RandomisationStep(name, float(0.0 if np.isnan(rho) else rho), ssim_global(original, current)))
    return steps
