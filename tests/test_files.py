import contextlib
import io
import json
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import lensdash as ld
from lensdash import InputError, LensError
from lensdash.examples import ANIMALS, EXAMPLES, example_bytes
from lensdash.io import PROB_SUM_ATOL, _csv_layout, lens_to_bytes, read_lens, read_predictions, save_lens
from lensdash.io import _csv_parse as files


@pytest.fixture
def probs_frame():
    rng = np.random.default_rng(0)
    p = rng.random((6, 3)) + 0.05
    frame = pd.DataFrame(p / p.sum(1, keepdims=True), columns=["cat", "dog", "bird"])
    frame["label"] = [0, 1, 2, 1, 0, 2]
    return frame


def csv_bytes(frame, **kw):
    return frame.to_csv(**kw).encode()


# ------------------------------------------------------------------ reads


@pytest.mark.parametrize("header_name", ["label", "Labels", "TARGET", "y", "true", "Class"])
@pytest.mark.parametrize("position", [0, 1, 3])
def test_label_column_found_by_name_anywhere(probs_frame, header_name, position):
    labels = probs_frame.pop("label")
    probs_frame.insert(position, header_name, labels)
    p = read_predictions(csv_bytes(probs_frame, index=False))
    assert p.class_names == ("cat", "dog", "bird") and p.labels.tolist() == [0, 1, 2, 1, 0, 2]
    expected = np.log(probs_frame[["cat", "dog", "bird"]].to_numpy(dtype=np.float32))
    torch.testing.assert_close(p.logits, torch.from_numpy(expected))
    assert p.kind == "probs"


def test_label_column_argument(probs_frame):
    probs_frame = probs_frame.rename(columns={"label": "truth"})
    p = read_predictions(csv_bytes(probs_frame, index=False), label_column="truth")
    assert p.labels.tolist() == [0, 1, 2, 1, 0, 2]
    assert read_predictions(csv_bytes(probs_frame, index=False), label_column=3).class_names == ("cat", "dog", "bird")
    with pytest.raises(InputError, match="a column named 'nope'"):
        read_predictions(csv_bytes(probs_frame, index=False), label_column="nope")


def test_pandas_index_column_for_predictions_and_labels(probs_frame):
    p = read_predictions(csv_bytes(probs_frame))
    assert p.class_names == ("cat", "dog", "bird") and any("index" in n for n in p.notes)
    preds = probs_frame.drop(columns="label")
    labels = probs_frame["label"]
    p2 = read_predictions(csv_bytes(preds), labels=csv_bytes(labels))
    assert p2.labels.tolist() == labels.tolist() and p2.class_names == ("cat", "dog", "bird")
    p3 = read_predictions(csv_bytes(pd.DataFrame(preds.to_numpy())), labels=csv_bytes(labels.rename(None)))
    assert p3.class_names == ("0", "1", "2")


def test_headerless_numpy_savetxt_with_labels_file_with_and_without_header(tmp_path):
    logits = np.random.default_rng(1).normal(size=(5, 4))
    np.savetxt(tmp_path / "logits.csv", logits, delimiter=",")
    (tmp_path / "labels.csv").write_text("3\n0\n1\n2\n2\n")
    (tmp_path / "labels_h.csv").write_text("label\n3\n0\n1\n2\n2\n")
    for labels in ("labels.csv", "labels_h.csv"):
        p = read_predictions(tmp_path / "logits.csv", labels=tmp_path / labels)
        assert p.kind == "logits" and p.labels.tolist() == [3, 0, 1, 2, 2]
        torch.testing.assert_close(p.logits, torch.from_numpy(logits.astype(np.float32)))
    with open(tmp_path / "logits.csv", "rb") as fh, open(tmp_path / "labels.csv", "rb") as lh:
        assert read_predictions(fh, labels=lh).num_samples == 5


