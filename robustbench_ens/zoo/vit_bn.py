"""Zhouxing Shi's verifiable Vision Transformer with BatchNorm in place of LayerNorm, the VNN-COMP 2023 ``vit``
benchmark (shizhouxing/ViT_vnncomp2023); the ViT itself is Dosovitskiy et al.'s ("An Image is Worth 16x16
Words", ICLR 2021), made bound-friendly by BatchNorm (affine at inference) and ReLU.

A conv patch embedding (patch x patch, stride patch) 3->48 with a learned class token prepended and learned
positions added; ``depth`` pre-norm blocks ``x + MHA(BN(x))`` then ``x + MLP(BN(x))``, where BN is a
BatchNorm1d over the 48 channels of every token, MHA has separate query/key/value/out linear layers and
scale 1/sqrt(head dim), and the MLP is 48 -> 96 -> ReLU -> 48; the head is the mean over all tokens (class
token included) -> BatchNorm1d -> linear. Registered as ``vit-bn-d{depth}-h{heads}-p{patch}``.

The whole network is an ``nn.Sequential`` (embedding, blocks, head) whose state-dict keys are the original's.
"""
from __future__ import annotations

import torch
from torch import nn

from .normalize import CIFAR10_MEAN, CIFAR10_STD_PER_IMAGE
from .registry import register_model

EMBED_DIM = 48
HEADS = 3
MLP_DIM = 96
# (depth, patch size) of the shared checkpoints.
CONFIGS = ((2, 16), (3, 8))


class PatchEmbedding(nn.Module):
    """[B, 3, H, W] -> [B, 1 + patches, dim]: class token, then the patches row by row, plus ``positions``."""

    def __init__(self, patch: int, dim: int, image_size: int = 32):
        super().__init__()
        self.projection = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(0.02 * torch.randn(dim))
        self.positions = nn.Parameter(0.02 * torch.randn((image_size // patch) ** 2 + 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.projection(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(len(x), 1, -1)
        return torch.cat([cls, patches], dim=1) + self.positions


class TokenBatchNorm(nn.Module):
    """BatchNorm1d over the channels of every token of a [B, tokens, dim] sequence."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.BatchNorm1d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class Residual(nn.Module):
    """``x + fn(x)`` with ``fn`` the given layers in sequence."""

    def __init__(self, *layers: nn.Module):
        super().__init__()
        self.fn = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fn(x)


class Attention(nn.Module):
    """Multi-head self-attention with separate ``query``, ``key``, ``value`` and ``out`` projections."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value, self.out = (nn.Linear(dim, dim) for _ in range(4))

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """[B, N, heads * d] -> [B, heads, N, d]."""
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        query, key, value = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        weights = torch.softmax(query @ key.transpose(-2, -1) / query.shape[-1] ** 0.5, dim=-1)
        return self.out((weights @ value).transpose(1, 2).flatten(2))


class TokenMean(nn.Module):
    """[B, tokens, dim] -> [B, dim]: the mean over all tokens."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)


def vit_bn(depth: int, patch: int, num_classes: int = 10, dim: int = EMBED_DIM, heads: int = HEADS,
           mlp_dim: int = MLP_DIM) -> nn.Sequential:
    """The network as ``Sequential(embedding, Sequential(blocks), head)``; each block is two :class:`Residual`."""
    def mlp() -> nn.Sequential:
        # Index 2 is the original's dropout slot (no parameters); the keys of the two linears are 0 and 3.
        return nn.Sequential(nn.Linear(dim, mlp_dim), nn.ReLU(), nn.Identity(), nn.Linear(mlp_dim, dim))

    blocks = [nn.Sequential(Residual(TokenBatchNorm(dim), Attention(dim, heads)), Residual(TokenBatchNorm(dim), mlp()))
              for _ in range(depth)]
    head = nn.Sequential(TokenMean(), nn.BatchNorm1d(dim), nn.Linear(dim, num_classes))
    return nn.Sequential(PatchEmbedding(patch, dim), nn.Sequential(*blocks), head)


def _register(depth: int, patch: int) -> None:
    @register_model(f"vit-bn-d{depth}-h{HEADS}-p{patch}", mean=CIFAR10_MEAN, std=CIFAR10_STD_PER_IMAGE)
    def constructor(num_classes: int = 10) -> nn.Sequential:
        return vit_bn(depth, patch, num_classes=num_classes)

    constructor.__doc__ = f"BatchNorm ViT: depth {depth}, {HEADS} heads, {patch}x{patch} patches, width {EMBED_DIM}."


for _depth, _patch in CONFIGS:
    _register(_depth, _patch)
