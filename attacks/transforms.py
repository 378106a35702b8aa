"""Input transformations used inside attacks, drawn from the attack's own host (CPU) generator."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def input_diversity(x: torch.Tensor, generator: torch.Generator, resize_rate: float = 0.9,
                    prob: float = 0.5) -> torch.Tensor:
    """DI (Xie et al., CVPR 2019): with probability ``prob``, resize the batch to a random side
    in [floor(resize_rate * W), W) and zero-pad it back to W at a random offset; else ``x``.

    Differentiable in ``x``; one draw for the whole batch, as in the reference implementations.
    """
    size = x.shape[-1]
    low = int(size * resize_rate)
    if low >= size or torch.rand((), generator=generator).item() >= prob:
        return x
    side = int(torch.randint(low, size, (), generator=generator).item())
    resized = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
    pad = size - side
    top = int(torch.randint(0, pad + 1, (), generator=generator).item())
    left = int(torch.randint(0, pad + 1, (), generator=generator).item())
    return F.pad(resized, (left, pad - left, top, pad - top))
