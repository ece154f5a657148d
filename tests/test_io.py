"""Image and label-image I/O (``assignflow.io``) on real files.

Every reader result is compared with an independent expectation computed from the
array that was written (scaling by the bit depth, the CMYK formula
``R = (1 - C)(1 - K)``, sorted colour numbering); every refusal is a ``ValueError``
or ``TypeError`` whose message names the file or the argument.
"""

from __future__ import annotations

import os
import struct
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from assignflow import io

RNG = np.random.default_rng(0)
U8 = (RNG.random((6, 7, 3)) * 255).astype(np.uint8)


def write_png(path, width, height, depth, colour_type, raw=b""):
    """A PNG from raw scanlines; the header may claim any size (for bomb tests)."""

    def chunk(kind, data):
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    return path


def write_npy_header(path, shape, dtype="<f8", data=b""):
    """A ``.npy`` file whose header claims ``shape``, followed by ``data``."""
    header = {"descr": dtype, "fortran_order": False, "shape": tuple(shape)}
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        fh.write(data)
    return path


# =========================================================================== pixel values
def test_8bit_grey_and_rgb_png_are_scaled_by_255(tmp_path):
    Image.fromarray(U8).save(tmp_path / "rgb.png")
    Image.fromarray(U8[..., 0]).save(tmp_path / "grey.png")
    np.testing.assert_array_equal(io.read_image(tmp_path / "rgb.png"), U8 / 255.0)
    grey = io.read_image(tmp_path / "grey.png")
    assert grey.shape == (6, 7) and grey.dtype == np.float64
    np.testing.assert_array_equal(grey, U8[..., 0] / 255.0)


def test_16bit_grey_png_is_scaled_by_65535(tmp_path):
    g = (RNG.random((5, 4)) * 65535).astype(np.uint16)
    Image.fromarray(g).save(tmp_path / "g16.png")
    np.testing.assert_array_equal(io.read_image(tmp_path / "g16.png"), g / 65535.0)


def test_16bit_colour_png_is_scaled_to_unit_range(tmp_path):
    c = (RNG.random((4, 5, 3)) * 65535).astype(np.uint16)
    rows = b"".join(b"\x00" + c[i].astype(">u2").tobytes() for i in range(4))
    write_png(tmp_path / "c16.png", 5, 4, 16, 2, rows)
    a = io.read_image(tmp_path / "c16.png")
    assert a.shape == (4, 5, 3) and 0 <= a.min() and a.max() <= 1
    np.testing.assert_allclose(a, c / 65535.0, atol=1 / 255)  # Pillow keeps 8 bits


def test_1bit_png_gives_zero_and_one(tmp_path):
    b = U8[..., 0] > 128
    Image.fromarray(b).save(tmp_path / "b.png")
    np.testing.assert_array_equal(io.read_image(tmp_path / "b.png"), b.astype(float))


def test_float_tiff_is_kept(tmp_path):
    f = (RNG.normal(size=(5, 6)) * 3).astype(np.float32)
    Image.fromarray(f).save(tmp_path / "f.tif")
    np.testing.assert_array_equal(io.read_image(tmp_path / "f.tif"), f.astype(np.float64))


def test_npy_values_are_taken_as_they_are(tmp_path):
    np.save(tmp_path / "u8.npy", U8)
    np.testing.assert_array_equal(io.read_image(tmp_path / "u8.npy"), U8.astype(float))


def test_32bit_integer_image_is_refused(tmp_path):
    Image.fromarray(np.arange(20, dtype=np.int32).reshape(4, 5)).save(tmp_path / "i.tif")
    with pytest.raises(ValueError, match="int32"):
        io.read_image(tmp_path / "i.tif")


# =========================================================================== colour models
def cmyk_to_rgb(cmyk):
    c = cmyk / 255.0
    return (1 - c[..., :3]) * (1 - c[..., 3:])


