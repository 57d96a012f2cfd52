"""The 8-bit blend table gives what blending each pixel in floating point gives, to one level."""

import numpy as np
import pytest

from medcam.export.overlay import (
    LEGEND_MIN_FONT_PX,
    _lut,
    blend,
    legend_panel,
    legend_text,
    legend_width,
    to_levels,
    window_to_levels,
    window_to_unit,
)


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
    text = slice(0, legend_width(rows) // 2)
    assert not blank[top, text].any() and (panel[top, text] > 200).all(axis=-1).sum() > 20  # white text at the top left
    # the colour bar holds the colour map's ends: red (the maximum) above blue (zero)
    red = np.argwhere((panel[..., 0] > 100) & (panel[..., 1] < 40) & (panel[..., 2] < 40))
    blue = np.argwhere((panel[..., 2] > 100) & (panel[..., 0] < 40) & (panel[..., 1] < 40))
    assert len(red) and len(blue) and red[:, 0].mean() < blue[:, 0].mean()
    # the tick labels in raw units: the maximum's label makes the panel differ from another maximum's
    assert not np.array_equal(panel, legend_panel(rows, colormap="jet", vmax=0.017, lines=["medcam cam", "map of 'lesion'", "p = 0.529"]))


def _ink_bands(mask_rows: np.ndarray) -> list[tuple[int, int]]:
    """Runs of consecutive rows holding ink: (first row, height)."""
    bands, start = [], None
    for row, ink in enumerate(list(mask_rows) + [False]):
        if ink and start is None:
            start = row
        elif not ink and start is not None:
            bands.append((start, row - start))
            start = None
    return bands


@pytest.mark.parametrize("rows", [96, 512])
def test_the_legend_text_is_legible_on_small_images_and_every_line_is_drawn(rows):
    lines = ["medcam gradcam++", "'lesion' p=0.237", "predicted 'no lesion'", "raw map units", "not for diagnosis"]
    assert legend_text(lines, rows) == lines  # nothing wrapped away or cut on a 96-row slice
    panel = legend_panel(rows, colormap="jet", vmax=0.00342 / 0.2, lines=lines)
    white = (panel > 60).all(axis=-1)  # ink, anti-aliased edges included
    # the text column (left of the bar) holds five lines, each at least 8 pixels from ascender to
    # descender (an 11-pixel font); nothing else is white there
    text_columns = white[:, : int(0.45 * panel.shape[1])]
    bands = _ink_bands(text_columns.any(axis=1))
    assert len(bands) == len(lines), bands
    assert min(height for _, height in bands) >= 0.7 * max(LEGEND_MIN_FONT_PX, rows / 40)
    # the longest tick label ("0.00342 (20%)") ends inside the panel: its last column is not inked
    assert not white[:, -2:].any()
    # long class names wrap rather than run under the colour bar
    wrapped = legend_text(["'a very long class name indeed' p=0.5"], rows)
    assert len(wrapped) >= 2 and " ".join(wrapped) == "'a very long class name indeed' p=0.5"