def test_string_labels_mapped_to_header_and_sorted_when_headerless():
    p = read_predictions(b"cat,dog,label\n2,1,cat\n0,3,dog\n1,1, dog\n")
    assert p.labels.tolist() == [0, 1, 1]
    p = read_predictions(b"2,1\n0,3\n1,1\n", labels=b"dog\ncat\ncat\n")
    assert p.class_names == ("cat", "dog") and p.labels.tolist() == [1, 0, 0]
    assert any("sorted label names" in n for n in p.notes)
    with pytest.raises(InputError, match=r"expected 3 distinct label names .* found 2: \['cat', 'dog'\]"):
        read_predictions(b"2,1,0\n0,3,0\n1,1,0\n", labels=b"dog\ncat\ncat\n")
    with pytest.raises(
        InputError, match=r"row 3, column 3: expected a class name from the header \['cat', 'dog'\], found 'cow'"
    ):
        read_predictions(b"cat,dog,label\n2,1,cat\n0,3,cow\n")


@pytest.mark.parametrize("kind", ["probs", "log_probs", "logits"])
def test_kind_detection_and_override(kind):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(8, 5)) * 3
    values = {"logits": x, "probs": np.exp(x) / np.exp(x).sum(1, keepdims=True)}
    values["log_probs"] = np.log(values["probs"])
    frame = pd.DataFrame(values[kind])
    frame["label"] = rng.integers(0, 5, 8)
    data = frame.to_csv(index=False).encode()
    auto = read_predictions(data)
    assert auto.kind == kind
    expected = torch.log_softmax(torch.from_numpy(x), 1).float()
    torch.testing.assert_close(torch.log_softmax(auto.logits, 1), expected, atol=1e-5, rtol=1e-5)
    assert read_predictions(data, kind="logits").kind == "logits"


def test_borderline_probabilities_are_not_silently_misread():
    with pytest.raises(
        InputError, match=r"row 3: expected probability rows summing to 1 \(within 0.01\).* found a sum of 0.9"
    ):
        read_predictions(b"a,b,label\n0.5,0.5,0\n0.5,0.4,1\n")
    with pytest.raises(InputError, match=r"row 3: expected probabilities summing to 1"):
        read_predictions(b"a,b,label\n0.5,0.5,0\n0.5,0.4,1\n", kind="probs")
    ok = read_predictions(b"a,b,label\n0.5,0.5,0\n0.5,0.4,1\n", kind="logits")
    assert ok.kind == "logits"
    assert read_predictions(f"a,b,label\n0.5,{0.5 + PROB_SUM_ATOL / 2},0\n".encode()).kind == "probs"


def test_zero_probability_becomes_minus_inf_and_an_honest_inf_loss():
    p = read_predictions(b"a,b,c,label\n0.5,0.5,0,0\n")
    assert p.logits[0, 2] == -torch.inf
    loss = ld.lensed_cross_entropy(p.logits, p.labels, ld.merge_lens(3, [[0, 1]]).matrix)
    torch.testing.assert_close(loss, torch.tensor(0.0))
    assert ld.lensed_cross_entropy(p.logits, p.labels, ld.merge_lens(3, [[0, 2]]).matrix) == torch.inf


