"""The fast PNG codec: OpenCV's (``cv2.imdecode`` / ``cv2.imencode``, libpng and zlib, the GIL
released), with Pillow as the fallback.

On simgan's small images Pillow's per-call overhead dominates: OpenCV decodes and encodes a 55x35
eye in well under half of Pillow's time (docs/results/speed.md), which is what a PNG refine or
simulate spends besides the model. Both write files that decode to the same pixels.

The fast path takes only the PNGs it reads exactly as Pillow's path in
:func:`simgan.datasets.folder.decode_image` would: 8-bit gray, 16-bit gray and 8-bit RGB, no
palette, no alpha, no transparency chunk, within Pillow's pixel limit. Anything else, and anything
OpenCV cannot decode, returns ``None`` so that the caller reads it with Pillow, which names the
problem. ``SIMGAN_PNG_CODEC=pillow`` turns the fast path off.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

try:
    import cv2
except ImportError:  # pragma: no cover - opencv-python-headless is a dependency; Pillow is the fallback
    cv2 = None

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# (bit depth, colour type) -> channels, for the PNGs the fast path reads
FAST_KINDS = {(8, 0): 1, (16, 0): 1, (8, 2): 3}
CLOEXEC = getattr(os, "O_CLOEXEC", 0)


# zlib's run-length strategy with every row Sub-filtered, instead of libpng's default deflate with
# a filter chosen per row: on both the 8-bit eyes and the 16-bit depth images the encoder is
# faster and the files about as small; depth decodes slower by less than the encoder gains
# (measured: docs/results/speed.md#speed-zen4-bf16, `bench/png_codecs.py`). Any PNG reader decodes
# them. OpenCV older than 4.11 has no filter flag and keeps its own filter choice.
_FAST_ENCODE = [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE] if cv2 is not None else []
if cv2 is not None and hasattr(cv2, "IMWRITE_PNG_FILTER"):
    _FAST_ENCODE += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB]


def enabled() -> bool:
    return cv2 is not None and os.environ.get("SIMGAN_PNG_CODEC", "").lower() != "pillow"


def decode(path: Path | str, max_pixels: int | None) -> np.ndarray | None:
    """``H x W x C`` pixels of the PNG file ``path``, or ``None`` where Pillow must read it."""
    if not enabled():
        return None
    data = read_bytes(path)
    if len(data) < 33 or data[:8] != SIGNATURE or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    channels = FAST_KINDS.get((data[24], data[25]))
    if channels is None or (max_pixels is not None and width * height > max_pixels) or b"tRNS" in data:
        return None
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        return None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.shape != (height, width, channels):
        return None
    return np.ascontiguousarray(arr[:, :, ::-1]) if channels == 3 else arr


def encode(path: Path | str, image: np.ndarray, level: int) -> bool:
    """Write ``image`` (``H x W x C``, gray or RGB uint8, gray uint16, native byte order) as a PNG;
    False where the caller must write it with Pillow."""
    if not enabled():
        return False
    c = image.shape[2]
    if not (c == 1 or (c == 3 and image.dtype == np.uint8)):
        return False
    plane = image[:, :, 0] if c == 1 else image[:, :, ::-1]
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(plane), [cv2.IMWRITE_PNG_COMPRESSION, level, *_FAST_ENCODE])
    if not ok:
        return False
    write_bytes(path, buf)
    return True


# Plain system calls, not Python's buffered file objects, whose set-up is a visible share of the
# codec's time on a small PNG. Errors are the same OSErrors (a full disk included).
def read_bytes(path: Path | str) -> bytes:
    fd = os.open(path, os.O_RDONLY | CLOEXEC)
    try:
        want = os.fstat(fd).st_size + 1
        parts = [os.read(fd, want)]
        while len(parts[-1]) == want:  # the file grew after fstat: read on to its end
            parts.append(os.read(fd, want))
        return b"".join(parts)
    finally:
        os.close(fd)


def write_bytes(path: Path | str, data) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | CLOEXEC, 0o666)
    try:
        view = memoryview(data).cast("B")
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
