"""What a hosted server holds per user: the page's set-up computations stay within a stated multiple of the data.

On a hosted app several users read files at once, so a transient N×K float64 copy per user adds up (issue 12's load
test); these tests pin the set-up's peak (measured in a child process, as the readers' memory rule is).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch

import lensdash.analysis as analysis
from lensdash.analysis import soft_confusion

ROOT = str(Path(__file__).resolve().parents[1])


def test_soft_confusion_equals_a_plain_loop_in_any_block_size(monkeypatch):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(997, 7, generator=gen) * 3
    labels = torch.randint(0, 6, (997,), generator=gen)  # class 6 absent: its row is 0
    probs = torch.softmax(logits.double(), dim=1).numpy()
    sums, counts = np.zeros((7, 7)), np.zeros(7)
    for n in range(len(labels)):
        sums[labels[n]] += probs[n]
        counts[labels[n]] += 1
    expected = torch.from_numpy(sums / np.maximum(counts, 1)[:, None])
    for cells in (7, 70, 7 * 996, 1 << 20):  # one row, ten rows, a remainder of one row, one block
        monkeypatch.setattr(analysis, "_SOFT_CONFUSION_CELLS", cells)
        got = soft_confusion(logits, labels, 7)
        torch.testing.assert_close(got, expected)
    assert got[6].abs().sum() == 0 and torch.allclose(got[:6].sum(dim=1), torch.ones(6, dtype=torch.float64))


_SETUP_CHILD = textwrap.dedent(
    """
    import torch
    from lensdash.analysis import baseline, soft_confusion
    def mb(key):
        return int([l for l in open("/proc/self/status") if l.startswith(key)][0].split()[1]) / 1024
    n, k = 200_000, 100
    logits = torch.randn(n, k)
    labels = torch.randint(0, k, (n,))
    baseline(logits[:10], labels[:10]); soft_confusion(logits[:10], labels[:10], k)  # warm up lazy set-up
    base = mb("VmRSS")
    open("/proc/self/clear_refs", "w").write("5")  # reset the high-water mark to now
    kept = baseline(logits, labels), soft_confusion(logits, labels, k)
    print(mb("VmHWM") - base, logits.numel() * 4 / 2**20)
    """
)


def test_the_page_set_up_peaks_under_twice_the_float32_logits():
    """baseline + soft_confusion (what the app computes once per upload): peak < 2 × the logits + 20 MB.

    The baseline needs one N×K float32 buffer (the softmax, reused for the gradient); a float64 softmax of the whole
    array, as soft_confusion used to make, would be 4× more on its own.
    """
    done = subprocess.run(
        [sys.executable, "-c", _SETUP_CHILD],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, PYTHONPATH=ROOT),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    peak, decoded = map(float, done.stdout.split())
    assert peak < 2 * decoded + 20, (peak, decoded)
