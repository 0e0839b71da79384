"""The report command is safe to run over people's folders and safe to open: nothing it did not write is touched,
a killed or interrupted run leaves the complete old or new report, and names from files are never markup."""

from __future__ import annotations

import csv
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from html.parser import HTMLParser
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import torch

import lensdash as ld
from lensdash import report as report_module
from lensdash.analysis import analyze, confusion_frame, gradient_table, per_class_table
from lensdash.cli import main
from lensdash.metrics import MetricSums
from lensdash.report import REPORT_FILES
from lensdash.report_folder import MARKER, MARKER_FORMAT, read_marker

NAMES = ["ant", "bee", "cat"]
ROOT = Path(__file__).resolve().parents[1]


def write_predictions(path: Path, names=NAMES, rows: int = 60, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, len(names), generator=gen) * 2
    labels = torch.randint(0, len(names), (rows,), generator=gen)
    frame = pd.DataFrame(logits.numpy(), columns=list(names))
    frame["label"] = labels.numpy()
    frame.to_csv(path, index=False)
    return logits.float(), labels


@pytest.fixture
def inputs(tmp_path):
    predictions, lens = tmp_path / "inputs" / "p.csv", tmp_path / "inputs" / "lens.json"
    predictions.parent.mkdir()
    write_predictions(predictions)
    ld.save_lens(ld.merge_lens(NAMES, [["ant", "bee"]]), lens)
    return predictions, lens


def run(predictions: Path, lens: Path, out: str | Path, *extra: str) -> int:
    return main(["report", str(predictions), "--lens", str(lens), "--out", str(out), "--quiet", *extra])


def snapshot(root: Path) -> dict[str, object]:
    """Every path under root (links not followed), with its kind, bytes and mode."""
    found: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            info = path.lstat()
            if path.is_symlink():
                found[str(path)] = ("link", os.readlink(path))
            elif path.is_dir():
                found[str(path)] = ("dir", info.st_mode)
            else:
                found[str(path)] = ("file", path.read_bytes(), info.st_mode)
    return found


def assert_complete_report(folder: Path) -> dict:
    marker = read_marker(folder)
    assert marker is not None, sorted(os.listdir(folder)) if folder.is_dir() else folder
    assert sorted(os.listdir(folder)) == sorted([*REPORT_FILES, MARKER])
    assert (folder / "report.html").read_text(encoding="utf-8").endswith("</html>")
    return json.loads((folder / "summary.json").read_text())


# --- 1. nothing that is not provably a report is replaced, and the refusal comes before any data is read ---------


def _folder_with_user_files(base: Path, predictions: Path) -> Path:
    out = base / "mine"
    (out / "sub").mkdir(parents=True)
    (out / "notes.txt").write_text("my notes")
    (out / "sub" / "deep.txt").write_text("deeper")
    (out / "summary.json").write_text("{}")  # what once made any folder count as a report
    return out


def _old_report_without_marker(base: Path, predictions: Path) -> Path:
    out = base / "old-report"
    out.mkdir()
    for name in REPORT_FILES:
        (out / name).write_text("made by an older lensdash")
    return out


def _marked_report_plus_a_user_file(base: Path, predictions: Path) -> Path:
    out = base / "marked"
    out.mkdir()
    files = list(REPORT_FILES)
    (out / MARKER).write_text(json.dumps({"format": MARKER_FORMAT, "id": "0" * 32, "pid": 1, "files": files}))
    for name in files:
        (out / name).write_text("x")
    (out / "analysis.ipynb").write_text("the user's notebook")
    return out


def _marker_naming_a_folder(base: Path, predictions: Path) -> Path:
    out = base / "forged"
    (out / "data").mkdir(parents=True)
    (out / "data" / "precious.bin").write_bytes(b"\0" * 10)
    (out / MARKER).write_text(json.dumps({"format": MARKER_FORMAT, "id": "a" * 32, "pid": 1, "files": ["data"]}))
    return out


