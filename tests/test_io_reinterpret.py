"""reinterpret: a read taken as another kind equals reading the file again with that kind (the app keeps no file)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lensdash import InputError
from lensdash.io import KINDS, read_predictions, reinterpret
from lensdash.io._kinds import detected_note


def _csv(values: np.ndarray, labels: np.ndarray) -> bytes:
    names = [f"c{j}" for j in range(values.shape[1])]
    lines = [",".join([*names, "label"])]
    lines += [",".join([*(repr(float(v)) for v in row), str(y)]) for row, y in zip(values, labels)]
    return ("\n".join(lines) + "\n").encode()


def _files(seed: int = 0, n: int = 40, k: int = 5) -> dict[str, bytes]:
    """One file of each kind: logits, probabilities (rows summing to 1) and log-probabilities."""
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((n, k)) * 3).astype(np.float32)
    probs = torch.softmax(torch.from_numpy(logits).double(), 1).numpy().astype(np.float32)
    log_probs = torch.log_softmax(torch.from_numpy(logits).double(), 1).numpy().astype(np.float32)
    labels = rng.integers(0, k, n)
    return {"logits": _csv(logits, labels), "probs": _csv(probs, labels), "log_probs": _csv(log_probs, labels)}


def _read_or_error(data: bytes, kind: str):
    try:
        return read_predictions(data, kind=kind)
    except InputError as exc:
        return exc


def _same(got, expected, *, exact: bool) -> None:
    assert got.kind == expected.kind
    assert got.notes == expected.notes
    assert got.class_names == expected.class_names
    assert torch.equal(got.labels, expected.labels)
    if exact:
        assert torch.equal(got.logits, expected.logits)
    else:  # probabilities are kept as their log: exp of it is the file's value within float32 rounding
        torch.testing.assert_close(got.logits, expected.logits, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("file_kind", ["logits", "probs", "log_probs"])
@pytest.mark.parametrize("read_as", KINDS)
@pytest.mark.parametrize("taken_as", KINDS)
def test_equals_reading_the_file_again(file_kind, read_as, taken_as):
    data = _files()[file_kind]
    read = _read_or_error(data, read_as)
    if isinstance(read, InputError):
        return  # nothing was read, nothing to take again
    expected = _read_or_error(data, taken_as)
    if isinstance(expected, InputError):
        with pytest.raises(InputError) as caught:
            reinterpret(read, taken_as)
        # The same refusal (what was expected and found, how to fix it), located by sample and column of the scores.
        where, said = str(caught.value).split(": ", 1)
        assert said == str(expected).split(": ", 1)[1]
        assert where.startswith("the predictions bytes, sample "), where
        return
    got = reinterpret(read, taken_as)
    # Exact unless probabilities are taken as logits (kept as their log: exp of it)
    exact = not (read.kind == "probs" and got.kind != "probs")
    _same(got, expected, exact=exact)


def test_the_reads_own_kind_gives_its_own_tensor_and_the_read_is_untouched():
    data = _files()["probs"]
    read = read_predictions(data)
    before = read.logits.clone()
    assert reinterpret(read, "probs").logits is read.logits  # no copy
    assert reinterpret(read, "auto").logits is read.logits
    as_logits = reinterpret(read, "logits")
    assert as_logits.kind == "logits" and torch.equal(read.logits, before)
    logits_read = read_predictions(_files()["logits"])
    assert reinterpret(logits_read, "logits").logits is logits_read.logits
    # A logits file taken as probabilities: refused, and the read's tensor not logged in place.
    with pytest.raises(InputError, match="sample"):
        reinterpret(logits_read, "probs")
    torch.testing.assert_close(logits_read.logits, read_predictions(_files()["logits"]).logits, rtol=0, atol=0)


def test_notes_say_the_new_detection_only():
    read = read_predictions(_files()["log_probs"])
    assert read.notes[-1] == detected_note("log_probs") == "Detected log-probs (kind='auto')."
    assert reinterpret(read, "logits").notes == read.notes[:-1]
    assert reinterpret(reinterpret(read, "logits"), "auto").notes == read.notes


def test_refusals_name_the_sample_and_column():
    data = b"a,b,label\n0.5,0.5,0\n0.9,0.3,1\n"  # row 2 does not sum to 1
    read = read_predictions(data, kind="logits")
    with pytest.raises(
        InputError, match=r"the predictions bytes, sample 2: expected probabilities summing to 1 .*found a sum of 1\.2"
    ) as caught:
        reinterpret(read, "probs")
    assert "Normalise" in str(caught.value)
    with pytest.raises(
        InputError, match=r"sample 1, column 1 of the scores: expected a log-probability <= 0, found 0.5"
    ):
        reinterpret(read, "log_probs")
    with pytest.raises(InputError, match="kind in"):
        reinterpret(read, "probabilities")


def test_npz_and_metadata_and_soft_labels_stay():
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((30, 4)).astype(np.float32)
    out = io.BytesIO()
    np.savez(out, logits=logits, labels=rng.integers(0, 4, 30))
    read = read_predictions(out.getvalue())
    again = reinterpret(read, "logits")
    assert again.logits is read.logits and again.kind == "logits"
    csv = b"id,a,b,label\n7,0.2,0.8,1\n9,0.6,0.4,0\n"
    read = read_predictions(csv)
    taken = reinterpret(read, "logits")
    assert taken.metadata is read.metadata and list(taken.metadata["id"]) == [7, 9]
    expected = read_predictions(csv, kind="logits")
    _same(taken, expected, exact=False)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(1, 6),
    st.integers(2, 6),
    st.sampled_from(["logits", "probs", "log_probs"]),
    st.sampled_from(KINDS),
    st.integers(0, 2**31 - 1),
)
def test_fuzz_equals_reading_again(n, k, file_kind, taken_as, seed):
    data = _files(seed, n, k)[file_kind]
    read = read_predictions(data)  # auto, as the app reads first
    expected = _read_or_error(data, taken_as)
    if isinstance(expected, InputError):
        with pytest.raises(InputError):
            reinterpret(read, taken_as)
        return
    got = reinterpret(read, taken_as)
    _same(got, expected, exact=not (read.kind == "probs" and got.kind != "probs"))
