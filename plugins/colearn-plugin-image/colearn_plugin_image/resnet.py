"""``image/resnet``: torchvision's ResNet as a colearn encoder.

Tokens are the last feature map flattened, ``(B, h*w, C)``; pooled is their mean (the global
average pool the classifier would see). The classifier ``fc`` is removed. ``small_stem`` swaps
the 7x7 stride-2 convolution and max-pool for a 3x3 stride-1 convolution, the usual change for
32 px images (SimCLR's CIFAR-10 setup).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from colearn_core import ConfigError, Encoder, EncoderOutput

__all__ = ["ResNetEncoder"]

#: arch -> (block, layers) as in torchvision.models.resnet.
_ARCHS: dict[str, tuple[str, list[int]]] = {
    "resnet18": ("basic", [2, 2, 2, 2]),
    "resnet34": ("basic", [3, 4, 6, 3]),
    "resnet50": ("bottleneck", [3, 4, 6, 3]),
    "resnet101": ("bottleneck", [3, 4, 23, 3]),
    "resnet152": ("bottleneck", [3, 8, 36, 3]),
}
_KEYS = {
    "arch",
    "layers",
    "small_stem",
    "in_chans",
    "output_dim",
    "image_size",
    "zero_init_residual",
}


class ResNetEncoder(Encoder):
    """``image/resnet`` over ``inputs["pixels"]`` ``(B, C, H, W)``.

    Config: ``arch`` (resnet18, resnet34, resnet50, resnet101, resnet152), ``layers`` (blocks per
    stage, overriding the arch's, e.g. ``[1, 1, 1, 1]`` for tests), ``small_stem`` (False),
    ``in_chans`` (3), ``output_dim`` (bias-free projection of tokens and pooled vector),
    ``image_size`` (only used by :meth:`example_inputs`), ``zero_init_residual``.
    Weights are always randomly initialised (``weights=None``).
    """

    modality = "image"

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

        unknown = set(config) - _KEYS
        if unknown:
            raise ConfigError(
                f"image/resnet: unknown config keys {sorted(unknown)}; known: {sorted(_KEYS)}"
            )
        arch = config.get("arch", "resnet50")
        if arch not in _ARCHS:
            raise ConfigError(f"image/resnet: arch must be one of {list(_ARCHS)}, got {arch!r}")
        kind, layers = _ARCHS[arch]
        layers = list(config.get("layers", layers))
        if len(layers) != 4:
            raise ConfigError(f"image/resnet: layers needs 4 stage depths, got {layers!r}")
        block = BasicBlock if kind == "basic" else Bottleneck
        net = ResNet(
            block, layers, zero_init_residual=bool(config.get("zero_init_residual", False))
        )
        in_chans = int(config.get("in_chans", 3))
        if config.get("small_stem", False):
            net.conv1 = nn.Conv2d(in_chans, 64, kernel_size=3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        elif in_chans != 3:
            net.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        # Only the feature extractor is kept: no avgpool/fc parameters in the state dict.
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1,
            net.layer2,
            net.layer3,
            net.layer4,
        )
        self.in_chans = in_chans
        features = 512 * block.expansion
        out = config.get("output_dim")
        self.proj = nn.Linear(features, out, bias=False) if out else None
        self.width = int(out) if out else features

    def forward(self, inputs: Mapping[str, Tensor]) -> EncoderOutput:
        x = inputs["pixels"]
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"image/resnet: expected pixels of shape (B, {self.in_chans}, H, W), "
                f"got {tuple(x.shape)}"
            )
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))  # (B, C, h, w)
        tokens = x.flatten(2).transpose(1, 2)  # (B, h*w, C)
        pooled = tokens.mean(dim=1)  # (B, C)
        if self.proj is not None:
            tokens, pooled = self.proj(tokens), self.proj(pooled)
        return EncoderOutput(tokens=tokens, pooled=pooled)

    @classmethod
    def example_config(cls) -> dict[str, Any]:
        return {"arch": "resnet18", "layers": [1, 1, 1, 1], "small_stem": True, "image_size": 8}

    def example_inputs(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        size = self.config.get("image_size", 32)
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        return {"pixels": torch.randn(batch_size, self.in_chans, h, w, generator=generator)}
