"""The configurations of a model trained on a user's cohort, built by the library (the command line only parses)."""

import pytest

from medcam.errors import ConfigError
from medcam.models.recipes import manifest_configs


def test_a_3d_manifest_model_is_reoriented_to_ras_and_pools_once_by_default():
    preprocess, model = manifest_configs(3, [3, 3, 3], [64, 72, 64], ["no lesion", "lesion"], intensity="robust_zscore")
    assert (preprocess.spatial_dims, preprocess.spacing, preprocess.spatial_size) == (3, (3.0, 3.0, 3.0), (64, 72, 64))
    assert preprocess.orientation == "RAS" and preprocess.intensity == "robust_zscore" and preprocess.window is None
    assert (model.num_classes, model.channels, model.convs_per_stage) == (2, (16, 32, 64), (1, 2, 2))
    assert model.pool_after == (True, False, False) and (model.stem_stride, model.fine_head) == (2, 16)


def test_a_2d_manifest_model_keeps_the_stored_axes_and_its_window():
    preprocess, model = manifest_configs(2, [0.5, 0.5], [256, 256], ["a", "b", "c"], window=(50.0, 350.0),
                                         channels=[8, 16], pool_after=[False, True], fine_head=0, stem_stride=4)
    assert preprocess.orientation is None and preprocess.window == (50.0, 350.0)
    assert (model.num_classes, model.convs_per_stage, model.pool_after, model.stem_stride) == (3, (1, 2), (False, True), 4)


def test_every_problem_of_a_manifest_model_is_one_config_error():
    with pytest.raises(ConfigError, match="PreprocessConfig: .*spacing"):
        manifest_configs(3, [3, 3], [64, 72, 64], ["no", "yes"])