def _holds_the_input(base: Path, predictions: Path) -> Path:
    return predictions.parent  # p.csv, lens.json


def _a_file(base: Path, predictions: Path) -> Path:
    return predictions


def _inside_a_file(base: Path, predictions: Path) -> Path:
    return predictions / "report"


def _link_to_empty_folder(base: Path, predictions: Path) -> Path:
    (base / "empty").mkdir()
    (base / "link").symlink_to(base / "empty")
    return base / "link"


def _dangling_link(base: Path, predictions: Path) -> Path:
    (base / "dangling").symlink_to(base / "nowhere")
    return base / "dangling"


REFUSED = {
    "folder with user files": (
        _folder_with_user_files,
        "a folder with other content ('notes.txt', 'sub', 'summary.json')",
    ),
    "older report without a marker": (_old_report_without_marker, "delete an older report yourself"),
    "marked report plus a user file": (_marked_report_plus_a_user_file, "'analysis.ipynb'"),
    "marker listing a folder": (
        _marker_naming_a_folder,
        "a folder with other content ('.lensdash-report.json', 'data')",
    ),
    "folder holding an input": (_holds_the_input, "found the input 'p.csv' or a folder that holds it"),
    "the input file itself": (_a_file, "found the input 'p.csv'"),
    "path inside a file": (_inside_a_file, "found a path inside the file"),
    "symlink to an empty folder": (_link_to_empty_folder, "found a symbolic link"),
    "dangling symlink": (_dangling_link, "found a symbolic link"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_out_that_is_not_a_report_is_refused_before_reading_and_survives(tmp_path, inputs, capsys, case):
    predictions, lens = inputs
    make, message = REFUSED[case]
    out = make(tmp_path, predictions)
    before = snapshot(tmp_path)
    with mock.patch("lensdash.cli.report", side_effect=AssertionError("data was read")):
        assert run(predictions, lens, out) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("out", [".", "..", "{cwd}", "{cwd}/sub/.."])
def test_the_working_directory_and_its_ancestors_are_refused(tmp_path, inputs, capsys, monkeypatch, out):
    predictions, lens = inputs
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    (work / "summary.json").write_text("{}")
    (work / "keep.txt").write_text("keep")
    monkeypatch.chdir(work)
    before = snapshot(tmp_path)
    with mock.patch("lensdash.cli.report", side_effect=AssertionError("data was read")):
        assert run(predictions, lens, out.format(cwd=work)) == 2
    err = capsys.readouterr().err
    assert "the working directory" in err and err.count("\n") == 1
    assert snapshot(tmp_path) == before


def test_an_empty_working_directory_is_refused_too(tmp_path, inputs, capsys, monkeypatch):
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path / "empty")
    assert run(*inputs, ".") == 2
    assert "found the working directory" in capsys.readouterr().err and (tmp_path / "empty").is_dir()


@pytest.mark.parametrize("where", ["too long", "unmakeable"])
def test_a_path_that_cannot_be_created_is_refused_before_reading(tmp_path, inputs, capsys, where):
    if where == "too long":
        out, found = tmp_path / "new" / ("x" * 300), "File name too long"
    else:
        if not Path("/proc/self").is_dir():
            pytest.skip("needs /proc")
        out, found = Path("/proc/self/lensdash-report"), "a path that cannot be created"
    with mock.patch("lensdash.cli.report", side_effect=AssertionError("data was read")):
        assert run(*inputs, out) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and found in err and err.count("\n") == 1
    assert not (tmp_path / "new").exists()  # the parent it made on the way is removed again


def test_a_previous_report_and_an_empty_folder_are_replaced(tmp_path, inputs):
    predictions, lens = inputs
    out = tmp_path / "empty"
    out.mkdir()
    assert run(predictions, lens, out) == 0
    first = json.loads((out / MARKER).read_text())
    assert_complete_report(out)
    assert run(predictions, lens, out, "--family", "prediction") == 0
    second = json.loads((out / MARKER).read_text())
    assert assert_complete_report(out)["family"] == "prediction" and second["id"] != first["id"]
    assert sorted(os.listdir(tmp_path)) == ["empty", "inputs"]  # nothing left beside it


def test_a_failed_run_leaves_no_folder_and_an_old_report_as_it_was(tmp_path, inputs, capsys):
    predictions, lens = inputs
    broken = tmp_path / "inputs" / "broken.csv"
    broken.write_text(predictions.read_text().replace("\n", "\noops,1,2,0\n", 1))
    assert run(broken, lens, tmp_path / "a" / "b" / "new") == 2
    assert "expected a number, found 'oops'" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["inputs"]
    out = tmp_path / "old"
    assert run(predictions, lens, out) == 0
    before = snapshot(out)
    assert run(broken, lens, out) == 2
    assert snapshot(out) == before and sorted(os.listdir(tmp_path)) == ["inputs", "old"]


def test_leftovers_of_killed_runs_do_not_block_and_only_provable_ones_are_removed(tmp_path, inputs):
    predictions, lens = inputs
    out = tmp_path / "report"
    assert run(predictions, lens, out) == 0
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)

    def leftover(kind: str, ident: str, pid: int, files: list[str], extra: str | None = None) -> Path:
        folder = tmp_path / f".report.lensdash-{kind}-{ident}"
        folder.mkdir()
        marker = {"format": MARKER_FORMAT, "id": ident, "pid": pid, "files": list(REPORT_FILES)}
        (folder / MARKER).write_text(json.dumps(marker))
        for name in files:
            (folder / name).write_text("half")
        if extra:
            (folder / extra).write_text("the user's")
        return folder

    killed_new = leftover("new", "1" * 32, dead_pid, ["per_class.csv"])
    killed_old = leftover("old", "2" * 32, dead_pid, list(REPORT_FILES))
    running = leftover("new", "3" * 32, os.getppid(), [])  # a live process: maybe a run going on now
    with_user_file = leftover("new", "4" * 32, dead_pid, [], extra="mine.txt")
    bad_marker = tmp_path / f".report.lensdash-new-{'5' * 32}"
    bad_marker.mkdir()
    (bad_marker / MARKER).write_text(json.dumps({"format": "other", "id": "5" * 32, "pid": dead_pid, "files": []}))
    empty = tmp_path / f".report.lensdash-new-{'7' * 32}"
    empty.mkdir()
    other_target = tmp_path / f".other.lensdash-new-{'8' * 32}"
    other_target.mkdir()
    assert run(predictions, lens, out) == 0
    assert_complete_report(out)
    assert not killed_new.exists() and not killed_old.exists() and not empty.exists()
    assert running.exists() and (with_user_file / "mine.txt").read_text() == "the user's"
    assert bad_marker.exists() and other_target.exists()