CMYK = np.zeros((8, 8, 4), np.uint8)
CMYK[:4, :, 0] = 200  # cyan on top
CMYK[:, :4, 3] = 120  # black on the left: dropping K (the old bug) changes these pixels
CMYK[4:, 4:, 1] = 255  # magenta block


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path):
    Image.fromarray(CMYK, "CMYK").save(tmp_path / "c.jpg", quality=100, subsampling=0)
    a = io.read_image(tmp_path / "c.jpg")
    assert a.shape == (8, 8, 3)
    np.testing.assert_allclose(a, cmyk_to_rgb(CMYK), atol=6 / 255)


def test_cmyk_tiff_is_converted_exactly(tmp_path):
    Image.fromarray(CMYK, "CMYK").save(tmp_path / "c.tif")
    np.testing.assert_allclose(io.read_image(tmp_path / "c.tif"), cmyk_to_rgb(CMYK), atol=0.5 / 255)


def test_palette_png_gives_its_colours(tmp_path):
    im = Image.fromarray(U8).convert("P")
    im.save(tmp_path / "p.png")
    np.testing.assert_array_equal(
        io.read_image(tmp_path / "p.png"), np.asarray(im.convert("RGB")) / 255.0
    )


# =========================================================================== alpha
def rgba(alpha_value):
    return np.dstack([U8, np.full(U8.shape[:2], alpha_value, np.uint8)])


def test_opaque_alpha_is_dropped(tmp_path):
    Image.fromarray(rgba(255)).save(tmp_path / "a.png")
    np.testing.assert_array_equal(io.read_image(tmp_path / "a.png"), U8 / 255.0)
    Image.fromarray(np.dstack([U8[..., 0], np.full((6, 7), 255, np.uint8)]), "LA").save(
        tmp_path / "la.png"
    )
    np.testing.assert_array_equal(io.read_image(tmp_path / "la.png"), U8[..., 0] / 255.0)


def test_transparent_alpha_is_refused_unless_asked(tmp_path):
    a = rgba(255)
    a[0, 0, 3] = 10
    Image.fromarray(a).save(tmp_path / "a.png")
    with pytest.raises(ValueError, match="alpha"):
        io.read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(io.read_image(tmp_path / "a.png", alpha="drop"), U8 / 255.0)
    kept = io.read_image(tmp_path / "a.png", alpha="keep")
    np.testing.assert_array_equal(kept, a / 255.0)


def test_palette_with_transparency_follows_the_alpha_policy(tmp_path):
    im = Image.fromarray(U8[..., 0]).convert("P")
    im.info["transparency"] = int(np.asarray(im)[0, 0])
    im.save(tmp_path / "pt.png", transparency=int(np.asarray(im)[0, 0]))
    with pytest.raises(ValueError, match="alpha"):
        io.read_image(tmp_path / "pt.png")
    assert io.read_image(tmp_path / "pt.png", alpha="drop").shape == (6, 7, 3)
    Image.fromarray(U8[..., 0]).save(tmp_path / "lt.png", transparency=int(U8[0, 0, 0]))
    with pytest.raises(ValueError, match="alpha"):
        io.read_image(tmp_path / "lt.png")
    np.testing.assert_array_equal(
        io.read_image(tmp_path / "lt.png", alpha="drop"), U8[..., 0] / 255.0
    )
    # label images keep their ids whatever the transparency
    np.testing.assert_array_equal(io.read_label_image(tmp_path / "lt.png"), U8[..., 0])


# =========================================================================== size bound
@pytest.mark.parametrize("side", [20000, 10000, 9000], ids=lambda s: f"{s}x{s}")
def test_huge_png_header_is_refused_before_decoding(tmp_path, side):
    # a few bytes claiming side x side pixels (above Pillow's own bomb limit, between
    # its warning and error, and below its warning); the pixel data is junk, so only
    # a check before decoding gives the max_pixels message
    path = write_png(tmp_path / "bomb.png", side, side, 8, 0, b"\x00" * 10)
    assert path.stat().st_size < 100
    with pytest.raises(ValueError, match="max_pixels"):
        io.read_image(path)
    with pytest.raises(ValueError, match="max_pixels"):
        io.read_label_image(path)


