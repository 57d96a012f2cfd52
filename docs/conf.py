"""Sphinx configuration of medcam's documentation (``sphinx-build -W -b html docs docs/_build``)."""

import medcam

project = "medcam"
release = version = medcam.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_ivar = True  # dataclass fields: one entry each, not a second attribute directive
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
autodoc_typehints = "description"
myst_heading_anchors = 3
exclude_patterns = ["_build"]
html_theme = "alabaster"


def _geometry_figure(app) -> None:
    """The bundled CT study explained, in the three anatomical planes: the figure of the geometry
    page, drawn from the sample data at every build (not kept in the repository)."""
    from pathlib import Path

    from medcam.explanation import explain
    from medcam.export.case import figure_title
    from medcam.export.figures import map_label, write_figure
    from medcam.study import read_study

    root = Path(__file__).resolve().parents[1]
    out = Path(app.srcdir) / "_generated" / "geometry_views.png"
    out.parent.mkdir(exist_ok=True)
    sample = root / "sample_data"
    study = read_study(sample / "ct_lesion_dicom", mask=sample / "ct_lesion_dicom_mask.nii.gz")
    explanation = explain(sample / "models" / "ct3d.pt", study, method="cam")
    write_figure(explanation.source, explanation.heatmap, out, window=explanation.display_window, overwrite=True,
                 title=figure_title(explanation), mask=explanation.study.mask_on_image_grid(),
                 label=map_label("cam", explanation.target_name, explanation.heatmap.array))


def setup(app) -> None:
    app.connect("builder-inited", _geometry_figure)
