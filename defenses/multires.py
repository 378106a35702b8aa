"""The multi-resolution input stack of "Ensemble everything everywhere" (Fort & Lakshminarayanan, 2024).

Each image is shown to the backbone at several resolutions at once: for every resolution r,
a randomly perturbed copy is taken down to r x r and back up, and the copies are stacked
along the channels (3 x len(resolutions) channels). The perturbations are drawn afresh at
every call, at test time too: a model behind this stack is a randomised defense and must be
attacked with EOT.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MultiResolutionStack(nn.Module):
    r"""Images [B, 3, H, W] in [0, 1] -> stacked views [B, 3R, H, W] in [0, 1].

    For each resolution r (in order) and each image, independently::

        x_r = contrast(x, c)                         c ~ U(contrast)  (blend with the image's mean grey level)
        x_r = roll(x_r, (dy, dx))                    dy, dx ~ U{-jitter..jitter} (wrap-around shift)
        x_r = a x_r + (1 - a) grey(x_r)              a ~ U(colour)    (colour-grey mixing)
        x_r = up(down(x_r, r) + noise, H) + noise    noise ~ U[0, noise) per pixel and channel, bicubic resizes
        x_r = clamp(x_r, 0, 1)

    Defaults follow the official notebook (stanislavfort/ensemble-everything-everywhere):
    resolutions 32/16/8/4, jitter 3, colour amount in [0.5, 1], uniform noise of amplitude
    0.2 (not zero-mean: it also brightens by 0.1 on average). Its contrast range is written
    as [0.7, 1.5] but a variable is overwritten so that the factor actually used is the
    colour amount; ``contrast`` defaults to the written [0.7, 1.5].

    Randomness comes from the module's own generator, seeded by ``seed`` and re-seeded by
    :meth:`reseed`; the global RNG is never used.
    """

    def __init__(self, resolutions=(32, 16, 8, 4), noise: float = 0.2, jitter: int = 3,
                 contrast=(0.7, 1.5), colour=(0.5, 1.0), seed: int = 0):
        super().__init__()
        if not resolutions or any(not isinstance(r, int) or r < 1 for r in resolutions):
            raise ValueError(f"resolutions must be positive integers, got {resolutions!r}")
        if noise < 0 or jitter < 0 or not isinstance(jitter, int):
            raise ValueError("noise must be >= 0 and jitter an integer >= 0")
        for name, (low, high) in (("contrast", contrast), ("colour", colour)):
            if not 0 <= low <= high:
                raise ValueError(f"{name} must be a range (low, high) with 0 <= low <= high, got {(low, high)!r}")
        self.resolutions, self.noise, self.jitter = tuple(resolutions), float(noise), jitter
        self.contrast, self.colour = tuple(map(float, contrast)), tuple(map(float, colour))
        self.seed = int(seed)
        self.reseed(seed)

    def config(self) -> dict:
        """The constructor's arguments (``seed``: the first one), as JSON-able values."""
        return {"resolutions": list(self.resolutions), "noise": self.noise, "jitter": self.jitter,
                "contrast": list(self.contrast), "colour": list(self.colour), "seed": self.seed}

    def reseed(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(int(seed))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images shaped [B, 3, H, W], got {tuple(x.shape)}")
        return torch.cat([self.view(x, r) for r in self.resolutions], dim=1)

    def view(self, x: torch.Tensor, resolution: int) -> torch.Tensor:
        """One randomly perturbed copy of ``x`` seen at ``resolution``, back at full size."""
        n, _, height, width = x.shape
        contrast = self._uniform(n, *self.contrast, like=x)
        grey_level = x.mean(dim=(1, 2, 3), keepdim=True)
        view = grey_level + contrast * (x - grey_level)
        view = self._roll(view)
        amount = self._uniform(n, *self.colour, like=x)
        view = amount * view + (1 - amount) * view.mean(dim=1, keepdim=True)
        small = F.interpolate(view, size=(resolution, resolution), mode="bicubic")
        small = small + self._noise(small)
        view = F.interpolate(small, size=(height, width), mode="bicubic")
        return torch.clamp(view + self._noise(view), 0, 1)

    def _uniform(self, n: int, low: float, high: float, like: torch.Tensor) -> torch.Tensor:
        values = low + (high - low) * torch.rand(n, generator=self.generator)
        return values.to(like.device, like.dtype).view(n, 1, 1, 1)

    def _noise(self, like: torch.Tensor) -> torch.Tensor:
        return (self.noise * torch.rand(like.shape, generator=self.generator)).to(like.device, like.dtype)

    def _roll(self, x: torch.Tensor) -> torch.Tensor:
        """Each image shifted (with wrap-around, as ``torch.roll``) by its own random (dy, dx)."""
        if self.jitter == 0:
            return x
        n, channels, height, width = x.shape
        dy, dx = torch.randint(-self.jitter, self.jitter + 1, (2, n), generator=self.generator).to(x.device)
        rows = (torch.arange(height, device=x.device)[None, :] - dy[:, None]) % height  # [n, H]
        cols = (torch.arange(width, device=x.device)[None, :] - dx[:, None]) % width    # [n, W]
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        channel = torch.arange(channels, device=x.device)[None, :, None, None]
        return x[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]
