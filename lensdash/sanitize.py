"""Names from files are data, never markup: one place that makes them safe to show or export.

Three sinks take text that came from a user's file (class names, file names, metadata values):

* HTML (``report.html``): :func:`html_text` escapes ``& < > " '``.
* Streamlit markdown (widget labels, ``st.markdown``, captions, errors): :func:`markdown_text` backslash-escapes
  every ASCII punctuation character, which CommonMark always reads as the literal character, so a name can make no
  link, image, emphasis, HTML, LaTeX (``$``) or Streamlit directive (``:red[...]``, ``:material/...:``).
* Spreadsheets (every CSV lensdash writes): :func:`spreadsheet_cell` and :func:`spreadsheet_safe` follow the OWASP
  rule for CSV injection: a text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a
  leading single quote, so Excel, LibreOffice and Google Sheets show it as text instead of evaluating it. Numbers are
  left as numbers.
"""

from __future__ import annotations

import html
import string
from collections.abc import Hashable
from typing import Any

import pandas as pd

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_MARKDOWN_ESCAPES = {ord(c): "\\" + c for c in string.punctuation}
_MARKDOWN_ESCAPES.update({ord("\n"): " ", ord("\r"): " "})


def html_text(value: object) -> str:
    """``str(value)`` escaped for HTML text and attribute values.

    >>> html_text('<img src=x onerror="alert(1)">.csv')
    '&lt;img src=x onerror=&quot;alert(1)&quot;&gt;.csv'
    """
    return html.escape(str(value), quote=True)


def markdown_text(value: object) -> str:
    """``str(value)`` shown literally by Streamlit's markdown (labels, captions, ``st.markdown``, ``st.error``).

    Every ASCII punctuation character is backslash-escaped and line breaks become spaces, so the text stays one
    plain run of characters.

    >>> markdown_text("![x](http://evil.example/a.png)")
    '\\\\!\\\\[x\\\\]\\\\(http\\\\:\\\\/\\\\/evil\\\\.example\\\\/a\\\\.png\\\\)'
    >>> markdown_text("plain name 7")
    'plain name 7'
    """
    return str(value).translate(_MARKDOWN_ESCAPES)


def spreadsheet_cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows as written: text starting like a formula gets a leading ``'``.

    Only text is changed; numbers (including negative ones) and missing values are returned as they are.

    >>> spreadsheet_cell("=HYPERLINK(\\"http://x\\")")
    '\\'=HYPERLINK("http://x")'
    >>> spreadsheet_cell(-1.5), spreadsheet_cell("cat")
    (-1.5, 'cat')
    """
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _safe_label(value: Hashable) -> Hashable:
    return spreadsheet_cell(value) if isinstance(value, str) else value


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells, column names and index labels are :func:`spreadsheet_cell`-safe.

    Numeric columns are untouched (their values and dtypes stay as they are); only object/string columns are mapped.

    >>> frame = pd.DataFrame({"class": ["=1+1", "cat"], "loss": [-0.5, 0.25]}, index=["+a", "b"])
    >>> safe = spreadsheet_safe(frame)
    >>> safe["class"].tolist(), safe["loss"].tolist(), safe.index.tolist()
    (["'=1+1", 'cat'], [-0.5, 0.25], ["'+a", 'b'])
    """
    text = [
        i
        for i, dtype in enumerate(frame.dtypes)
        if pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype)
    ]
    # Only the text columns are copied and mapped: a 1,000-class float table passes through in microseconds.
    safe = frame.copy(deep=False)
    for i in text:
        safe.isetitem(i, frame.iloc[:, i].map(spreadsheet_cell))
    safe.columns = safe.columns.map(_safe_label)
    safe.index = safe.index.map(_safe_label)
    return safe
