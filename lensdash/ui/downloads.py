"""Every CSV the app offers for download, made safe for spreadsheets (names are data, never formulas)."""

from __future__ import annotations

import csv
import io

import pandas as pd

from lensdash.lens import Lens
from lensdash.sanitize import spreadsheet_cell, spreadsheet_safe


def frame_csv(frame: pd.DataFrame, **to_csv: object) -> bytes:
    """``frame`` as CSV bytes, text cells and column names passed through :func:`spreadsheet_safe` (numbers unchanged).

    >>> frame_csv(pd.DataFrame({"class": ["=1+1"], "loss": [-0.5]})).decode()
    "class,loss\\n'=1+1,-0.5\\n"
    """
    # Categorical columns (class names in the analysis tables) are text too: spreadsheet_safe maps object columns only.
    as_text = {c: object for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)}
    return spreadsheet_safe(frame.astype(as_text)).to_csv(index=False, **to_csv).encode()


def lens_csv(lens: Lens) -> bytes:
    """The lens as CSV with class names as header and first column (what ``read_lens`` reads back).

    >>> print(lens_csv(Lens([[1, 0], [0, 1]], ["a", "+b"])).decode())
    class,a,'+b
    a,1,0
    '+b,0,1
    <BLANKLINE>
    """
    names = list(lens.classes)
    frame = pd.DataFrame(lens.matrix.detach().cpu().double().numpy(), columns=names)
    frame.insert(0, "class", names)
    return frame_csv(frame, float_format="%.10g")


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def csv_file(data: bytes) -> bytes:
    """A CSV file's bytes with every text cell :func:`spreadsheet_cell`-safe; numbers (and safe files) unchanged.

    >>> csv_file(b"a,b\\n-1.5,=cmd\\n")
    b"a,b\\n-1.5,'=cmd\\n"
    """
    text = data.decode("utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    safe = [[cell if _is_number(cell) else spreadsheet_cell(cell) for cell in row] for row in rows]
    if safe == rows:
        return data
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(safe)
    return out.getvalue().encode()
