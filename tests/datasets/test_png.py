"""The fast PNG codec (OpenCV) and its Pillow fallback: the same pixels both ways, and Pillow for
everything the fast path does not take."""

import numpy as np
import pytest
from PIL import Image

from simgan.datasets import png
from simgan.datasets.folder import decode_image, encode_png
from simgan.errors import SimganError

pytestmark = pytest.mark.skipif(png.cv2 is None, reason="opencv-python-headless not installed")


def kinds():
    rng = np.random.default_rng(0)
    return {"gray8": rng.integers(0, 256, (35, 55, 1), dtype=np.uint8),
            "gray16": rng.integers(0, 65536, (24, 20, 1), dtype=np.uint16),
            "rgb8": rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)}


@pytest.mark.parametrize("kind", ["gray8", "gray16", "rgb8"])
def test_both_codecs_write_and_read_the_same_pixels(kind, tmp_path, monkeypatch):
    image = kinds()[kind]
    encode_png(tmp_path / "fast.png", image)
    monkeypatch.setenv("SIMGAN_PNG_CODEC", "pillow")
    assert not png.enabled()
    encode_png(tmp_path / "pillow.png", image)
    assert np.array_equal(decode_image(tmp_path / "fast.png"), image)  # the fast file, read by Pillow
    monkeypatch.delenv("SIMGAN_PNG_CODEC")
    assert png.decode(tmp_path / "pillow.png", None) is not None  # Pillow's file, read by the fast path
    assert np.array_equal(decode_image(tmp_path / "pillow.png"), image)
    assert (tmp_path / "fast.png").read_bytes() != (tmp_path / "pillow.png").read_bytes()  # two codecs indeed


@pytest.mark.parametrize("mode", ["P", "LA", "RGBA", "1"])
def test_palette_alpha_and_bilevel_go_to_pillow(mode, tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    im = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).convert(mode)
    im.save(tmp_path / "x.png")
    assert png.decode(tmp_path / "x.png", None) is None
    fast = decode_image(tmp_path / "x.png")
    monkeypatch.setenv("SIMGAN_PNG_CODEC", "pillow")
    assert np.array_equal(fast, decode_image(tmp_path / "x.png"))


def test_a_corrupt_png_is_named_by_the_pillow_path(tmp_path):
    encode_png(tmp_path / "x.png", kinds()["gray8"])
    data = (tmp_path / "x.png").read_bytes()
    (tmp_path / "x.png").write_bytes(data[:60])
    with pytest.raises(SimganError, match="x.png"):
        decode_image(tmp_path / "x.png")


def test_a_header_past_the_pixel_limit_is_left_to_pillow(tmp_path):
    encode_png(tmp_path / "x.png", kinds()["gray8"])
    assert png.decode(tmp_path / "x.png", 100) is None  # 55 x 35 > 100 pixels: Pillow decides
