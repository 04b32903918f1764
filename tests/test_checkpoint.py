"""checkpoint.load against crafted damage: each way a file can lie, refused in one line.

The random mutations of test_fuzz.py rarely build these (a header that declares a huge
shape, a zip bomb, a pickle in an array header); here each is built on purpose.
"""

import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

from charrnn import checkpoint as ckpt_io
from charrnn.errors import CharrnnError
from conftest import CONFIGS, Payload, one_line_error, run

SMOKE = os.path.join(CONFIGS, "smoke.yaml")


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    out = tmp_path_factory.mktemp("good")
    assert run("train", "--config", SMOKE, "--out", out, "-q", "--steps", 3).exit_code == 0
    return out / "ckpt.npz"


def arrays_of(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def members_of(path):
    with zipfile.ZipFile(path) as z:
        return {n: (z.read(n), zipfile.ZIP_STORED) for n in z.namelist()}


def zip_with(path, members):
    """A zip archive of raw members (name -> (bytes, compression))."""
    with zipfile.ZipFile(path, "w") as z:
        for name, (payload, method) in members.items():
            z.writestr(zipfile.ZipInfo(name), payload, compress_type=method)
    return path


def npy_bytes(array, allow_pickle=False):
    f = io.BytesIO()
    np.save(f, array, allow_pickle=allow_pickle)
    return f.getvalue()


def refused(path, *fragments):
    """checkpoint.load's one-line refusal of ``path``, checked for ``fragments``."""
    with pytest.raises(CharrnnError) as e:
        ckpt_io.load(str(path))
    message = str(e.value)
    assert message.startswith(str(path)) and "\n" not in message, message
    for f in fragments:
        assert f in message, (f, message)
    return message


def test_an_array_header_declaring_a_huge_shape_is_refused_without_allocating(good, tmp_path):
    members = members_of(good)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (2**40, 2**20)})
    members["Whh.npy"] = (header.getvalue() + b"\0" * 64, zipfile.ZIP_STORED)
    path = zip_with(tmp_path / "huge.npz", members)
    message = refused(path, "damaged checkpoint: 'Whh' declares float32[1099511627776, 1048576]",
                      "but its entry holds 64 bytes of data")
    one_line_error(run("sample", "--checkpoint", path), 1, message)


def test_a_zip_bomb_entry_is_refused_before_it_is_inflated(good, tmp_path):
    members = members_of(good)
    members["extra.npy"] = (npy_bytes(np.zeros(2**27, dtype=np.uint8)), zipfile.ZIP_DEFLATED)  # 128 MiB of zeros
    path = zip_with(tmp_path / "bomb.npz", members)
    assert os.path.getsize(path) < 2**21  # deflated to well under 2 MiB
    refused(path, "refused: 'extra' unpacks to 134,217,856 bytes from", "(a zip bomb?)")


def test_a_compressed_checkpoint_of_ordinary_size_still_loads(good, tmp_path):
    np.savez_compressed(tmp_path / "small.npz", **arrays_of(good))
    assert ckpt_io.load(str(tmp_path / "small.npz")).run.step == 3


def test_an_entry_that_is_not_an_array_is_refused(good, tmp_path):
    members = members_of(good)
    del members["step.npy"]
    members["step"] = (b"no array here", zipfile.ZIP_STORED)
    refused(zip_with(tmp_path / "raw.npz", members), "'step' is not an array (.npy) entry")
    members["two\nlines"] = members.pop("step")  # refused's one-line check covers the name
    refused(zip_with(tmp_path / "raw.npz", members), "'two\\nlines' is not an array (.npy) entry")


def test_a_damaged_array_header_is_refused(good, tmp_path):
    members = members_of(good)
    data = bytearray(members["Whh.npy"][0])
    data[data.index(b"'shape': (") + 10] = ord("}")  # what a flipped byte in the header can do
    members["Whh.npy"] = (bytes(data), zipfile.ZIP_STORED)
    refused(zip_with(tmp_path / "header.npz", members), "'Whh' has a damaged array header")


