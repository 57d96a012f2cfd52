"""The parallel gzip writer makes one ordinary gzip member that every reader decompresses exactly."""

import gzip
import io
import zlib

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medcam.export.nifti import write_heatmap_nifti
from medcam.export.parallel_gzip import write_gzip
from medcam.geometry import Volume


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("sizes", [[], [0], [10], [70_000, 5, 0, 200_000, 1], [1 << 16] * 9], ids=["none", "empty", "small", "mixed", "many"])
def test_blocks_decompress_to_their_concatenation_as_one_member(sizes, workers):
    rng = np.random.default_rng(len(sizes))
    blocks = [rng.integers(0, 4, size=n, dtype=np.uint8).tobytes() for n in sizes]
    handle = io.BytesIO()
    written = write_gzip(handle, iter(blocks), level=1, workers=workers)
    data = handle.getvalue()
    assert written == len(data)
    assert gzip.decompress(data) == b"".join(blocks)
    member = zlib.decompressobj(wbits=31)  # one gzip member: nothing left over after its trailer
    assert member.decompress(data) == b"".join(blocks) and member.eof and member.unused_data == b""


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_every_level_gives_a_standard_member(level):
    data = np.cumsum(np.random.default_rng(level).normal(size=300_000)).astype(np.float32).tobytes()
    handle = io.BytesIO()
    write_gzip(handle, [data[:500_000], data[500_000:]], level=level, workers=2)
    assert gzip.decompress(handle.getvalue()) == data


@pytest.mark.parametrize("level", [-1, 4, 9])
def test_a_level_outside_isal_range_is_refused_before_writing(level):
    handle = io.BytesIO()
    with pytest.raises(ValueError, match="ISA-L"):
        write_gzip(handle, [b"abc"], level=level)
    assert handle.getvalue() == b""


@pytest.mark.parametrize("name", ["map.nii.gz", "map.nii"])
def test_streamed_nifti_reads_back_identically_in_nibabel_and_simpleitk(tmp_path, name):
    rng = np.random.default_rng(0)
    array = rng.normal(size=(67, 45, 33)).astype(np.float32)  # several 8 MiB blocks are not needed: any split works
    affine = np.array([[0.0, -0.7, 0.0, 10.0], [0.9, 0.0, 0.0, -5.0], [0.0, 0.0, 2.5, 3.0], [0.0, 0.0, 0.0, 1.0]])
    path, _ = write_heatmap_nifti(Volume.from_array(array, affine), tmp_path / name, sidecar={})
    image = nib.load(path)
    assert image.get_data_dtype() == np.float32 and np.array_equal(image.get_fdata(dtype=np.float32), array)
    assert np.allclose(image.header.get_sform(), affine) and np.allclose(image.header.get_qform(), affine, atol=1e-6)
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(path))).transpose(2, 1, 0), array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
