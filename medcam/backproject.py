"""Put a model-grid map back onto the exact voxel grid of the source series (DESIGN decision 3).

For every source voxel centre ``ijk``: ``world = source.affine_ras @ ijk``; model index
``inv(model.affine_ras) @ world``; linear interpolation of the map there. The model grid's
affine is the preprocessing ``MetaTensor``'s, which MONAI keeps through every (affine) spatial
transform, so one resampling handles reorientation, respacing, padding and cropping, oblique,
reversed and tilted sources, and 2D images alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from medcam.errors import GeometryError
from medcam.geometry import ImageGeometry, Volume, model_geometry, resample_to

if TYPE_CHECKING:
    import torch
    from monai.data import MetaTensor

__all__ = ["to_source_grid"]


def to_source_grid(
    cam_map: np.ndarray | torch.Tensor, model_tensor: MetaTensor, source: ImageGeometry, *, fill: float = 0.0
) -> Volume:
    """Sample a model-grid map at every voxel centre of ``source``.

    Parameters
    ----------
    cam_map : array or Tensor ``(*model_spatial)``
        One map on the model grid (e.g. ``CamResult.map[i]``).
    model_tensor : MetaTensor ``(C, *model_spatial)``
        The preprocessed input the map belongs to; its ``.affine`` (model voxel -> RAS) is the
        only geometry used. A plain tensor has no affine and is refused.
    source : ImageGeometry
        The scanner grid (``DicomSeries.volume.geometry`` or the NIfTI's).
    fill : float
        Value of source voxels outside the model's field of view (cropped away).

    Returns
    -------
    Volume
        float32 map on ``source``.
    """
    if not hasattr(model_tensor, "affine"):
        raise GeometryError(
            "the model input is a plain tensor without an affine: pass the preprocessed MetaTensor "
            "(medcam.transforms.preprocess) so the map can be placed in patient space"
        )
    grid = model_geometry(model_tensor)
    values = cam_map.detach().cpu().numpy() if hasattr(cam_map, "detach") else np.asarray(cam_map)
    values = np.asarray(values, dtype=np.float32)
    if values.ndim == 2:
        values = values[:, :, np.newaxis]
    if values.shape != grid.shape:
        raise GeometryError(f"map of shape {values.shape} does not match the model grid {grid.shape}")
    return resample_to(Volume(values, grid), source, order=1, fill=fill)