@pytest.mark.parametrize(
    "data",
    [
        b"a;b;label\n1;2;0\n3;4;1\n",
        b"a\tb\tlabel\n1\t2\t0\n3\t4\t1\n",
        b"\xef\xbb\xbfa,b,label\r\n1,2,0\r\n3,4,1\r\n",
        b'"a","b","label"\n"1","2","0"\n"3","4","1"',
        b"a,b,label\n1e0,2.0E+0,0\n 3 , 4 ,1\n",
        b"a,b,label\n1,2,0\n3,4,1",
    ],
)
def test_dialects(data):
    p = read_predictions(data, kind="logits")
    torch.testing.assert_close(p.logits, torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert p.class_names == ("a", "b") and p.labels.tolist() == [0, 1]


def test_parquet_npy_npz(tmp_path, probs_frame):
    probs_frame.to_parquet(tmp_path / "p.parquet")
    p = read_predictions(tmp_path / "p.parquet")
    assert p.class_names == ("cat", "dog", "bird") and p.kind == "probs" and p.labels.tolist() == [0, 1, 2, 1, 0, 2]
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.array([0, 2, 1, 1]))
    p = read_predictions(tmp_path / "x.npy", labels=tmp_path / "y.npy")
    torch.testing.assert_close(p.logits, torch.from_numpy(x))
    np.savez(tmp_path / "z.npz", logits=x, labels=np.array([0, 2, 1, 1]), class_names=np.array(["a", "b", "c"]))
    p = read_predictions(tmp_path / "z.npz")
    assert p.class_names == ("a", "b", "c") and p.kind == "logits" and p.labels.tolist() == [0, 2, 1, 1]
    np.savez(tmp_path / "bad.npz", something=x, other=x)
    with pytest.raises(InputError, match="an array named one of"):
        read_predictions(tmp_path / "bad.npz")
    with pytest.raises(InputError, match="labels: a column named"):
        read_predictions(tmp_path / "x.npy")


def test_examples_are_readable():
    assert set(EXAMPLES) >= {"seed_4class.csv", "animals_10class.csv"}
    seed = read_predictions(example_bytes("seed_4class.csv"))
    assert seed.kind == "probs" and seed.num_classes == 4
    loss = ld.lensed_cross_entropy(seed.logits[:1], seed.labels[:1], torch.eye(4))
    torch.testing.assert_close(loss, torch.tensor(0.9163), atol=5e-5, rtol=0)
    animals = read_predictions(example_bytes("animals_10class.csv"))
    assert animals.class_names == ANIMALS and animals.kind == "logits"
    split = read_predictions(example_bytes("animals_logits_headerless.csv"), labels=example_bytes("animals_labels.csv"))
    torch.testing.assert_close(split.logits, animals.logits)
    torch.testing.assert_close(split.labels, animals.labels)
    lens, notes = read_lens(example_bytes("animals_lens.csv"), animals.class_names)
    assert lens.matrix[3, 5] == 0.5 and notes == []


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("data", "labels", "match"),
    [
        (b"", None, "found an empty file"),
        (b"  \n\n", None, "found an empty file"),
        (b"a,b,label\n", None, "found a header only"),
        (b"\x00\x01\x02\x03garbage", None, "found binary data"),
        (b"a,b,label\n\xff\xfe,1,0\n", None, r"row 2: expected UTF-8 text, found the byte 0xff"),
        (b"a,b,label\n1,x,0\n", None, r"row 2, column 2: expected a number, found 'x'"),
        (b"a,b,label\n1,2,0\n1,,0\n", None, r"row 3, column 2: expected a number, found an empty or NaN cell"),
        (b"a,b,label\n1,NaN,0\n", None, r"row 2, column 2: expected a number, found an empty or NaN cell"),
        (b"a,b,label\n1,inf,0\n", None, r"row 2, column 2: expected a finite number, found inf"),
        (b"a,b,label\n1,2,0\n1,2\n", None, r"row 3: expected 3 cells per row, like row 1, found 2"),
        (b"a,label\n1,0\n", None, "expected at least 2 class columns, found 1"),
        (b"1,2\n3,4\n", b"0\n1\n1\n", r"expected 2 labels \(one per prediction row\), found 3"),
        (b"a,b,label\n1,2,0\n1,2,5\n", None, r"row 3, column 3: expected a class index in 0..1, found 5"),
        (b"a,b,label\n1,2,-1\n", None, r"row 2, column 3: expected a class index in 0..1, found -1"),
        (b"a,b,label\n1,2,2.5\n", None, r"row 2, column 3: expected an integer class index, found 2.5"),
        (b"a,b,label\n1,2,\n", None, r"row 2, column 3: expected a label, found an empty cell"),
        (b"a,a,label\n1,2,0\n", None, r"prediction columns 1 and 2: expected unique class names"),
        (b"a,b,label\n-0.1,1.1,0\n", None, r"row 2, column 1: expected a probability >= 0"),
        (b"1,2\n3,4\n", None, "labels: a column named one of"),
        (b"a,b,label\n1,2,1\n", b"p,q\n1,2\n", "one label column"),
        (b"a,b,label\n1,2,1\n1,2,2\n", None, "They look 1-based: subtract 1"),
    ],
)
def test_refusals(data, labels, match):
    kind = "probs" if b"-0.1" in data else "auto"
    with pytest.raises(InputError, match=match):
        read_predictions(data, labels, kind=kind)