def test_a_pickle_in_an_array_header_is_never_executed(good, tmp_path):
    marker = tmp_path / "ran"
    members = members_of(good)
    members["vocab.npy"] = (npy_bytes(np.array([Payload(str(marker))], dtype=object), allow_pickle=True),
                            zipfile.ZIP_STORED)
    path = zip_with(tmp_path / "pickle.npz", members)
    refused(path, "pickled Python objects")
    for args in (["sample", "--checkpoint", path], ["eval", "--checkpoint", path], ["train", "--resume", path]):
        one_line_error(run(*args), 1, "pickled")
    with open(tmp_path / "raw.npz", "wb") as f:  # a bare pickle named like a checkpoint
        pickle.dump(Payload(str(marker)), f)
    one_line_error(run("sample", "--checkpoint", tmp_path / "raw.npz"), 1, "not an .npz archive")
    assert not marker.exists()


@pytest.mark.parametrize(
    "key, value, fragment",
    [
        ("config", "[" * 5000 + "]" * 5000, "its 'config' is not valid JSON (nested too deeply)"),
        ("config", b"\xff\xfe{}", "'config' must be a JSON text"),
        ("config", json.dumps({"data": {"path": None}}), "its stored config has no data.path"),
        ("config", json.dumps({"data": {"path": "c.txt"}, "model": {"hidden_size": 10**12}}),
         "'Wxh' is float32[32, 76], but the stored config needs float32[1000000000000, 76]"),
        ("rng", json.dumps({"bit_generator": "MT19937"}), "'rng' is not a random generator state"),
        ("rng", json.dumps([1, 2]), "'rng' is not a random generator state"),
        ("format_version", np.float64(1.0), "'format_version' must be an integer scalar"),
        ("format_version", np.int64(7), "format version 7 is not supported"),
        ("step", np.int64(-1), "'step' must be an integer scalar ≥ 0"),
        ("position", np.bool_(True), "'position' must be an integer scalar ≥ 0"),
        ("epoch", np.float64(2.0), "'epoch' must be an integer scalar ≥ 0"),
        ("step", np.array("3"), "'step' must be an integer scalar ≥ 0"),
        ("smooth_loss", np.float64(np.nan), "'smooth_loss' is nan"),
        ("smooth_loss", np.int64(3), "'smooth_loss' must be a floating-point scalar"),
        ("elapsed_s", np.float64(-5.0), "'elapsed_s' is -5.0"),
        ("val_loss", np.float64(np.inf), "'val_loss' is inf"),
        ("best_val_loss", np.float64(np.nan), "'best_val_loss' is nan"),
        ("vocab", "surrogate", "'vocab' holds values that are not Unicode characters"),
        ("vocab", "beyond", "'vocab' holds values that are not Unicode characters"),
        ("Whh", "nan", "'Whh' holds NaN or infinite values"),
    ],
)
def test_values_a_checkpoint_cannot_hold_are_refused(good, tmp_path, key, value, fragment):
    arrays = arrays_of(good)
    if key == "vocab":
        v = arrays["vocab"].copy()
        v[-1] = 0xD800 if value == "surrogate" else 0x110000
        value = np.sort(v)
    elif key == "Whh":
        value = arrays["Whh"].copy()
        value[0, 0] = np.nan
    arrays[key] = np.array(value)
    np.savez(tmp_path / "bad.npz", **arrays)
    refused(tmp_path / "bad.npz", fragment)


def test_values_a_checkpoint_may_hold_still_load(good, tmp_path):
    arrays = arrays_of(good)
    arrays.update(val_loss=np.float64(np.nan), best_val_loss=np.float64(np.inf), step=np.int32(3),
                  smooth_loss=np.float32(4.0), extra=np.zeros(3))  # nothing measured yet; other widths
    np.savez(tmp_path / "ok.npz", **arrays)
    ck = ckpt_io.load(str(tmp_path / "ok.npz"))
    assert (ck.run.step, ck.run.smooth_loss, ck.run.best_val_loss) == (3, 4.0, np.inf) and np.isnan(ck.run.val_loss)
