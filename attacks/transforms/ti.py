"""TI: translation-invariant attack (Dong et al., "Evading Defenses to Transferable Adversarial
Examples by Translation-Invariant Attacks", CVPR 2019)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..checks import positive_int, positive_number
from .base import Transformation


class TI(Transformation):
    r"""The gradient convolved, channel by channel, with a normalised Gaussian kernel W.

    grad <- W * grad, with W(i, j) ∝ φ(u_i) φ(u_j), u = ``kernel_size`` points evenly spaced in
    [-nsig, nsig] and φ the standard normal density (the paper's code, and torchattacks.TIFGSM;
    zero padding keeps the image size). Applying W to the gradient at x approximates the
    gradient averaged over the translations of x that W weighs.

    Defaults for 32 x 32 CIFAR images: ``kernel_size`` 5, ``nsig`` 3. The paper's 15 x 15 kernel
    on 299-pixel ImageNet images spans 5 % of the side; scaled to 32 pixels that is under 2, and
    with nsig = 3 a 3 x 3 kernel is almost the identity (its side weights are 1 % of the centre's):
    5 is the smallest kernel that smooths (side weights 32 % of the centre's). ``kernel_size=15``
    gives the ImageNet setting.
    """

    name = "ti"

    def __init__(self, kernel_size: int = 5, nsig: float = 3.0):
        self.kernel_size = positive_int(kernel_size, "kernel_size")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"TI's kernel_size must be odd (the kernel is centred on each pixel), got {kernel_size}")
        self.nsig = positive_number(nsig, "nsig")
        self._kernel = gaussian_kernel(self.kernel_size, self.nsig)

    def smooth(self, grad: torch.Tensor) -> torch.Tensor:
        channels = grad.shape[1]
        kernel = self._kernel.to(grad.device, grad.dtype).expand(channels, 1, -1, -1)
        return F.conv2d(grad, kernel, padding=self.kernel_size // 2, groups=channels)


def gaussian_kernel(size: int, nsig: float) -> torch.Tensor:
    """The [size, size] outer product of the normal density at ``size`` points in [-nsig, nsig], summing to 1."""
    u = torch.linspace(-nsig, nsig, size, dtype=torch.float64)
    density = torch.exp(-u ** 2 / 2) / math.sqrt(2 * math.pi)
    kernel = torch.outer(density, density)
    return (kernel / kernel.sum()).to(torch.float32)