def test_size_limit_before_parsing(tmp_path):
    path = tmp_path / "big.csv"
    path.write_bytes(b"a,b,label\n" + b"1,2,0\n" * 1000)
    with pytest.raises(InputError, match=r"big.csv: expected a file of at most 0 MB, found 0.0 MB.*command line"):
        read_predictions(path, max_bytes=100)
    with pytest.raises(InputError, match="at most"):
        read_predictions(io.BytesIO(path.read_bytes()), max_bytes=100)
    with pytest.raises(InputError, match="at most"):
        read_predictions(path.read_bytes(), max_bytes=100)


def test_other_argument_errors(tmp_path):
    with pytest.raises(InputError, match="kind in"):
        read_predictions(b"a,b\n1,2", kind="softmax")
    with pytest.raises(InputError, match="a readable file"):
        read_predictions(tmp_path / "missing.csv")
    with pytest.raises(InputError, match="as a path, bytes or a binary file object"):
        read_predictions(12)
    with pytest.raises(InputError, match="log-probability <= 0"):
        read_predictions(b"a,b,label\n-1,2,0\n", kind="log_probs")
    with pytest.raises(InputError, match="log-probabilities whose exp sums to 1"):
        read_predictions(b"a,b,label\n-1,-2,0\n", kind="log_probs")
    with pytest.raises(InputError, match=r"a numeric \.npy"):
        read_predictions(b"\x93NUMPY" + b"\x00" * 20)


# ------------------------------------------------------- large files, in parts


@contextlib.contextmanager
def small_parts(size=64):
    """Parse CSVs in tiny parts, so small test files cross many part boundaries."""
    with mock.patch.object(files, "PART_BYTES", size):
        yield


@pytest.mark.parametrize("source", ["path", "bytes", "upload"])
def test_parts_give_the_same_result_as_one_pass(tmp_path, probs_frame, source):
    big = pd.concat([probs_frame] * 40, ignore_index=True)
    data = csv_bytes(big)  # with the pandas index column
    path = tmp_path / "big.csv"
    path.write_bytes(data)
    arg = {"path": path, "bytes": data, "upload": _named(data, "big.csv")}[source]
    whole = read_predictions(data)
    with small_parts():
        parted = read_predictions(arg)
    torch.testing.assert_close(parted.logits, whole.logits)
    torch.testing.assert_close(parted.labels, whole.labels)
    assert parted.class_names == whole.class_names and parted.logits.shape == (len(big), 3)
    assert any("pandas index" in n for n in parted.notes)


def test_errors_in_a_later_part_name_the_file_row():
    good = b"1.5,2,0\n" * 300
    with small_parts():
        with pytest.raises(InputError, match=r"row 302, column 2: expected a number, found 'x'"):
            read_predictions(b"a,b,label\n" + good + b"1,x,0\n" + good)
        with pytest.raises(InputError, match=r"row 251, column 1: expected a number, found an empty or NaN cell"):
            read_predictions(good[: 8 * 250] + b",2,0\n" + good, label_column=2)
        with pytest.raises(InputError, match=r"row 302, column 3: expected an integer class index, found 2.5"):
            read_predictions(b"a,b,label\n" + good + b"1,2,2.5\n" + good)
        with pytest.raises(InputError, match=r"row 302: expected 3 cells per row"):
            read_predictions(b"a,b,label\n" + good + b"1,2\n" + good)