def test_max_pixels_is_the_bound(tmp_path):
    Image.fromarray(U8).save(tmp_path / "rgb.png")
    np.save(tmp_path / "rgb.npy", U8)
    for p in (tmp_path / "rgb.png", tmp_path / "rgb.npy"):
        assert io.read_image(p, max_pixels=42).shape == (6, 7, 3)
        with pytest.raises(ValueError, match="max_pixels"):
            io.read_image(p, max_pixels=41)


def test_huge_npy_header_is_refused_before_reading(tmp_path):
    path = write_npy_header(tmp_path / "big.npy", (30000, 30000))
    with pytest.raises(ValueError, match="max_pixels"):
        io.read_image(path)
    path = write_npy_header(tmp_path / "long.npy", (2, 2, 10**9))
    with pytest.raises(ValueError, match="max_pixels"):
        io.read_image(path)


def test_npy_truncated_against_its_header(tmp_path):
    path = write_npy_header(tmp_path / "t.npy", (10, 10), data=b"\x00" * 80)
    with pytest.raises(ValueError, match="truncated"):
        io.read_image(path)


# =========================================================================== bad files
@pytest.fixture
def bad(tmp_path):
    (tmp_path / "text.png").write_text("this is not an image")
    Image.fromarray(U8).save(tmp_path / "ok.png")
    png = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(png[: len(png) // 2])
    np.save(tmp_path / "ok.npy", U8[..., 0].astype(float))
    (tmp_path / "trunc.npy").write_bytes((tmp_path / "ok.npy").read_bytes()[:100])
    np.save(tmp_path / "nan.npy", np.full((3, 3), np.nan))
    np.save(tmp_path / "empty.npy", np.zeros((0, 3)))
    np.save(tmp_path / "4d.npy", np.zeros((2, 2, 2, 2)))
    np.save(tmp_path / "str.npy", np.array([["a", "b"]]))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "dir.png").mkdir()
    return tmp_path


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("missing.png", "does not exist"),
        ("text.png", "cannot read"),
        ("trunc.png", "cannot read"),
        ("trunc.npy", "cannot read"),
        ("nan.npy", "NaN"),
        ("empty.npy", "empty"),
        ("4d.npy", r"\(h, w\)"),
        ("str.npy", "numeric"),
        ("obj.npy", "pickle"),
        ("dir.png", "not a regular file"),
    ],
)
def test_bad_image_files_are_refused(bad, name, match):
    with pytest.raises(ValueError, match=match) as e:
        io.read_image(bad / name)
    assert name in str(e.value)


@pytest.mark.parametrize(
    "name", ["missing.npy", "text.png", "trunc.png", "trunc.npy", "obj.npy", "dir.png", "4d.npy"]
)
def test_bad_label_files_are_refused(bad, name):
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        io.read_label_image(bad / name)


@pytest.mark.skipif(sys.platform == "win32", reason="no FIFOs")
def test_fifo_and_devices_are_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "fifo.npy")
    with pytest.raises(ValueError, match="not a regular file"):
        io.read_image(tmp_path / "fifo.npy")  # opening it for reading would block
    with pytest.raises(ValueError, match="not a regular file"):
        io.read_label_image("/dev/zero")


@pytest.mark.parametrize("reader", [io.read_image, io.read_label_image])
def test_pickled_npy_is_never_unpickled(tmp_path, reader):
    marker = tmp_path / "PWNED"

    class Touch:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    np.save(tmp_path / "evil.npy", np.array([Touch()], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickle"):
        reader(tmp_path / "evil.npy")
    assert not marker.exists()
    np.load(tmp_path / "evil.npy", allow_pickle=True)  # control: the payload is live
    assert marker.exists()


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"path": 3}, "path"),
        ({"path": "x.png", "alpha": "ignore"}, "alpha"),
        ({"path": "x.png", "max_pixels": 0}, "max_pixels"),
        ({"path": "x.png", "max_pixels": 2.5}, "max_pixels"),
    ],
)
def test_read_image_arguments_are_validated(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        io.read_image(**kw)


# =========================================================================== label images
def test_npy_labels(tmp_path):
    y = RNG.integers(0, 5, (4, 6))
    np.save(tmp_path / "y.npy", y.astype(np.int16))
    out = io.read_label_image(tmp_path / "y.npy")
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, y)
    np.save(tmp_path / "b.npy", y > 2)
    np.testing.assert_array_equal(io.read_label_image(tmp_path / "b.npy"), (y > 2).astype(int))


