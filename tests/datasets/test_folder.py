"""The interchange format: PNG pixels, ``labels.jsonl``, folders and the atomic writer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from simgan.datasets import (
    LABELS_FILE,
    DatasetWriter,
    ImageFolder,
    decode_image,
    encode_png,
    from_model,
    json_line,
    open_dataset,
    to_model,
    write_dataset,
)
from simgan.errors import SimganError


def _folder(tmp_path, lines: list[str], files=("a.png", "b.png")):
    root = tmp_path / "set"
    root.mkdir()
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        encode_png(root / name, np.zeros((4, 4, 1), np.uint8))
    (root / LABELS_FILE).write_text("".join(line + "\n" for line in lines))
    return root


@pytest.mark.parametrize("image", [
    np.arange(6 * 7, dtype=np.uint8).reshape(6, 7, 1) * 6,
    np.random.default_rng(0).integers(0, 256, (5, 9, 3), dtype=np.uint8),
    np.array([[0, 1, 255, 256, 32768, 65534, 65535]], dtype=np.uint16)[:, :, None],
    np.random.default_rng(1).integers(0, 65536, (8, 3, 1)).astype(np.uint16),
], ids=["gray8", "rgb8", "gray16-extremes", "gray16-random"])
def test_png_round_trip_is_exact(tmp_path, image):
    path = tmp_path / "x.png"
    encode_png(path, image)
    back = decode_image(path)
    assert back.dtype == image.dtype and back.shape == image.shape
    np.testing.assert_array_equal(back, image)


def test_png_accepts_2d_and_strided_arrays(tmp_path):
    gray = np.random.default_rng(2).integers(0, 256, (6, 10), dtype=np.uint8)
    encode_png(tmp_path / "a.png", gray)
    np.testing.assert_array_equal(decode_image(tmp_path / "a.png")[:, :, 0], gray)
    deep = np.random.default_rng(3).integers(0, 65536, (6, 10, 2)).astype(np.uint16)[:, ::2, :1]
    encode_png(tmp_path / "b.png", deep)
    np.testing.assert_array_equal(decode_image(tmp_path / "b.png"), deep)


@pytest.mark.parametrize("image, message", [
    (np.zeros((2, 2, 1), np.float32), "unsupported pixel type"),
    (np.zeros((2, 2, 2), np.uint8), "2-channel"),
    (np.zeros((2, 2, 3), np.uint16), "single-channel"),
])
def test_png_refuses_what_it_cannot_store(tmp_path, image, message):
    with pytest.raises(SimganError, match=message):
        encode_png(tmp_path / "x.png", image)


def test_decode_converts_palette_and_alpha(tmp_path):
    Image.new("RGBA", (3, 2), (10, 20, 30, 40)).save(tmp_path / "rgba.png")
    assert decode_image(tmp_path / "rgba.png").shape == (2, 3, 3)
    Image.new("LA", (3, 2), (77, 9)).save(tmp_path / "la.png")
    la = decode_image(tmp_path / "la.png")
    assert la.shape == (2, 3, 1) and int(la[0, 0, 0]) == 77
    Image.new("P", (3, 2)).save(tmp_path / "p.png")
    assert decode_image(tmp_path / "p.png").shape == (2, 3, 3)


def test_model_scaling_round_trip_is_exact_for_every_value():
    for bits, dtype in ((8, np.uint8), (16, np.uint16)):
        m = (1 << bits) - 1
        values = np.arange(m + 1, dtype=np.int64).astype(dtype).reshape(1, 1, -1, 1)  # N x H x W x C
        x = to_model(values, m)
        assert x.dtype == torch.float32 and tuple(x.shape) == (1, 1, 1, m + 1)  # N x C x H x W
        assert float(x.min()) == -1.0 and float(x.max()) == 1.0
        back = from_model(x, m)
        assert back.dtype == dtype
        np.testing.assert_array_equal(back, values)


def test_model_scaling_keeps_channels_and_clamps():
    rgb = np.random.default_rng(4).integers(0, 256, (2, 3, 4, 3), dtype=np.uint8)
    np.testing.assert_array_equal(from_model(to_model(torch.from_numpy(rgb), 255), 255), rgb)
    out = from_model(torch.tensor([[[[-3.0, 3.0]]]]), 255)
    assert out.reshape(-1).tolist() == [0, 255]


@pytest.mark.parametrize("lines, message", [
    (['{"file": "a.png"}', "{oops"], r"labels\.jsonl:2: line is not valid JSON"),
    (['{"gaze": [0, 0, -1]}'], r"labels\.jsonl:1: .*\"file\" key"),
    (['["a.png"]'], r"labels\.jsonl:1: .*JSON object"),
    (['{"file": "missing.png"}'], r"labels\.jsonl:1: names a missing file 'missing\.png'"),
    (['{"file": "../a.png"}'], r"labels\.jsonl:1: .*inside the dataset folder"),
    (['{"file": "/etc/passwd"}'], r"labels\.jsonl:1: .*inside the dataset folder"),
    (['{"file": ""}'], r"labels\.jsonl:1: \"file\" must be a non-empty string"),
    (['{"file": 3}'], r"labels\.jsonl:1: \"file\" must be a non-empty string"),
    (['{"file": "a.png"}', '{"file": "./a.png"}'], r"labels\.jsonl:2: file 'a\.png' is listed twice"),
])
def test_labels_validation(tmp_path, lines, message):
    root = _folder(tmp_path, lines)
    with pytest.raises(SimganError, match=message) as err:
        ImageFolder.open(root)
    assert "\n" not in str(err.value)


def test_labels_lines_pass_through_byte_identical(tmp_path):
    lines = [
        '{"file":"a.png","gaze":[0.1,-0.2,-0.97],"note":"caf\\u00e9"}',
        '{ "z": 1e-3 , "file" : "b.png", "nested": {"k": [1, 2.50]} }',
    ]
    root = _folder(tmp_path, lines[:1] + ["", "   "] + lines[1:])  # blank lines are skipped
    ds = ImageFolder.open(root, need_labels=True)
    assert [r.line for r in ds.records] == [line.encode() for line in lines]
    assert ds.labels(1) == {"z": 0.001, "nested": {"k": [1, 2.5]}}
    assert ds.labels(0)["note"] == "café"
    # Writing the records' lines again reproduces the file's labels exactly.
    writer = DatasetWriter(tmp_path / "copy")
    for i, record in enumerate(ds.records):
        writer.write_image(record.file, ds.read(i))
    out = writer.finish([r.line for r in ds.records])
    assert (out / LABELS_FILE).read_bytes() == b"".join(line.encode() + b"\n" for line in lines)


def test_crlf_lines_are_accepted(tmp_path):
    root = _folder(tmp_path, [])
    (root / LABELS_FILE).write_bytes(b'{"file": "a.png"}\r\n{"file": "b.png"}\r\n')
    ds = ImageFolder.open(root)
    assert [r.line for r in ds.records] == [b'{"file": "a.png"}', b'{"file": "b.png"}']


def test_unlabelled_folder_lists_images_sorted_and_skips_hidden(tmp_path):
    root = tmp_path / "real"
    for name in ("b.png", "a.jpg", "sub/c.png", ".hidden/d.png", "notes.txt"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("txt"):
            (root / name).write_text("x")
        else:
            Image.new("L", (5, 4), 9).save(root / name)
    ds = ImageFolder.open(root)
    assert not ds.labelled
    assert [r.file for r in ds.records] == ["a.jpg", "b.png", "sub/c.png"]
    assert ds.labels(0) == {}
    assert ds.load().shape == (3, 4, 5, 1)
    with pytest.raises(SimganError, match="has no labels.jsonl; this command needs labelled images"):
        ImageFolder.open(root, need_labels=True)
    assert isinstance(open_dataset(root), ImageFolder)


def test_folder_open_errors(tmp_path):
    with pytest.raises(SimganError, match="not found"):
        ImageFolder.open(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SimganError, match="holds no images"):
        ImageFolder.open(tmp_path / "empty")
    encode_png(tmp_path / "one.png", np.zeros((2, 2, 1), np.uint8))
    with pytest.raises(SimganError, match="got a file"):
        ImageFolder.open(tmp_path / "one.png")


def test_mixed_sizes_name_the_file(tmp_path):
    images = [np.zeros((4, 4, 1), np.uint8)] * 3
    out = write_dataset(tmp_path / "set", np.stack(images))
    encode_png(out / "img/000002.png", np.zeros((5, 4, 1), np.uint8))
    ds = ImageFolder.open(out)
    with pytest.raises(SimganError, match=r"000002\.png is 4x5 8-bit gray but .*000000\.png is 4x4 8-bit gray"):
        ds.load()
    encode_png(out / "img/000002.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(SimganError, match=r"000002\.png is 4x4 8-bit RGB"):
        ImageFolder.open(out).read_many([0, 1, 2])


def test_corrupt_image_names_the_file(tmp_path):
    out = write_dataset(tmp_path / "set", np.zeros((2, 3, 3, 1), np.uint8), [{"k": 0}, {"k": 1}])
    (out / "img/000001.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    ds = ImageFolder.open(out, need_labels=True)
    with pytest.raises(SimganError, match=r"cannot read image .*000001\.png: corrupt") as err:
        ds.load()
    assert "\n" not in str(err.value)


def test_many_images_decode_with_threads(tmp_path):
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (70, 3, 4, 1), dtype=np.uint8)
    out = write_dataset(tmp_path / "set", images)
    ds = ImageFolder.open(out)
    np.testing.assert_array_equal(ds.read_many(list(range(69, -1, -1)), threads=3), images[::-1])
    np.testing.assert_array_equal(ds.load(threads=2), images)


def test_write_dataset_round_trip(tmp_path):
    rng = np.random.default_rng(6)
    images = rng.integers(0, 65536, (3, 5, 6, 1)).astype(np.uint16)
    labels = [{"joints": [[1.5, 2.0]], "id": i, "name": f"n{i}"} for i in range(3)]
    out = write_dataset(tmp_path / "depth", images, labels)
    ds = ImageFolder.open(out, need_labels=True)
    assert ds.spec.describe() == "6x5 16-bit gray" and ds.spec.max_value == 65535
    np.testing.assert_array_equal(ds.load(), images)
    assert [ds.labels(i) for i in range(3)] == labels
    assert ds.records[1].line == json_line({"file": "img/000001.png", **labels[1]})


def test_writer_never_publishes_a_partial_folder(tmp_path):
    out = tmp_path / "out"
    images = [np.zeros((2, 2, 1), np.uint8), np.zeros((2, 2, 1), np.float64)]  # the second cannot be written
    with pytest.raises(SimganError, match="unsupported pixel type"):
        write_dataset(out, images, [{}, {}])
    assert not out.exists() and not (tmp_path / "out.partial").exists()

    # A process that dies before finish() leaves only OUT.partial, nothing named OUT.
    writer = DatasetWriter(out)
    writer.write_image("img/0.png", np.zeros((2, 2, 1), np.uint8))
    del writer
    assert not out.exists() and (tmp_path / "out.partial" / "img" / "0.png").exists()
    # A new writer starts afresh; finish publishes everything at once.
    writer = DatasetWriter(out)
    assert not (tmp_path / "out.partial" / "img").exists()
    writer.write_image("img/1.png", np.zeros((2, 2, 1), np.uint8))
    assert writer.finish([json_line({"file": "img/1.png"})]) == out
    assert not (tmp_path / "out.partial").exists()
    assert ImageFolder.open(out, need_labels=True).records[0].file == "img/1.png"
    with pytest.raises(SimganError, match="already exists"):
        DatasetWriter(out)


def test_resumable_writer_keeps_its_work_and_joined_writers_write_into_it(tmp_path):
    """``resume=True`` (refine): an interruption keeps OUT.partial for the next run, which
    continues it; bad input found by the run that created it leaves nothing behind. A writer with
    ``owner=False`` (torchrun ranks > 0) writes into the owner's OUT.partial and cleans up nothing."""
    out = tmp_path / "out"
    zero = np.zeros((2, 2, 1), np.uint8)
    with pytest.raises(SimganError):
        with DatasetWriter(out, resume=True) as writer:
            writer.write_image("img/0.png", zero)
            raise SimganError("bad input")
    assert not (tmp_path / "out.partial").exists()
    with pytest.raises(KeyboardInterrupt):
        with DatasetWriter(out, resume=True) as writer:
            assert writer.created
            writer.write_image("img/0.png", zero)
            raise KeyboardInterrupt
    assert (tmp_path / "out.partial" / "img" / "0.png").exists()
    with pytest.raises(SimganError):
        with DatasetWriter(out, resume=True) as writer:  # continuing: even bad input keeps the work
            assert not writer.created and (writer.partial / "img" / "0.png").exists()
            with DatasetWriter(out, resume=True, owner=False) as joined:
                joined.write_image("img/1.png", zero)
                raise SimganError("a failure in another process's part")
    assert (tmp_path / "out.partial" / "img" / "1.png").exists()
    with DatasetWriter(out, resume=True) as writer:
        writer.add_lines([json_line({"file": f"img/{i}.png"}) for i in range(2)])
        writer.finish()
    assert len(ImageFolder.open(out, need_labels=True)) == 2 and not (tmp_path / "out.partial").exists()


def test_writer_unlabelled_finish_writes_no_labels(tmp_path):
    writer = DatasetWriter(tmp_path / "real")
    writer.write_image("x.png", np.zeros((2, 2, 3), np.uint8))
    out = writer.finish(None)
    assert not (out / LABELS_FILE).exists()
    assert not ImageFolder.open(out).labelled


def test_json_line_is_one_line():
    line = json_line({"file": "a.png", "text": "two\nlines", "v": [1.0, 2]})
    assert b"\n" not in line and json.loads(line)["text"] == "two\nlines"