@pytest.mark.parametrize("sep", [",", ";", "\t"])
def test_rows_longer_than_64_kib_are_read_whole(sep):
    # 8,000 classes: every row (~70 KB) is longer than the first 64 KiB the layout is first looked for in.
    k = 8000
    frame = pd.DataFrame(np.random.default_rng(0).standard_normal((3, k)).round(4), columns=[f"c{i}" for i in range(k)])
    frame["label"] = [0, 1, k - 1]
    p = read_predictions(frame.to_csv(index=False, sep=sep).encode())
    assert p.logits.shape == (3, k) and p.labels.tolist() == [0, 1, k - 1] and p.class_names[-1] == f"c{k - 1}"
    torch.testing.assert_close(p.logits, torch.tensor(frame.drop(columns="label").to_numpy(), dtype=torch.float32))
    headerless = read_predictions(
        frame.drop(columns="label").to_csv(index=False, header=False, sep=sep).encode(), labels=b"0\n1\n2\n"
    )
    torch.testing.assert_close(headerless.logits, p.logits)


def test_a_cell_over_the_csv_modules_limit_is_an_input_error():
    good = b"1.5,2,0\n" * 10
    with pytest.raises(
        InputError, match=r"row 12: expected 3 cells per row, like row 1, found a cell longer than 128 KiB"
    ):
        read_predictions(b"a,b,label\n" + good + b"1" * 200_000 + b"\n" + good)
    with pytest.raises(
        InputError, match=r"labels bytes, row 2: expected one label per line, found a cell longer than 128 KiB"
    ):
        read_predictions(b"a,b\n1,2\n3,4\n", labels=b"label\n" + b"1" * 200_000 + b"\n0\n")


def test_a_row_longer_than_the_limit_is_refused_before_parsing():
    with mock.patch.object(_csv_layout, "_HEAD_BYTES", 100), mock.patch.object(_csv_layout, "_MAX_HEAD_BYTES", 1000):
        with pytest.raises(
            InputError, match=r"row 2: expected rows of at most .* found a longer row.*\.npy or Parquet"
        ):
            read_predictions(b"a,b,label\n" + b"0.5," * 400 + b"0\n")
        assert read_predictions(b"a,b,label\n" + b"0.5,0.5,0\n" * 200).logits.shape == (200, 2)


@pytest.mark.parametrize("threads", [1, 2, 8])
def test_parts_parsed_side_by_side_report_the_first_bad_row_in_file_order(threads):
    # Later parts finish parsing while earlier ones still run; the error shown is the file's first.
    good = b"1.5,2,0\n" * 300
    data = b"a,b,label\n" + good + b"1,x,0\n" + good + b"1,2\n" + good
    with small_parts(), mock.patch.object(files, "_THREADS", threads):
        with pytest.raises(InputError, match=r"row 302, column 2: expected a number, found 'x'"):
            read_predictions(data)
        p = read_predictions(b"a,b,label\n" + good * 3)
    assert p.logits.shape == (900, 2) and p.labels.tolist() == [0] * 900


def test_string_labels_across_parts():
    rows = b"".join(b"0.2,0.8,dog\n" if i % 7 else b"0.9,0.1,cat\n" for i in range(400))
    with small_parts():
        p = read_predictions(b"cat,dog,label\n" + rows)
    assert p.labels.tolist() == [1 if i % 7 else 0 for i in range(400)]


# ------------------------------------------------------------------ lenses


@pytest.mark.parametrize("fmt", ["csv", "plain-csv", "json", "pt"])
def test_lens_round_trip(fmt):
    lens = ld.merge_lens(["a", "b", "c"], [["a", "c"]])
    back, _notes = read_lens(lens_to_bytes(lens, fmt))
    torch.testing.assert_close(back.matrix, lens.matrix)
    if fmt != "plain-csv":
        assert back.classes == lens.classes