# --- 2. crash-safe replacement: a process killed at every step leaves the complete old or new report -----------

KILL_SCRIPT = textwrap.dedent(
    r"""
    import json, os, pathlib, shutil, sys
    import torch
    torch.set_num_threads(1)
    import lensdash as ld
    import lensdash.report as report_module
    import lensdash._report_html as report_html
    import lensdash.report_folder as folder_module
    from lensdash.analysis import ClassSums, analyze
    from lensdash.metrics import MetricSums

    root = pathlib.Path(sys.argv[1])
    names = ("ant", "bee", "cat")
    gen = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(40, 3, generator=gen), torch.randint(0, 3, (40,), generator=gen)


    class Figure:  # the figures' contents are tested elsewhere; here only the steps of writing count
        def to_html(self, **kwargs):
            return "<div>figure</div>"


    class Figures:  # the ordering helpers are the real ones; the heatmaps only stand in
        gradient_heatmap = confusion_heatmap = staticmethod(lambda *args, **kwargs: Figure())
        class_order, lens_groups, pick_classes, rollup = (
            staticmethod(getattr(report_module.figures, name))
            for name in ("class_order", "lens_groups", "pick_classes", "rollup")
        )


    class FiguresEval:
        reliability_diagram = staticmethod(lambda *args, **kwargs: Figure())


    report_module.figures = Figures  # the class order of the ordered views
    report_html.figures, report_html.figures_eval = Figures, FiguresEval  # report.html is drawn there


    def make(family):
        lens = ld.merge_lens(list(names), [["ant", "bee"]])
        sums = ClassSums.of(analyze(logits, labels, lens, family=family, class_names_=names))
        metrics = MetricSums.of(logits, labels, lens)
        return report_module.Report(sums, metrics, names, lens, family, "logits", "p.csv")


    old, new = make("target"), make("prediction")
    (root / "warm-up").mkdir()
    old.write_files(root / "warm-up")  # pandas' and pyarrow's first calls, once here rather than in every child
    shutil.rmtree(root / "warm-up")


    def write(report, target, kill_at=None, mode="exchange"):
        pid = os.fork()
        if pid:
            return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        steps = [0]

        def counted(owner, name):
            original = getattr(owner, name)

            def step(*args, **kwargs):
                steps[0] += 1
                if steps[0] == kill_at:
                    os._exit(137)  # as SIGKILL: no cleanup runs
                return original(*args, **kwargs)

            setattr(owner, name, step)

        if mode == "aside":
            folder_module.exchange = lambda first, second: False
        for owner, name in [(os, "mkdir"), (os, "rename"), (os, "unlink"), (os, "rmdir"), (folder_module, "exchange"),
                            (pathlib.Path, "write_text"), (pathlib.Path, "write_bytes"),
                            (report_module, "_write_csv")]:
            counted(owner, name)
        folder = folder_module.OutputFolder.prepare(target)
        folder.commit(report)
        os._exit(0)


    def state(folder):
        if not folder.exists():
            return None
        marker = folder_module.read_marker(folder)
        complete = (
            marker is not None
            and sorted(os.listdir(folder)) == sorted(marker["files"] + [folder_module.MARKER])
            and (folder / "report.html").read_text().endswith("</html>")
        )
        table = (folder / "per_class.csv").read_bytes() if complete else None
        return {"complete": complete, "which": {reference_old: "old", reference_new: "new"}.get(table)}


    assert write(old, root / "reference-old") == 0 and write(new, root / "reference-new") == 0
    reference_old = (root / "reference-old" / "per_class.csv").read_bytes()
    reference_new = (root / "reference-new" / "per_class.csv").read_bytes()
    for mode in ("exchange", "aside"):
        for kill_at in range(1, 200):
            case = root / f"{mode}{kill_at}"
            shutil.copytree(root / "reference-old", case / "report")
            code = write(new, case / "report", kill_at, mode)
            beside = {n.split(".lensdash-")[1][:3]: state(case / n) for n in os.listdir(case) if n != "report"}
            line = {"mode": mode, "kill_at": kill_at, "code": code, "target": state(case / "report"), "beside": beside}
            # The next run must not be blocked, and must remove what the killed one left.
            line["next"] = write(new, case / "report", mode=mode)
            line["after"] = sorted(os.listdir(case))
            line["after_target"] = state(case / "report")
            print(json.dumps(line), flush=True)
            if code != 137:
                break
    """
)


