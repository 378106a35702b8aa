"""A small Vision Transformer for CIFAR-10 (Dosovitskiy et al., "An Image is Worth 16x16
Words: Transformers for Image Recognition at Scale", ICLR 2021), built with timm's
``VisionTransformer`` and trained from scratch (no pretrained download).

``vit_tiny_p4``: 4x4 patches of a 32x32 image (64 tokens + a class token), ViT-Tiny width
(embed 192, 3 heads, MLP ratio 4) at depth 6.
"""
from __future__ import annotations

from timm.models.vision_transformer import VisionTransformer

from .normalize import CIFAR10_MEAN, CIFAR10_STD
from .registry import register_model


@register_model("vit_tiny_p4", mean=CIFAR10_MEAN, std=CIFAR10_STD)
def vit_tiny_p4(num_classes: int = 10) -> VisionTransformer:
    """ViT with patch 4, embed 192, depth 6, 3 heads, class-token pooling, for 32x32 inputs."""
    return VisionTransformer(img_size=32, patch_size=4, embed_dim=192, depth=6, num_heads=3, mlp_ratio=4.0,
                             num_classes=num_classes, global_pool="token", class_token=True)
