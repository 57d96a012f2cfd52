"""The 8-bit blend table gives what blending each pixel in floating point gives, to one level."""

import numpy as np
import pytest

from medcam.export.overlay import _lut, blend, legend_panel, legend_width, to_levels, window_to_levels, window_to_unit


def _float_blend(gray, heat, colormap, opacity, threshold):
    colours = _lut(colormap)[np.rint(heat * 255).astype(np.uint8)]
    alpha = np.where(heat >= threshold, opacity * heat, 0.0)[..., None]
    return np.rint(((1.0 - alpha) * gray[..., None] + alpha * colours) * 255.0)


@pytest.mark.parametrize(("colormap", "opacity"), [("jet", 0.5), ("inferno", 0.8), ("jet", 0.0)])
def test_table_blend_matches_the_per_pixel_formula(colormap, opacity):
    rng = np.random.default_rng(0)
    gray, heat = rng.uniform(0, 1, (64, 48)), rng.uniform(0, 1, (64, 48))
    gray, heat = to_levels(gray) / 255.0, to_levels(heat) / 255.0  # the table works on 8-bit levels
    rgb = blend(gray, heat, colormap=colormap, opacity=opacity)
    assert rgb.dtype == np.uint8 and rgb.shape == (64, 48, 3)
    assert np.abs(rgb.astype(float) - _float_blend(gray, heat, colormap, opacity, 0.2)).max() <= 1
    assert np.array_equal(blend(to_levels(gray), to_levels(heat), colormap=colormap, opacity=opacity), rgb)


def test_low_heat_leaves_the_anatomy_gray_and_high_heat_is_coloured():
    gray = np.full((4, 4), 0.5)
    heat = np.zeros((4, 4))
    heat[0, 0], heat[1, 1] = 0.1, 1.0
    rgb = blend(gray, heat, colormap="jet", opacity=0.5, threshold=0.2).astype(int)
    assert (rgb[0, 0] == 128).all() and (rgb[2, 2] == 128).all()  # below the threshold: untouched gray
    assert rgb[1, 1, 0] > rgb[1, 1, 2]  # jet's top is red


def test_window_levels_and_legend():
    values = np.array([[-1000.0, 40.0, 240.0, 3000.0]])
    assert window_to_levels(values, -160.0, 240.0).tolist() == [[0, 128, 255, 255]]
    assert np.array_equal(window_to_levels(values, -160.0, 240.0), to_levels(window_to_unit(values, -160.0, 240.0)))


@pytest.mark.parametrize("rows", [96, 512])
def test_the_legend_panel_is_drawn_to_size_with_its_text_and_colour_bar(rows):
    blank = legend_panel(rows, colormap="jet", vmax=437.0)
    panel = legend_panel(rows, colormap="jet", vmax=437.0, lines=["medcam cam", "map of 'lesion'", "p = 0.529"])
    assert panel.shape == (rows, legend_width(rows), 3) and panel.dtype == np.uint8
    top = slice(0, rows // 5)
    assert not blank[top].any() and (panel[top] > 200).all(axis=-1).sum() > 20  # white text at the top
    # the colour bar holds the colour map's ends: red (the maximum) above blue (zero)
    red = np.argwhere((panel[..., 0] > 100) & (panel[..., 1] < 40) & (panel[..., 2] < 40))
    blue = np.argwhere((panel[..., 2] > 100) & (panel[..., 0] < 40) & (panel[..., 1] < 40))
    assert len(red) and len(blue) and red[:, 0].mean() < blue[:, 0].mean()
    # the tick labels in raw units: the maximum's label makes the panel differ from another maximum's
    assert not np.array_equal(panel, legend_panel(rows, colormap="jet", vmax=0.017, lines=["medcam cam", "map of 'lesion'", "p = 0.529"]))