def test_a_run_killed_at_any_step_leaves_the_complete_old_or_new_report(tmp_path):
    """Killed before each step (the marker, every file, the swap, every removal), on the atomic exchange and on the
    rename-aside fallback: the target holds the complete old or new report, and the next run is not blocked."""
    if not hasattr(os, "fork"):
        pytest.skip("needs fork")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(tmp_path)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for mode in ("exchange", "aside"):
        lines = [line for line in map(json.loads, done.stdout.splitlines()) if line["mode"] == mode]
        kills, last = lines[:-1], lines[-1]
        assert last["code"] == 0 and last["target"] == {"complete": True, "which": "new"}  # past the last step
        assert len(kills) >= 20 and all(line["code"] == 137 for line in kills)
        for line in lines:
            if line["target"] is None:
                # Only on the fallback, and only between its two renames: the complete old report waits beside it.
                assert mode == "aside" and line["beside"]["old"] == {"complete": True, "which": "old"}, line
            else:
                assert line["target"]["complete"] and line["target"]["which"] in ("old", "new"), line
            assert set(line["beside"]) <= {"new", "old"}, line  # nothing but provably ours is left beside it
            assert line["next"] == 0 and line["after"] == ["report"], line  # not blocked, and the leftovers are gone
            assert line["after_target"] == {"complete": True, "which": "new"}, line
        order = [line["target"]["which"] for line in lines if line["target"]]
        assert order[0] == "old" and order[-1] == "new" and order == sorted(order, key=["old", "new"].index)
        if mode == "aside":
            assert any(line["target"] is None for line in lines)  # the fallback's gap was really hit