def test_uint64_labels_beyond_int64_are_refused(tmp_path):
    y = np.zeros((3, 3), np.uint64)
    np.save(tmp_path / "ok.npy", y + 7)
    np.testing.assert_array_equal(io.read_label_image(tmp_path / "ok.npy"), np.full((3, 3), 7))
    y[1, 1] = 2**63
    np.save(tmp_path / "big.npy", y)
    with pytest.raises(ValueError, match=r"2\*\*63"):
        io.read_label_image(tmp_path / "big.npy")


def test_float_tiff_labels_integral_accepted_non_integral_refused(tmp_path):
    y = RNG.integers(0, 4, (5, 5)).astype(np.float32)
    Image.fromarray(y).save(tmp_path / "y.tif")
    np.testing.assert_array_equal(io.read_label_image(tmp_path / "y.tif"), y.astype(int))
    y[2, 2] = 1.5
    Image.fromarray(y).save(tmp_path / "yf.tif")
    with pytest.raises(ValueError, match="non-integral"):
        io.read_label_image(tmp_path / "yf.tif")
    y[2, 2] = np.nan
    np.save(tmp_path / "nan.npy", y)
    with pytest.raises(ValueError, match="NaN"):
        io.read_label_image(tmp_path / "nan.npy")
    np.save(tmp_path / "huge.npy", np.full((2, 2), 1e19))
    with pytest.raises(ValueError, match="int64"):
        io.read_label_image(tmp_path / "huge.npy")


def test_grey_and_16bit_label_pngs_are_ids(tmp_path):
    y = RNG.integers(0, 6, (4, 5)).astype(np.uint8)
    Image.fromarray(y).save(tmp_path / "y.png")
    np.testing.assert_array_equal(io.read_label_image(tmp_path / "y.png"), y)
    y16 = (y.astype(np.uint16) * 1000).astype(np.uint16)
    Image.fromarray(y16).save(tmp_path / "y16.png")
    np.testing.assert_array_equal(io.read_label_image(tmp_path / "y16.png"), y16)


def test_palette_label_png_gives_the_indices(tmp_path):
    y = RNG.integers(0, 4, (4, 5)).astype(np.uint8)
    im = Image.fromarray(y, "P")
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9])
    im.save(tmp_path / "p.png")
    np.testing.assert_array_equal(io.read_label_image(tmp_path / "p.png"), y)


def test_colour_labels_are_numbered_jointly_in_sorted_colour_order(tmp_path):
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    y1 = np.array([[0, 1], [1, 0]])  # red and green only
    y2 = np.array([[2, 2], [1, 2]])  # blue and green only
    Image.fromarray(colours[y1]).save(tmp_path / "a.png")
    Image.fromarray(colours[y2]).save(tmp_path / "b.png")
    order = np.lexsort(colours.T[::-1])  # sorted colour order: blue, green, red
    rank = np.empty(3, int)
    rank[order] = np.arange(3)
    a, b = io.read_label_images([tmp_path / "a.png", tmp_path / "b.png"])
    np.testing.assert_array_equal(a, rank[y1])
    np.testing.assert_array_equal(b, rank[y2])
    # green is the same class in both images
    assert a[0, 1] == b[1, 0]
    # one image alone: its own colours in sorted order
    np.testing.assert_array_equal(io.read_label_image(tmp_path / "a.png"), [[1, 0], [0, 1]])


def test_mixing_colour_and_id_label_images_is_refused(tmp_path):
    Image.fromarray(U8).save(tmp_path / "c.png")
    np.save(tmp_path / "y.npy", np.zeros((6, 7), int))
    with pytest.raises(ValueError, match="colour"):
        io.read_label_images([tmp_path / "c.png", tmp_path / "y.npy"])