def test_save_lens_by_extension(tmp_path):
    lens = ld.smoothing_lens(["x", "y"], 0.2)
    for ext in ("csv", "json", "pt"):
        save_lens(lens, tmp_path / f"lens.{ext}")
        assert read_lens(tmp_path / f"lens.{ext}")[0] == lens


def test_lens_matching_by_name_and_subset():
    lens = ld.Lens([[0.5, 0.5], [0.5, 0.5]], ["dog", "cat"])
    full, notes = read_lens(lens_to_bytes(lens, "json"), ["cat", "bird", "dog"])
    assert full.classes == ("cat", "bird", "dog") and full.matrix[0, 2] == 0.5 and full.matrix[1, 1] == 1
    assert "covers 2 of 3" in notes[0]


def test_lens_file_refusals():
    with pytest.raises(LensError, match=r"lens.csv: .*expected a square K×K matrix"):
        read_lens(_named(b"0.5,0.5,0\n0.5,0.5,0\n", "lens.csv"))
    with pytest.raises(LensError, match=r"expected a 3×3 lens"):
        read_lens(b"0.5,0.5\n0.5,0.5\n", ["a", "b", "c"])
    with pytest.raises(LensError, match=r"found unknown \['z'\]"):
        read_lens(json.dumps({"classes": ["a", "z"], "lens": [[1, 0], [0, 1]]}).encode(), ["a", "b"])
    with pytest.raises(InputError, match="invalid JSON"):
        read_lens(b"{not json")
    with pytest.raises(InputError, match="same class names in the first column"):
        read_lens(b"class,a,b\nb,1,0\na,0,1\n")
    with pytest.raises(InputError, match="cannot be loaded safely"):
        read_lens(_named(b"PK\x03\x04 not a torch file", "lens.pt"))


def test_pt_lens_refuses_arbitrary_pickles():
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    buffer = io.BytesIO()
    torch.save({"lens": torch.eye(2), "cls": pickle.dumps(1)}, buffer)
    lens, _ = read_lens(_named(buffer.getvalue(), "lens.pt"))
    assert lens.is_identity()
    evil = io.BytesIO()
    torch.save({"lens": torch.eye(2), "x": Evil()}, evil)
    with pytest.raises(InputError, match="cannot be loaded safely"):
        read_lens(_named(evil.getvalue(), "lens.pt"))


def _named(data, name):
    buffer = io.BytesIO(data)
    buffer.name = name
    return buffer


# ------------------------------------------------------------------- fuzz

VALID = [
    b"a,b,c,label\n0.2,0.3,0.5,0\n1,2,3,2\n",
    b",cat,dog\n0,0.5,0.5\n1,0.1,0.9\n",
    b"1.0;2.0;3.0\n4;5;6\n",
]


@given(st.binary(max_size=300))
def test_fuzz_random_bytes_only_raise_input_error(data):
    with contextlib.suppress(InputError):
        read_predictions(data)


@pytest.mark.parametrize("part_bytes", [files.PART_BYTES, 16])
@given(st.sampled_from(VALID), st.lists(st.tuples(st.integers(0, 60), st.binary(min_size=0, max_size=3)), max_size=4))
def test_fuzz_mutated_csv_only_raise_input_error(part_bytes, base, edits):
    data = bytearray(base)
    for pos, chunk in edits:
        pos = min(pos, len(data))
        data[pos : pos + len(chunk) % 2] = chunk
    try:
        with small_parts(part_bytes):
            p = read_predictions(bytes(data), labels=b"0\n1\n" if not data.startswith(b"a,b,c") else None)
    except InputError:
        return
    assert p.logits.shape[0] == p.labels.shape[0] and p.logits.dtype == torch.float32