# --- 3. SIGINT and SIGTERM -------------------------------------------------------------------------------------

SLOW_SCRIPT = textwrap.dedent(
    r"""
    import sys, time
    from lensdash.io import _csv_parse as files
    import lensdash.report as report_module
    files.PART_BYTES = 2048  # many chunks
    original, calls = report_module.analyze, [0]

    def slow(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 2:
            print("reading", file=sys.stderr, flush=True)
        time.sleep(0.05)
        return original(*args, **kwargs)

    report_module.analyze = slow
    from lensdash.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.mark.parametrize(("signum", "code", "existing"), [(signal.SIGINT, 130, False), (signal.SIGTERM, 143, True)])
def test_a_signal_mid_stream_ends_with_one_line_and_leaves_no_partial_folder(tmp_path, signum, code, existing):
    predictions, lens = tmp_path / "p.csv", tmp_path / "lens.json"
    write_predictions(predictions, rows=3000)
    ld.save_lens(ld.merge_lens(NAMES, [["ant", "bee"]]), lens)
    out = tmp_path / "reports" / "run" if not existing else tmp_path / "run"
    if existing:
        assert run(predictions, lens, out) == 0
    before = snapshot(tmp_path)
    args = ["report", str(predictions), "--lens", str(lens), "--out", str(out), "--quiet"]
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_SCRIPT, *args], stderr=subprocess.PIPE, text=True, cwd=ROOT, env=os.environ
    )
    assert proc.stderr.readline() == "reading\n"
    proc.send_signal(signum)
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == code
    assert err == f"stopped by {signal.Signals(signum).name}: no report was written; --out is as it was\n"
    assert snapshot(tmp_path) == before  # no temporary folder, no new empty folder; an old report as it was


def test_a_signal_while_the_report_is_written_leaves_the_old_report(tmp_path, inputs, capsys):
    predictions, lens = inputs
    out = tmp_path / "report"
    assert run(predictions, lens, out) == 0
    before = snapshot(tmp_path)
    original, calls = report_module._write_csv, []

    def interrupted(frame, path):
        calls.append(path)
        if len(calls) == 3:
            signal.raise_signal(signal.SIGINT)
        original(frame, path)

    with mock.patch.object(report_module, "_write_csv", interrupted):
        assert run(predictions, lens, out, "--family", "prediction") == 130
    assert "stopped by SIGINT: no report was written" in capsys.readouterr().err and len(calls) == 3
    assert snapshot(tmp_path) == before
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # main() put the handlers back


# --- 4. folders follow the umask ---------------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_folders_and_files_are_made_with_the_users_umask(tmp_path, inputs, umask):
    previous = os.umask(umask)
    try:
        assert run(*inputs, tmp_path / "a" / "b" / "report") == 0
    finally:
        os.umask(previous)
    for folder in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "report"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask, folder
    for path in (tmp_path / "a" / "b" / "report").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


# --- 5. report.html holds no markup from the data -------------------------------------------------------------


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, tuple[str, ...]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, tuple(sorted(name for name, _ in attrs))))

    def handle_data(self, data):
        self.text.append(data)


def parsed(path: Path) -> Tags:
    parser = Tags()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser


HOSTILE = [
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(2)">',
    "<a href='http://evil.example'>c</a>",
    "</script><svg onload=alert(3)>",
]


def test_report_html_escapes_file_and_class_names(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    hostile = inputs / "<img src=x onerror=alert(1)>.csv"
    plain = inputs / "plain.csv"
    write_predictions(hostile, names=HOSTILE)
    write_predictions(plain, names=["a", "b", "c", "d"])
    ld.save_lens(ld.identity_lens(4), inputs / "lens.json")
    assert (
        main(["report", str(hostile), "--lens", str(inputs / "lens.json"), "--out", str(tmp_path / "h"), "--quiet"])
        == 0
    )
    assert (
        main(["report", str(plain), "--lens", str(inputs / "lens.json"), "--out", str(tmp_path / "p"), "--quiet"]) == 0
    )
    got, baseline = parsed(tmp_path / "h" / "report.html"), parsed(tmp_path / "p" / "report.html")
    assert sorted(got.tags) == sorted(baseline.tags)  # the data added no element and no attribute
    assert not [tag for tag in got.tags if tag[0] in ("img", "svg", "a") or any(a.startswith("on") for a in tag[1])]
    assert "lensdash report: <img src=x onerror=alert(1)>.csv" in "".join(got.text)  # shown as text
    html = (tmp_path / "h" / "report.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;\\u002fscript&gt;" in html  # plotly's labels get entities it shows as text


# --- 6. every CSV the report writes is safe to open in a spreadsheet ------------------------------------------

FORMULAS = ['=HYPERLINK("http://x")', "+cmd", "-x", "@a", "plain"]


def test_report_csvs_do_not_start_cells_with_a_formula_and_keep_numbers(tmp_path):
    predictions = tmp_path / "p.csv"
    logits, labels = write_predictions(predictions, names=FORMULAS, rows=200)
    ld.save_lens(ld.merge_lens(FORMULAS, [["+cmd", "-x"]]), tmp_path / "lens.json")
    out = tmp_path / "report"
    assert run(predictions, tmp_path / "lens.json", out) == 0
    safe = ["'" + name if name[0] in "=+-@" else name for name in FORMULAS]
    for name in (
        "per_class.csv",
        "gradients_unlensed.csv",
        "gradients_lensed.csv",
        "gradients_difference.csv",
        "confusion.csv",
        "lens.csv",
    ):
        with open(out / name, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        for row in rows:
            for cell in row:
                try:
                    float(cell)
                    continue  # numbers, negative ones included, are left as numbers
                except ValueError:
                    assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (name, cell)
        names_in_file = rows[0][1:] if name != "per_class.csv" else [row[0] for row in rows[1:]]
        assert names_in_file == safe, name
    analysis = analyze(logits, labels, ld.merge_lens(FORMULAS, [["+cmd", "-x"]]), class_names_=FORMULAS)
    want = per_class_table(analysis)
    got = pd.read_csv(out / "per_class.csv")
    assert list(got["class"]) == safe
    pd.testing.assert_frame_equal(got[want.columns].drop(columns="class"), want.drop(columns="class"), rtol=1e-5)
    scores = MetricSums.of(logits, labels, ld.merge_lens(FORMULAS, [["+cmd", "-x"]])).per_class_table(FORMULAS)
    assert list(got.columns) == [*want.columns, *scores.columns[1:]]
    pd.testing.assert_frame_equal(got[scores.columns[1:]], scores.drop(columns="class"), rtol=1e-5)
    grads = pd.read_csv(out / "gradients_lensed.csv", index_col=0)
    assert (grads.to_numpy() < 0).any()  # negative numbers stay numbers
    np.testing.assert_allclose(grads.to_numpy(), gradient_table(analysis.grad_lensed, FORMULAS).to_numpy(), atol=1e-6)
    confusion = pd.read_csv(out / "confusion.csv", index_col=0)
    assert (confusion.to_numpy() == confusion_frame(analysis.confusion, FORMULAS).to_numpy()).all()


# --- 8. whatever a user gets wrong ends with one line, never a traceback --------------------------------------

BAD_INPUTS = textwrap.dedent(
    r"""
    import contextlib, io, json, sys, traceback
    from lensdash.cli import main
    for argv in json.loads(sys.argv[1]):
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                code = main(argv)
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
        except BaseException:
            code = "raised"
            err.write(traceback.format_exc())
        print(json.dumps({"argv": argv, "code": code, "err": err.getvalue()}), flush=True)
    """
)


def test_bad_inputs_end_with_one_line_and_exit_code_2(tmp_path, inputs):
    predictions, lens = inputs
    (tmp_path / "a_dir").mkdir()
    (tmp_path / "garbage.npy").write_bytes(b"\x93NUMPY\x01\x00garbage" * 10)
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "link").symlink_to(tmp_path / "a_dir")
    report = ["report", "--quiet", "--out"]
    out = str(tmp_path / "out")
    cases = [
        [*report, out, str(tmp_path / "a_dir"), "--lens", str(lens)],  # a directory as predictions
        [*report, out, str(predictions), "--lens", str(tmp_path / "a_dir")],  # a directory as lens
        [*report, out, str(predictions), "--lens", str(tmp_path / "missing.json")],
        [*report, out, str(predictions), "--lens", str(lens), "--labels", str(tmp_path / "a_dir")],
        [*report, out, str(tmp_path / "garbage.npy"), "--lens", str(lens), "--labels", str(predictions)],
        [*report, out, str(tmp_path / "empty.csv"), "--lens", str(lens)],
        [*report, out, str(predictions), "--lens", str(lens), "--chunk-rows", "0"],
        [*report, str(tmp_path / "link"), str(predictions), "--lens", str(lens)],
        [*report, str(predictions / "x"), str(predictions), "--lens", str(lens)],
        [*report, str(tmp_path), str(predictions), "--lens", str(lens)],
    ]
    done = subprocess.run(
        [sys.executable, "-c", BAD_INPUTS, json.dumps(cases)], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(results) == len(cases)
    for result in results:
        assert result["code"] == 2 and "Traceback" not in result["err"], result
        assert result["err"].startswith("error: ") and result["err"].count("\n") == 1, result
    assert not (tmp_path / "out").exists()
    # And through the real entry point.
    proc = subprocess.run(
        [sys.executable, "-m", "lensdash", *cases[0]], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


def test_library_write_refuses_and_replaces_by_the_same_rules(tmp_path, inputs):
    predictions, lens = inputs
    result = report_module.report(predictions, lens)
    mine = _folder_with_user_files(tmp_path, predictions)
    before = snapshot(mine)
    with pytest.raises(ld.InputError, match="a folder with other content"):
        result.write(mine)
    assert snapshot(mine) == before
    paths = result.write(tmp_path / "lib" / "report")
    assert_complete_report(tmp_path / "lib" / "report") and all(path.exists() for path in paths)
    result.write(tmp_path / "lib" / "report")
    assert sorted(os.listdir(tmp_path / "lib")) == ["report"]


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        (OSError(28, "No space left on device", "per_class.csv"), "per_class.csv: expected files that can be read"),
        (MemoryError(), "expected data that fits in memory, found not enough memory"),
    ],
)
def test_a_failure_while_writing_is_one_line_and_leaves_the_old_report(tmp_path, inputs, capsys, failure, message):
    predictions, lens = inputs
    out = tmp_path / "report"
    assert run(predictions, lens, out) == 0
    before = snapshot(tmp_path)
    with mock.patch.object(report_module, "_write_csv", side_effect=failure):
        assert run(predictions, lens, out, "--family", "prediction") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert snapshot(tmp_path) == before
