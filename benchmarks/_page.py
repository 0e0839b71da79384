"""The app in Streamlit's test harness with a generated upload waiting: the set-up the page benchmarks share."""

from __future__ import annotations

import io
import os
import warnings
from typing import Any


def upload_bytes(rows: int, cols: int, fmt: str = "csv") -> bytes:
    """A generated ``rows × cols`` float32 logits upload with labels: a CSV (label column) or an ``.npz``."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    logits = rng.standard_normal((rows, cols)).astype("float32") * 3
    labels = rng.integers(0, cols, rows)
    names = [f"class {i}" for i in range(cols)]
    if fmt == "npz":
        out = io.BytesIO()
        np.savez(out, logits=logits, labels=labels, class_names=np.array(names))
        return out.getvalue()
    frame = pd.DataFrame(logits, columns=names)
    frame["label"] = labels
    return frame.to_csv(index=False).encode()


def page_with_upload(rows: int, cols: int, fmt: str = "csv", data: bytes | None = None) -> tuple[Any, Any]:
    """An ``AppTest`` of ``app.py`` whose uploader holds a ``rows × cols`` logits upload (not yet run with it).

    ``fmt`` is ``"csv"`` or ``"npz"`` (see :func:`upload_bytes`); ``data`` is that upload if already made.
    Returns ``(at, predictions)``: the page, and the same file read by :func:`lensdash.read_predictions`.
    """
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from lensdash import read_predictions

    warnings.filterwarnings("ignore")
    data = upload_bytes(rows, cols, fmt) if data is None else data
    print(f"# upload: {rows} x {cols} float32 logits + labels as {fmt}, {len(data) / 1e6:.0f} MB")
    preds = read_predictions(data)
    app_path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "app.py")  # the repo root
    st.cache_data.clear()
    at = AppTest.from_file(app_path, default_timeout=900)
    at.run()
    mime = "application/octet-stream" if fmt == "npz" else "text/csv"
    at.file_uploader(key=f"upload_predictions_{at.session_state['upload_version']}").set_value(
        (f"big.{fmt}", data, mime)
    )
    return at, preds
