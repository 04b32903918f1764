"""checkpoint.load against crafted damage: each way a file can lie, refused in one line; and
the checkpoints of every format version (tests/data/checkpoints, written by the charrnn of each:
see make.py there), read with the defaults each implies, sampled and resumed.

The random mutations of test_fuzz.py rarely build these (a header that declares a huge
shape, a zip bomb, a pickle in an array header); here each is built on purpose.
"""

import hashlib
import io
import json
import math
import os
import pickle
import zipfile

import numpy as np
import pytest
from conftest import CONFIGS, Payload, one_line_error, run

from charrnn import checkpoint as ckpt_io
from charrnn import device
from charrnn.errors import CharrnnError

SMOKE = os.path.join(CONFIGS, "smoke.yaml")
LAYOUTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "checkpoints")
TINY = os.path.join(LAYOUTS, "tiny.txt")
with open(TINY, "rb") as f:
    TINY_BYTES = f.read()


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
        ("format_version", np.int64(7), "format version 7 is newer than this charrnn reads (1 to 4): upgrade charrnn"),
        ("format_version", np.int64(0), "damaged checkpoint: format version 0 (versions start at 1)"),
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


def layout_file(version):
    return os.path.join(LAYOUTS, f"v{version}.npz")


def moved(tmp_path, version):
    """A copy of layout ``version``'s checkpoint whose stored data.path is a copy of tiny.txt
    (the path it was made with is gone): as if the run and its corpus had moved."""
    text = tmp_path / "tiny.txt"
    text.write_bytes(TINY_BYTES)
    arrays = arrays_of(layout_file(version))
    cfg = json.loads(str(arrays["config"]))
    cfg["data"]["path"] = str(text)
    arrays["config"] = np.array(json.dumps(cfg))
    (tmp_path / "run").mkdir()
    path = tmp_path / "run" / "ckpt.npz"
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("version", [1, 2, 3, 4])
def test_each_format_version_loads_with_the_defaults_it_implies(version):
    path = layout_file(version)
    arrays = arrays_of(path)
    # layouts 1-3 were written by the old charrnn, which declared 1 whatever the layout
    assert int(arrays["format_version"]) == (4 if version == 4 else 1)
    counter = json.loads(str(arrays["rng"]))["bit_generator"] == "charrnn.CounterRNG"
    assert ckpt_io.layout(str(path), arrays, counter) == version
    ck = ckpt_io.load(str(path))
    text = TINY_BYTES.decode("utf-8")
    assert "".join(map(chr, ck.vocab)) == "".join(sorted(set(text))) and len(ck.vocab) == 10
    assert ck.config.model.hidden_size == 4 and ck.run.params["Whh"].shape == (4, 4)
    # written before model.layer_norm existed: their config lacks the key, read as false
    assert "layer_norm" not in json.loads(str(arrays["config"]))["model"]
    assert ck.config.model.layer_norm is False and ck.spec.layer_norm is False and "gh" not in ck.run.params
    assert ck.unit == "chars" and ck.run.step == 2
    assert np.isfinite(ck.run.val_loss) and ck.run.best_val_loss == ck.run.val_loss
    if version < 3:  # no corpus record, and the divergence rule's scalars at their defaults
        assert ck.corpus is None
        assert math.isnan(ck.run.first_loss) and (ck.run.loss_sum, ck.run.loss_steps) == (0.0, 0)
        assert ("unit" in arrays) == (version == 2)
    else:
        assert ck.corpus["bytes"] == os.path.getsize(TINY)
        assert ck.corpus["sha256"] == hashlib.sha256(TINY_BYTES).hexdigest()
        assert math.isfinite(ck.run.first_loss) and ck.run.loss_steps == 0  # (log_every 1: an empty window)
    assert isinstance(ck.run.rng, device.CounterRNG) == (version == 4)


