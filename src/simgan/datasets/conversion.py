"""``simgan convert``: any supported input format -> the interchange format.

The work is done by the readers (:mod:`simgan.datasets.formats`); this module streams their
images and labels into a :class:`~simgan.datasets.folder.DatasetWriter`, so a failure half-way
leaves no folder named ``out``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from ..errors import SimganError
from .folder import DatasetWriter, encode_png, json_line
from .formats import FORMATS, open_format, sniff

#: Images decoded and written per step.
CHUNK = 512


def convert(src: str | os.PathLike, out: str | os.PathLike, *, format: str = "auto",
            size: tuple[int, int] | None | str = "default", gray: bool | None = None,
            limit: int | None = None, crop_scale: float = 1.5, landmarks: bool = True,
            eyes: str = "both", flip: str = "right", images_key: str | None = None,
            threads: int = 4, progress: bool = False, nyu_kind: str = "real", cameras=None) -> Path:
    """Convert ``src`` (UnityEyes, MPIIGaze, HDF5 or NPZ) into a new interchange folder ``out``.

    ``format="auto"`` recognises the input (see :func:`~simgan.datasets.formats.sniff`).
    ``size``: ``(width, height)``; ``"default"`` is 55x35 for the gaze formats and the stored size
    for arrays; ``None`` keeps the stored size. ``gray``: ``True`` one channel, ``False`` keep the
    channels, ``None`` the format's default (gray for UnityEyes/MPIIGaze). ``limit`` converts only
    the first ``limit`` images. The other options go to the readers. Images are written as
    ``img/000000.png``, ...; labels (when the input has any) as ``labels.jsonl``. Returns ``out``.
    """
    from ..paths import check_no_overlap

    out = Path(out)
    check_no_overlap({"SRC": src}, {"--out": out})
    if out.exists():
        raise SimganError(f"output {out} already exists; choose a new folder or remove it")
    if limit is not None and limit < 1:
        raise SimganError(f"limit must be at least 1, got {limit}")
    if format == "auto":
        fmt = sniff(src)
        if fmt is None:
            if not Path(src).exists():
                raise SimganError(f"input not found: {src}")
            raise SimganError(f"cannot tell the format of {src}: expected a UnityEyes folder (N.jpg + N.json), "
                              "MPIIGaze dayNN.mat files, an NYU hand pose folder (joint_data.mat), "
                              "an .h5/.hdf5 file or an .npz archive; "
                              "name one with --format")
    elif format in FORMATS:
        fmt = format
    else:
        raise SimganError(f"unknown format {format!r}; choose one of auto, {', '.join(FORMATS)}")
    ds = open_format(src, fmt, size=size, gray=gray, crop_scale=crop_scale, landmarks=landmarks,
                     eyes=eyes, flip=flip, images_key=images_key, what="input", nyu_kind=nyu_kind, cameras=cameras)
    spec = ds.spec
    if spec.bit_depth == 16 and spec.channels != 1:
        raise SimganError(f"{src} holds 16-bit {spec.channels}-channel images, which PNG output keeps only "
                          "as gray: add --gray")
    n = len(ds) if limit is None else min(limit, len(ds))
    digits = max(6, len(str(n - 1)))
    names = [f"img/{i:0{digits}d}.png" for i in range(n)]

    with DatasetWriter(out) as writer, \
            tqdm(total=n, desc=f"convert {fmt}", unit="img", leave=False, disable=None if progress else True) as bar, \
            ThreadPoolExecutor(max(1, threads)) as pool:
        for start in range(0, n, CHUNK):
            idx = list(range(start, min(n, start + CHUNK)))
            batch = ds.read_many(idx, threads=threads)
            paths = [writer.image_path(names[i]) for i in idx]
            list(pool.map(encode_png, paths, batch))
            if ds.labelled:
                writer.add_lines(json_line({"file": names[i], **ds.labels(i)}) for i in idx)
            bar.update(len(idx))
        return writer.finish()