def test_label_npy_must_be_two_dimensional_numbers(tmp_path):
    np.save(tmp_path / "y3.npy", np.zeros((2, 2, 2), int))
    with pytest.raises(ValueError, match=r"\(h, w\)"):
        io.read_label_image(tmp_path / "y3.npy")
    np.save(tmp_path / "ys.npy", np.array([["a", "b"]]))
    with pytest.raises(ValueError, match="integer"):
        io.read_label_image(tmp_path / "ys.npy")


# =========================================================================== writing
def test_write_labels_writes_png_and_npy(tmp_path):
    y = np.array([[0, 1], [2, 1]])
    protos = np.array([[0.0, 0, 0], [1, 0, 0], [0, 0, 1]])
    files = io.write_labels(tmp_path / "o", y, protos)
    assert files == [str(tmp_path / "o.png"), str(tmp_path / "o.npy")]
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), y)
    np.testing.assert_array_equal(io.read_image(tmp_path / "o.png"), protos[y])
    assert sorted(os.listdir(tmp_path)) == ["o.npy", "o.png"]  # no temporary files left


def test_write_labels_class_values_with_index(tmp_path):
    classes = np.array([10, 20])
    idx = np.array([[0, 1], [1, 1]])
    io.write_labels(tmp_path / "o", classes[idx], [0.0, 1.0], idx)
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), classes[idx])
    np.testing.assert_array_equal(io.read_image(tmp_path / "o.png")[..., 0], idx)


def test_write_labels_refuses_existing_outputs_unless_overwrite(tmp_path):
    (tmp_path / "o.npy").write_bytes(b"precious")
    y = np.zeros((2, 2), int)
    with pytest.raises(ValueError, match="overwrite"):
        io.write_labels(tmp_path / "o", y, [0.5])
    assert (tmp_path / "o.npy").read_bytes() == b"precious"
    assert not (tmp_path / "o.png").exists()
    io.write_labels(tmp_path / "o", y, [0.5], overwrite=True)
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), y)


def test_write_labels_display_colours(tmp_path):
    y = np.array([[0, 1, 2, 3, 4]])
    io.write_labels(tmp_path / "far", y[:, :2], [[0.0], [255.0]])  # rescaled to [0, 1]
    np.testing.assert_array_equal(io.read_image(tmp_path / "far.png")[..., 0], [[0.0, 1.0]])
    io.write_labels(tmp_path / "ms", y, RNG.random((5, 6)))  # 6 channels: a palette
    rgb = io.read_image(tmp_path / "ms.png")
    assert rgb.shape == (1, 5, 3) and len({tuple(c) for c in rgb[0]}) == 5


@pytest.mark.parametrize(
    ("labels", "protos", "exc", "match"),
    [
        (np.full((2, 2), 5), np.zeros((2, 1)), ValueError, r"0\.\.1"),
        (np.full((2, 2), -1), np.zeros((2, 1)), ValueError, "labels must lie"),
        (np.full((2, 2), 0.5), np.zeros((2, 1)), TypeError, "labels"),
        (np.zeros(4, int), np.zeros((2, 1)), ValueError, r"\(h, w\)"),
    ],
)
def test_write_labels_rejects_bad_labels(tmp_path, labels, protos, exc, match):
    with pytest.raises(exc, match=match):
        io.write_labels(tmp_path / "o", labels, protos)
    assert os.listdir(tmp_path) == []


def test_write_labels_needs_the_directory(tmp_path):
    with pytest.raises(ValueError, match="path_stem"):
        io.write_labels(tmp_path / "nodir" / "o", np.zeros((2, 2), int), np.zeros((1, 1)))


def test_atomic_path_leaves_the_target_alone_on_failure(tmp_path):
    target = tmp_path / "t.npy"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), io.atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(b"half")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["t.npy"]
    with io.atomic_path(target) as tmp:
        assert tmp.endswith(".npy") and os.path.dirname(tmp) == str(tmp_path)
        np.save(tmp, np.arange(3))
    np.testing.assert_array_equal(np.load(target), np.arange(3))
