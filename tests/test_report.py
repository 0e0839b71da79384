"""Streaming reports: chunked and sharded results equal the in-memory analysis; bad rows stop with the row."""

import json
import os
import subprocess
import sys
import threading
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import torch

import lensdash as ld
from lensdash.analysis import analyze, per_class_table
from lensdash.cli import ProgressBar, main
from lensdash.io import _csv_parse as files
from lensdash.io import open_stream
from lensdash.report import REPORT_FILES, report
from lensdash.report_folder import MARKER

K, N = 5, 900
NAMES = ["ant", "bee", "cat", "dog", "eel"]
LENS = ld.merge_lens(NAMES, [["cat", "dog"], ["ant", "bee", "eel"]])


@pytest.fixture(scope="module")
def data():
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(N, K, generator=gen) * 2).float()
    labels = torch.randint(0, K, (N,), generator=gen)
    return logits, labels


@pytest.fixture
def paths(tmp_path, data):
    logits, labels = data
    frame = pd.DataFrame(logits.numpy(), columns=NAMES)
    frame.insert(2, "label", [NAMES[i] for i in labels.tolist()])
    out = {
        "csv": tmp_path / "p.csv",
        "parquet": tmp_path / "p.parquet",
        "npy": tmp_path / "p.npy",
        "npy_f": tmp_path / "f.npy",
    }
    frame.to_csv(out["csv"], index=False)
    frame.to_parquet(out["parquet"], row_group_size=100)
    np.save(out["npy"], logits.numpy())
    np.save(out["npy_f"], np.asfortranarray(logits.numpy()))
    pd.Series(labels.numpy(), name="label").to_csv(tmp_path / "labels.csv", index=False)
    out["labels"] = tmp_path / "labels.csv"
    lens_path = tmp_path / "lens.json"
    ld.save_lens(LENS, lens_path)
    out["lens"] = lens_path
    return out


def small_parts():
    return mock.patch.object(files, "PART_BYTES", 4096)


def expected(data, family="target"):
    logits, labels = data
    return analyze(logits, labels, LENS, family=family, class_names_=NAMES)


