"""He initialisation shared by the zoo's convolutional networks (He et al., ICCV 2015)."""
from __future__ import annotations

from torch import nn


def he_init(model: nn.Module, linear: str | float | None = None) -> None:
    """Convs: Kaiming normal (fan_out, ReLU), bias 0; BatchNorm: identity.

    ``linear``: ``"kaiming"`` (Kaiming normal, bias 0), a float std (normal, bias 0), or
    ``None`` to keep PyTorch's default for linear layers.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear) and linear is not None:
            if linear == "kaiming":
                nn.init.kaiming_normal_(module.weight)
            else:
                nn.init.normal_(module.weight, 0, float(linear))
            nn.init.zeros_(module.bias)
