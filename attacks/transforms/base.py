"""The transformation hook of gradient attacks (TransferAttack's ``transform`` and gradient hooks).

A :class:`Transformation` acts on each surrogate pass of an attack in two places:

- ``copies(x, generator)``: the inputs the surrogates see instead of ``x`` (one or several,
  each differentiable in ``x``); the attack's gradient is the mean of the gradients through
  every copy (DI: one random resize-and-pad; SI: five scaled copies; Admix: fifteen mixed
  and scaled copies);
- ``smooth(grad)``: the gradient at ``x`` after that mean (TI: a Gaussian smoothing).

Transformations compose: given ``[t_1, ..., t_n]``, the copies of t_1 are passed through
t_2 and so on (SI then DI: a DI draw for each scaled copy), and the gradient goes through
every ``smooth`` in the same order. Randomness comes from the attack's host generator.
"""
from __future__ import annotations

import torch


class Transformation:
    """Base class: no copies beyond ``x`` itself, no smoothing. Subclasses set ``name``."""

    name = "identity"

    def copies(self, x: torch.Tensor, generator: torch.Generator) -> list[torch.Tensor]:
        return [x]

    def smooth(self, grad: torch.Tensor) -> torch.Tensor:
        return grad

    def settings(self) -> dict:
        """The transformation's hyperparameters, as recorded with the attack's."""
        return {key: value for key, value in vars(self).items() if not key.startswith("_")}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.settings().items())})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.settings() == other.settings()

    def __hash__(self) -> int:
        return hash((type(self), tuple(self.settings().items())))