def assert_matches(result, analysis):
    got, want = result.summary(), analysis.summary()
    for key in ("unlensed_loss", "lensed_loss", "accuracy", "lens_aware_accuracy"):
        assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-9), key
    assert got["num_samples"] == want["num_samples"] and got["num_classes"] == want["num_classes"]
    pd.testing.assert_frame_equal(result.sums.per_class_table(NAMES), per_class_table(analysis), rtol=1e-5)
    grad_u, grad_l = result.sums.class_mean_gradients()
    torch.testing.assert_close(grad_u.float(), analysis.grad_unlensed, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(grad_l.float(), analysis.grad_lensed, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("family", ["target", "prediction"])
def test_csv_in_many_parts_equals_the_in_memory_analysis(paths, data, family):
    with small_parts():
        stream = open_stream(paths["csv"])
        assert sum(1 for _ in stream.chunks) > 10  # really chunked
        result = report(paths["csv"], paths["lens"], family=family)
    assert result.kind == "logits" and result.class_names == tuple(NAMES)
    assert_matches(result, expected(data, family))


def test_a_wide_csv_streams(tmp_path):
    # 3,000 classes: the header alone is ~26 KB, more than the first rows the kind was once detected on.
    k = 3000
    frame = pd.DataFrame(
        np.random.default_rng(0).standard_normal((20, k)).round(4), columns=[f"class_{i}" for i in range(k)]
    )
    frame["label"] = np.arange(20)
    path = tmp_path / "wide.csv"
    frame.to_csv(path, index=False)
    stream = open_stream(path)
    chunks = list(stream.chunks)
    assert stream.kind == "logits" and len(stream.class_names) == k and sum(len(c.labels) for c in chunks) == 20
    torch.testing.assert_close(
        torch.cat([c.logits for c in chunks]), torch.tensor(frame.iloc[:, :k].to_numpy(), dtype=torch.float32)
    )


def test_a_csv_stream_left_early_stops_its_threads(paths):
    before = threading.active_count()
    with small_parts():
        stream = open_stream(paths["csv"])
        chunks = iter(stream.chunks)
        first = next(chunks)
        assert threading.active_count() > before  # parts are parsed ahead on a pool
        chunks.close()
    assert first.row == 0 and threading.active_count() == before


@pytest.mark.parametrize("fmt", ["parquet", "npy", "npy_f"])
def test_parquet_and_npy_equal_the_csv_result(paths, data, fmt):
    labels = None if fmt == "parquet" else paths["labels"]
    lens = paths["lens"] if fmt == "parquet" else LENS.matrix  # .npy has no class names: a lens by position
    result = report(paths[fmt], lens, labels=labels, chunk_rows=128)
    assert_matches(result, expected(data))


@pytest.mark.parametrize("fmt", ["csv", "parquet", "npy"])
def test_shards_add_up_to_the_whole(paths, data, fmt):
    labels = paths["labels"] if fmt == "npy" else None
    with small_parts():
        parts = [report(paths[fmt], LENS.matrix, labels=labels, chunk_rows=64, shard=(r, 3)) for r in range(3)]
    assert [p.rows for p in parts] != [N, 0, 0] and sum(p.rows for p in parts) == N
    for part in parts[1:]:
        parts[0].add_(part)
    assert_matches(parts[0], expected(data))


def test_separate_labels_file_with_a_sharded_csv(paths, data, tmp_path):
    headerless = tmp_path / "h.csv"
    np.savetxt(headerless, data[0].numpy(), delimiter=",")
    with small_parts():
        parts = [report(headerless, LENS.matrix, labels=paths["labels"], shard=(r, 2)) for r in range(2)]
    parts[0].add_(parts[1])
    assert_matches(parts[0], expected(data))


def test_cli_writes_every_file_and_the_numbers(paths, data, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(paths["csv"]), "--lens", str(paths["lens"]), "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == sorted([*REPORT_FILES, MARKER])
    summary = json.loads((out / "summary.json").read_text())
    want = expected(data).summary()
    assert summary["complete"] and summary["lensed_loss"] == pytest.approx(want["lensed_loss"], rel=1e-6)
    table = pd.read_csv(out / "per_class.csv")
    assert list(table["class"]) == NAMES and table["count"].sum() == N
    grads = pd.read_csv(out / "gradients_lensed.csv", index_col=0)
    np.testing.assert_allclose(grads.to_numpy(), expected(data).grad_lensed.numpy(), atol=1e-6)
    assert (pd.read_csv(out / "confusion.csv", index_col=0).to_numpy() == expected(data).confusion.numpy()).all()
    html = (out / "report.html").read_text()
    # 3 gradient panels, the confusion, its and two gradients' roll-ups to the lens's groups, two reliability diagrams
    assert html.count("plotly-graph-div") == 9 and "Class-mean gradient, lensed" in html
    assert "Confusion by lens group" in html and "Reliability: top label and lensed prediction" in html
    captured = capsys.readouterr()
    assert f"{N:,} samples x {K} classes" in captured.out and "rows/s" in captured.err
    # A second run replaces its own previous report; a folder with other files is refused before reading.
    assert main(["report", str(paths["csv"]), "--lens", str(paths["lens"]), "--out", str(out), "--quiet"]) == 0
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert main(["report", str(paths["csv"]), "--lens", str(paths["lens"]), "--out", str(tmp_path / "other")]) == 2
    assert "a folder with other content ('notes.txt')" in capsys.readouterr().err
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_bad_row_in_the_middle_stops_with_its_row_and_writes_nothing(paths, tmp_path, capsys):
    lines = paths["csv"].read_text().splitlines(keepends=True)
    lines[700] = "0.1,oops," + lines[700].split(",", 2)[2]
    broken = tmp_path / "broken.csv"
    broken.write_text("".join(lines))
    out = tmp_path / "report"
    with small_parts():
        code = main(["report", str(broken), "--lens", str(paths["lens"]), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "broken.csv, row 701, column 2: expected a number, found 'oops'" in err
    assert "stopped after reading" in err and "no report was written" in err
    rows_read = int(err.split("stopped after reading ")[1].split(" rows")[0].replace(",", ""))
    assert 0 < rows_read < 699
    assert not out.exists() and not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_later_rows_must_keep_the_detected_kind(tmp_path):
    rows = (
        ["a,b,label"] + ["0.3,0.7,1"] * 6000 + ["0.3,0.5,1"] + ["0.5,0.5,0"] * 10
    )  # beyond the rows that decide the kind
    path = tmp_path / "probs.csv"
    path.write_text("\n".join(rows) + "\n")
    with (
        small_parts(),
        pytest.raises(
            ld.InputError,
            match=r"probs.csv, row 6002: expected probabilities summing to 1.*found a sum of 0.8.*stopped after",
        ),
    ):
        report(path, torch.eye(2))


def test_streaming_refusals(tmp_path, paths):
    text = tmp_path / "names.csv"
    text.write_text("1.0,2.0,cat\n0.5,0.1,dog\n")
    with pytest.raises(ld.InputError, match="add a header with the class names"):
        report(text, torch.eye(2), label_column=2)
    npz = tmp_path / "p.npz"
    np.savez(npz, logits=np.zeros((2, 2)))
    with pytest.raises(ld.InputError, match=r"an array named 'labels' in the archive, or --labels FILE"):
        open_stream(npz)  # .npz streams (#13); without labels it is refused
    with pytest.raises(ld.InputError, match="a labels file with --labels"):
        open_stream(paths["npy"])
    short = tmp_path / "short.csv"
    short.write_text("label\n0\n1\n")
    with pytest.raises(ld.InputError, match=f"expected {N} labels .* found 2"):
        open_stream(paths["npy"], short)
    with pytest.raises(ld.InputError, match="a shard"):
        open_stream(paths["csv"], shard=(2, 2))
    with pytest.raises(ld.InputError, match="a lens family"):
        report(paths["csv"], LENS, family="both")
    if not torch.cuda.is_available():
        with pytest.raises(ld.InputError, match="a CUDA device"):
            report(paths["csv"], LENS, device="cuda")
    with pytest.raises(ld.LensError, match="unknown"):
        report(paths["npy"], paths["lens"], labels=paths["labels"])  # named lens, unnamed classes


def test_progress_bar_without_a_terminal_prints_every_tenth(capsys):
    import io

    out = io.StringIO()
    bar = ProgressBar(stream=out)
    for done in range(0, 101, 5):
        bar(done, 100, done * 10)
    lines = out.getvalue().splitlines()
    assert 10 <= len(lines) <= 12 and lines[-1].startswith("[" + "#" * 30 + "] 100.0%") and "1,000 rows" in lines[-1]


def test_torchrun_with_two_cpu_processes_equals_one_process(paths, data, tmp_path):
    """Metrics, hierarchy and a second model B, all-reduced (and B's loss differences gathered) equal one process."""
    logits, labels = data
    frame = pd.DataFrame((logits * 0.5 + torch.randn(N, K, generator=torch.Generator().manual_seed(3))).numpy())
    frame.columns = NAMES
    frame["label"] = labels.numpy()
    frame.to_parquet(tmp_path / "b.parquet", row_group_size=128)  # A is a CSV: rank 1 reads B from its start
    (tmp_path / "tree.csv").write_text("small,ant\nsmall,bee\nsmall,eel\npets,cat\npets,dog\n")
    with_site = pd.read_csv(paths["csv"])
    with_site["site"] = np.array(["north", "south", "east"])[np.arange(N) % 3]  # a text column: metadata
    with_site.to_csv(tmp_path / "a.csv", index=False)
    paths = {**paths, "csv": tmp_path / "a.csv"}
    extra = ["--hierarchy", str(tmp_path / "tree.csv"), "--compare", str(tmp_path / "b.parquet")]
    extra += ["--slice-by", "site"]
    extra += ["--bootstrap-resamples", "200", "--quiet"]
    single, double = tmp_path / "one", tmp_path / "two"
    assert main(["report", str(paths["csv"]), "--lens", str(paths["lens"]), "--out", str(single), *extra]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "lensdash",
        "report",
        str(paths["csv"]),
        "--lens",
        str(paths["lens"]),
        "--out",
        str(double),
        *extra,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = json.loads((single / "summary.json").read_text()), json.loads((double / "summary.json").read_text())
    assert two["processes"] == 2 and one["processes"] == 1
    assert one.keys() == two.keys() and {"ece", "top4_accuracy", "macro_f1", "lensed_ece", "hierarchy"} <= one.keys()
    for key, value in one.items():
        if key != "processes":
            close = isinstance(value, (float, dict))
            assert two[key] == (pytest.approx(value, rel=1e-9) if close else value), key
    assert one["hierarchy"]["n"] == N and one["hierarchy"]["accuracy@level1"] > one["accuracy"]
    for name in ("per_class.csv", "comparison_per_class.csv", "confusion.csv", "slices.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(double / name), pd.read_csv(single / name), rtol=1e-9)
    one, two = (json.loads((folder / "comparison.json").read_text()) for folder in (single, double))
    assert one["samples"] == N and one["bootstrap_resamples"] == 200
    for key, value in one.items():
        assert two[key] == (pytest.approx(value, rel=1e-9) if isinstance(value, float) else value), key
    for key in ("lensed_loss_diff_low", "lensed_loss_diff_high", "unlensed_loss_diff_low", "unlensed_loss_diff_high"):
        assert two[key] == one[key], key  # the same per-sample differences in the same order: the same interval


def test_torchrun_one_process_failing_stops_both_without_a_report(paths, tmp_path):
    lines = paths["csv"].read_text().splitlines(keepends=True)
    lines[850] = "0.1,oops," + lines[850].split(",", 2)[2]  # in the second process's half
    broken = tmp_path / "broken.csv"
    broken.write_text("".join(lines))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "lensdash",
        "report",
        str(broken),
        "--lens",
        str(paths["lens"]),
        "--out",
        str(tmp_path / "out"),
        "--quiet",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert done.returncode != 0
    assert "rank 1/2 error: broken.csv, row 851, column 2: expected a number, found 'oops'" in done.stderr
    assert "rank 0/2 stopped: another process failed" in done.stderr
    assert not (tmp_path / "out").exists()


def test_more_labels_than_rows_is_refused_at_the_end(paths, tmp_path, capsys):
    longer = tmp_path / "longer.csv"
    longer.write_text(paths["labels"].read_text() + "0\n0\n")
    headerless = tmp_path / "h.csv"
    np.savetxt(headerless, np.ones((N, K)) * 2, delimiter=",")
    plain_lens = tmp_path / "lens.csv"
    plain_lens.write_bytes(ld.lens_to_bytes(LENS, "plain-csv"))
    args = [
        "report",
        str(headerless),
        "--labels",
        str(longer),
        "--lens",
        str(plain_lens),
        "--out",
        str(tmp_path / "o"),
        "--quiet",
    ]
    assert main(args) == 2
    assert f"the labels file: expected {N} labels (one per prediction row), found {N + 2}" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_bounds_no_file_size_by_default_but_an_npz_stays_bounded(tmp_path, monkeypatch):
    """A report holds one chunk at a time, so --max-cells has no default bound; an .npz is decompressed whole."""
    from lensdash.cli import _parser
    from lensdash.io import _stream

    args = _parser().parse_args(["report", "p.npy", "--lens", "l.csv"])
    assert args.max_cells is None
    logits = np.random.default_rng(0).standard_normal((40, 3)).astype(np.float32)
    np.save(tmp_path / "p.npy", logits)
    np.save(tmp_path / "y.npy", np.arange(40) % 3)
    np.savez(tmp_path / "p.npz", logits=logits, labels=np.arange(40) % 3)
    monkeypatch.setattr(_stream, "DEFAULT_MAX_CELLS", 100)
    stream = open_stream(tmp_path / "p.npy", tmp_path / "y.npy", max_cells=None)
    assert sum(len(chunk.labels) for chunk in stream.chunks) == 40  # 120 cells: over 100, but not bounded
    with pytest.raises(ld.InputError, match="max_cells"):
        open_stream(tmp_path / "p.npz", max_cells=None)
