"""Loss terms beyond Eq. (10)'s cross-entropy and codebook losses."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def jensen_shannon(logits: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """AugMix's consistency loss: the mean KL divergence of each view's prediction from their mixture."""
    probs = [torch.softmax(v.float(), dim=1) for v in logits]
    log_mixture = torch.clamp(torch.stack(probs).mean(0), 1e-7, 1).log()
    return sum(F.kl_div(log_mixture, p, reduction="batchmean") for p in probs) / len(probs)
