"""The app in Streamlit's test harness with a generated upload waiting: the set-up the page benchmarks share."""

from __future__ import annotations

import os
import warnings
from typing import Any


def page_with_upload(rows: int, cols: int) -> tuple[Any, Any]:
    """An ``AppTest`` of ``app.py`` whose uploader holds a ``rows × cols`` logits CSV (not yet run with it).

    Returns ``(at, predictions)``: the page, and the same file read by :func:`lensdash.read_predictions`.
    """
    import numpy as np
    import pandas as pd
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from lensdash import read_predictions

    warnings.filterwarnings("ignore")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        rng.standard_normal((rows, cols)).astype("float32") * 3, columns=[f"class {i}" for i in range(cols)]
    )
    frame["label"] = rng.integers(0, cols, rows)
    data = frame.to_csv(index=False).encode()
    print(f"# upload: {rows} x {cols} logits + label column, {len(data) / 1e6:.0f} MB")
    preds = read_predictions(data)
    app_path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "app.py")  # the repo root
    st.cache_data.clear()
    at = AppTest.from_file(app_path, default_timeout=600)
    at.run()
    at.file_uploader(key=f"upload_predictions_{at.session_state['upload_version']}").set_value(
        ("big.csv", data, "text/csv")
    )
    return at, preds
