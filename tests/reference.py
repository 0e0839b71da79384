"""Reference implementations the core is tested against (independent of lensdash)."""

import torch
import torch.nn.functional as F


def seed_lensed_cross_entropy(input, target, confusion_lens, size_average=True):
    """The seed notebook's function as written there (``size_average=False`` is now ``reduction='sum'``)."""
    logQ_batch = F.log_softmax(input, 1)
    Cw_batch = confusion_lens[target]
    loss = F.kl_div(logQ_batch, Cw_batch, reduction="sum")
    if size_average:
        return loss / input.shape[0]
    else:
        return loss


def seed_per_sample(input, target, lens):
    return F.kl_div(F.log_softmax(input, 1), lens[target], reduction="none").sum(1)


def forward_correction(input, target, lens):
    """Patrini et al.'s forward correction, straight from the definition (float64, small logits)."""
    q = torch.softmax(input, 1) @ lens
    return -torch.log(q[torch.arange(len(target)), target])


def random_lens(k, *, generator=None, zeros=True, dtype=torch.float64):
    """A random row-stochastic K×K matrix with some exact zeros (never an all-zero row)."""
    m = torch.rand(k, k, generator=generator, dtype=dtype)
    if zeros:
        m = m * (torch.rand(k, k, generator=generator, dtype=dtype) > 0.5)
        m.diagonal().add_(0.1)
    return m / m.sum(1, keepdim=True)
