"""What every CAM method shares: the result type, target selection, upsampling, and the extractor
context manager that hooks one layer and restores the model exactly as it found it.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from medcam.errors import CamError

__all__ = ["CamResult", "CamExtractor", "resolve_layer", "resolve_targets", "upsample", "weighted_sum"]


@dataclass(frozen=True, eq=False)
class CamResult:
    """Maps for one batch, on the model's input grid and at feature resolution.

    Attributes
    ----------
    map : Tensor ``(N, *input_spatial)``
        Raw map upsampled to the input grid (linear interpolation, ``align_corners=False``).
        Raw means not normalised and not rectified: higher is always more evidence *for* the
        target class, and negative values are evidence against it.
    feature_map : Tensor ``(N, *feature_spatial)``
        The same map on the target layer's grid.
    target : Tensor ``(N,)``  class explained per sample.
    score : Tensor ``(N,)``   logit of that class.
    probability : Tensor ``(N,)``  its softmax probability.
    method, layer : str
    """

    map: torch.Tensor
    feature_map: torch.Tensor
    target: torch.Tensor
    score: torch.Tensor
    probability: torch.Tensor
    method: str
    layer: str

    def __len__(self) -> int:
        return int(self.target.numel())


def resolve_layer(model: nn.Module, name: str) -> nn.Module:
    """The sub-module called ``name`` (as in ``model.named_modules()``), or a CamError naming the
    closest names."""
    modules = dict(model.named_modules())
    if name in modules and name != "":
        return modules[name]
    names = [n for n in modules if n]
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    hint = (f"did you mean {', '.join(repr(c) for c in close)}?" if close
            else f"it has {len(names)} named layers, the last ones {', '.join(names[-5:])}")
    raise CamError(f"layer {name!r} not found in {type(model).__name__}; {hint}")


def resolve_targets(target: int | Sequence[int] | torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor:
    """Class index per sample: None -> predicted class; an int -> that class for all samples."""
    batch, num_classes = logits.shape
    if target is None:
        return logits.argmax(dim=1)
    targets = torch.as_tensor(target, dtype=torch.long, device=logits.device).reshape(-1)
    if targets.numel() == 1:
        targets = targets.expand(batch)
    if targets.numel() != batch:
        raise CamError(f"{targets.numel()} targets for a batch of {batch}; give one class per sample, or one for all")
    if targets.min() < 0 or targets.max() >= num_classes:
        raise CamError(f"target classes {targets.tolist()} outside 0..{num_classes - 1}")
    return targets


def upsample(feature_map: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``(N, *spatial)`` -> ``(N, *size)`` by (bi/tri)linear interpolation, ``align_corners=False``.

    On the CPU, when every size is a whole multiple of the map's, the interpolation is done one
    axis at a time: the innermost by torch's 1D linear kernel, the outer ones by
    :func:`_upsample_axis`. The same values as ``F.interpolate`` to float32 rounding, about 4.5
    times faster at 64^3 -> 128^3, which matters for CAM, whose only cost beyond the forward pass
    this is. Otherwise (and on a GPU) ``F.interpolate`` does it in one call.
    """
    size = tuple(int(n) for n in size)
    spatial = tuple(feature_map.shape[1:])
    if feature_map.device.type == "cpu" and len(size) == len(spatial) and all(n % m == 0 for n, m in zip(size, spatial)):
        result = feature_map
        if size[-1] != spatial[-1]:  # the innermost axis first, while the tensor is smallest: torch's 1D kernel
            rows = F.interpolate(result.reshape(-1, 1, spatial[-1]), size=size[-1], mode="linear", align_corners=False)
            result = rows.reshape(*result.shape[:-1], size[-1])
        for dim in range(len(size) - 1, 0, -1):  # then the outer axes, whole rows and planes at a time
            if size[dim - 1] != spatial[dim - 1]:
                result = _upsample_axis(result, dim, size[dim - 1] // spatial[dim - 1])
        return result if result is not feature_map else feature_map.clone()
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(size)]
    return F.interpolate(feature_map.unsqueeze(1), size=size, mode=mode, align_corners=False).squeeze(1)


def _upsample_axis(x: torch.Tensor, dim: int, factor: int) -> torch.Tensor:
    """Linear upsampling by a whole ``factor`` along ``dim``, ``align_corners=False``.

    Output ``j = i * factor + r`` sits at input coordinate ``i + d_r``, ``d_r = (r + 0.5) /
    factor - 0.5``: between ``x[i - 1]`` and ``x[i]`` when ``d_r < 0``, else between ``x[i]``
    and ``x[i + 1]``; past the edges the edge value holds (as ``F.interpolate`` clamps). So each
    residue ``r`` is one ``lerp`` of two shifted views of the input, written straight into its
    interleaved slots of the output (an outer axis moves whole rows or planes), plus one edge slice.
    """
    n = x.shape[dim]
    shape = list(x.shape)
    shape[dim] = n * factor
    out = x.new_empty(shape)
    slots = out.unflatten(dim, (n, factor))
    for r in range(factor):
        offset = (r + 0.5) / factor - 0.5
        target = slots.select(dim + 1, r)
        # i = 1..n-1 from (x[i-1], x[i]) when below the centre, i = 0..n-2 from (x[i], x[i+1]) above
        inner, edge = (target.narrow(dim, 1, n - 1), 0) if offset < 0 else (target.narrow(dim, 0, n - 1), n - 1)
        if n > 1:
            torch.lerp(x.narrow(dim, 0, n - 1), x.narrow(dim, 1, n - 1), offset + 1.0 if offset < 0 else offset, out=inner)
        target.narrow(dim, edge, 1).copy_(x.narrow(dim, edge, 1))
    return out