@pytest.mark.parametrize("version", [1, 2, 3, 4])
def test_each_format_version_samples_and_resumes(tmp_path, version):
    path = moved(tmp_path, version)
    r = run("sample", "--checkpoint", path, "-n", 40, "--seed", 1)
    assert r.exit_code == 0, r.output
    assert len(r.stdout.rstrip("\n")) >= 30 and set(r.stdout) <= set(TINY_BYTES.decode("utf-8"))
    r = run("train", "--resume", path, "-q", "--steps", 4)
    assert r.exit_code == 0, r.output
    assert r.stderr.count("does not record its corpus") == (1 if version < 3 else 0), r.stderr
    arrays = arrays_of(path)  # written again, in the newest layout, with the corpus it now knows
    assert int(arrays["format_version"]) == ckpt_io.FORMAT_VERSION and "corpus" in arrays and "unit" in arrays
    ck = ckpt_io.load(str(path))
    assert ck.run.step == 4 and ck.corpus["bytes"] == os.path.getsize(TINY)
    assert isinstance(ck.run.rng, device.CounterRNG) == (version == 4)  # a GPU run's generator is kept


COUNTER = json.dumps({"bit_generator": "charrnn.CounterRNG", "seed": 5, "draws": 0})


@pytest.mark.parametrize(
    "version, change, fragment",
    [
        (4, {"format_version": 5}, "format version 5 is newer than this charrnn reads (1 to 4): upgrade charrnn"),
        (4, {"format_version": 2}, "damaged checkpoint: it has 'corpus', which format version 2 does not have "
                                   "(format version 3 added it)"),
        (2, {"format_version": 3}, "damaged checkpoint: no 'first_loss', which format version 3 has"),
        (4, {"corpus": None}, "damaged checkpoint: no 'corpus', which format version 4 has"),
        (4, {"unit": None}, "damaged checkpoint: no 'unit', which format version 4 has"),
        (4, {"loss_steps": None}, "damaged checkpoint: no 'loss_steps', which format version 4 has"),
        (4, {"format_version": 3}, "its 'rng' is a GPU run's generator (charrnn.CounterRNG), which format version 3 "
                                   "does not have (format version 4 added it)"),
        # declaring 1 (charrnn before the layouts were numbered): the keys must be one layout's
        (3, {"loss_sum": None}, "damaged checkpoint: it has 'loss_steps' (format version 3) but no 'loss_sum', "
                                "which charrnn wrote with it"),
        (1, {"first_loss": np.float64(2.0)}, "it has 'first_loss' (format version 3) but no 'unit'"),
        (2, {"rng": COUNTER}, "it has a CounterRNG 'rng' (format version 4) but no 'first_loss'"),
    ],
)
def test_keys_that_the_declared_version_lacks_or_does_not_have_are_refused(tmp_path, version, change, fragment):
    arrays = arrays_of(layout_file(version))
    for key, value in change.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = np.int64(value) if key == "format_version" else np.array(value)
    np.savez(tmp_path / "bad.npz", **arrays)
    refused(tmp_path / "bad.npz", fragment)


def test_a_layout_declared_by_its_number_or_as_1_loads_alike(tmp_path):
    """Layouts 3 and 4 have the same keys: a file of them with NumPy's generator may declare
    1, 3 or 4; a layout-2 file may declare 1 or 2."""
    for version, declared in [(4, 1), (4, 3), (2, 2), (1, 1)]:
        arrays = arrays_of(layout_file(version))
        arrays["format_version"] = np.int64(declared)
        if version == 4:
            arrays["rng"] = np.array(json.dumps(np.random.default_rng(3).bit_generator.state))
        np.savez(tmp_path / "ok.npz", **arrays)
        ck = ckpt_io.load(str(tmp_path / "ok.npz"))
        assert (ck.corpus is None) == (version < 3) and ck.run.step == 2


def test_a_checkpoint_is_written_in_the_newest_format_version(good, tmp_path):
    arrays = arrays_of(good)
    assert int(arrays["format_version"]) == ckpt_io.FORMAT_VERSION == max(ckpt_io.ADDED)
    assert all(k in arrays for keys in ckpt_io.ADDED.values() for k in keys)
    ck = ckpt_io.load(str(good))
    ck.corpus = None  # the newest version records its corpus: a Checkpoint without one is a bug
    with pytest.raises(ValueError, match="records the corpus"):
        ckpt_io.save(str(tmp_path / "c.npz"), ck)
    assert not os.path.exists(tmp_path / "c.npz")