def weighted_sum(weights: torch.Tensor, activation: torch.Tensor) -> torch.Tensor:
    """``sum_k w_k A_k(s)`` for per-sample channel weights (N, K) or (N, K, 1, ...) and an
    activation ``(N, K, *S)``: one batched matrix product, no ``(N, K, *S)`` temporary."""
    n, k = activation.shape[:2]
    return torch.bmm(weights.reshape(n, 1, k), activation.reshape(n, k, -1)).reshape(n, *activation.shape[2:])


class CamExtractor:
    """Base of every method: a context manager around one model and one target layer.

    Entering registers a forward hook on the layer; leaving removes it, even after an
    exception. A layer that runs more than once in a forward pass (an activation module shared by
    the stem and the head, as in EfficientNet) is taken at its last call, the one nearest the head. Each call puts the model in eval mode and, for gradient methods, turns off
    parameter gradients, and restores both afterwards. Nothing global is changed.

    Subclasses implement :meth:`_compute` (activation, logits, targets -> feature-level map).
    """

    method: str = ""
    needs_gradients: bool = True

    def __init__(self, model: nn.Module, layer: str) -> None:
        self.model = model
        self.layer_name = layer
        self.layer = resolve_layer(model, layer)
        self._handle: torch.utils.hooks.RemovableHandle | None = None
        self._entered = False
        self._capturing = False
        self._activation: torch.Tensor | None = None

    # -- hook management -----------------------------------------------------------------
    uses_hook: bool = True

    def __enter__(self) -> CamExtractor:
        if self.uses_hook:
            self._handle = self.layer.register_forward_hook(self._capture)
        self._entered = True
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()  # never swallows the exception: returns None

    def close(self) -> None:
        """Remove the hook (idempotent)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._entered = False
        self._activation = None

    def _capture(self, module: nn.Module, inputs, output):
        if not self._capturing:
            return None  # e.g. Score-CAM's masked forward passes: leave the output alone
        if not isinstance(output, torch.Tensor):
            raise CamError(f"layer {self.layer_name!r} returns {type(output).__name__}, expected a tensor")
        # Keep our own copy: a later in-place op (ReLU(inplace=True)) must not change it. For
        # gradient methods it is a leaf, so the backward pass stops here (no graph upstream, no
        # parameter gradients), and the network continues on a clone of it.
        self._activation = output.detach().requires_grad_(self.needs_gradients and torch.is_grad_enabled())
        return self._activation.clone()

    # -- the call ------------------------------------------------------------------------
    def __call__(self, x: torch.Tensor, target: int | Sequence[int] | torch.Tensor | None = None) -> CamResult:
        if not self._entered:
            raise CamError(f"{type(self).__name__} is used outside its 'with' block (its hook is not registered)")
        if x.dim() < 3:
            raise CamError(f"expected input (N, C, *spatial), found shape {tuple(x.shape)}")
        was_training = self.model.training
        grad_flags = [(p, p.requires_grad) for p in self.model.parameters()]
        self.model.eval()
        try:
            for parameter, _ in grad_flags:
                parameter.requires_grad_(False)
            with torch.enable_grad() if self.needs_gradients else torch.no_grad():
                logits, activation = self._forward(x)
                if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
                    raise CamError(f"the model must return logits (N, classes), found {getattr(logits, 'shape', type(logits))}")
                if activation is None:
                    raise CamError(f"layer {self.layer_name!r} was not reached in the forward pass")
                targets = resolve_targets(target, logits)
                feature_map = self._compute(x, activation, logits, targets)
        finally:
            self._activation = None
            self.model.train(was_training)
            for parameter, flag in grad_flags:
                parameter.requires_grad_(flag)
        feature_map = feature_map.detach()
        logits = logits.detach()
        return CamResult(
            map=upsample(feature_map, x.shape[2:]),
            feature_map=feature_map,
            target=targets,
            score=logits.gather(1, targets[:, None])[:, 0],
            probability=torch.softmax(logits, dim=1).gather(1, targets[:, None])[:, 0],
            method=self.method,
            layer=self.layer_name,
        )

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits and the target layer's activation (captured by the hook)."""
        self._capturing = True
        try:
            logits = self.model(x)
        finally:
            self._capturing = False
        return logits, self._activation

    def _compute(self, x: torch.Tensor, activation: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Feature-level map ``(N, *feature_spatial)`` for each sample's target."""
        raise NotImplementedError

    @staticmethod
    def _gradients(activation: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """d(score of each sample's target) / d(activation), one backward pass for the batch.

        Samples do not interact in eval mode, so summing the per-sample scores gives each
        sample exactly its own gradient (batch-exact).
        """
        score = logits.gather(1, targets[:, None]).sum()
        (grads,) = torch.autograd.grad(score, activation)
        return grads
