"""``audio/ast``: an AST-style patch transformer over log-mel spectrograms (ImageBind's trunk).

The spectrogram ``(1, num_mel_bins, target_length)`` is cut into 16 x 16 patches every 10 bins
and frames (overlapping, as AST and ImageBind do): 12 x 19 = 228 patches for 128 x 204, plus a
class token. Several clips per example are encoded independently; their tokens are concatenated
and their pooled vectors averaged, as ImageBind averages its per-clip embeddings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from colearn_plugin_depth.vit import TRUNK_KEYS, ImageBindTrunk, pool_tokens, resolve_config
from torch import Tensor

from colearn_core import Encoder, EncoderOutput

__all__ = ["AudioAST"]

_COMMON = {"num_mel_bins": 128, "target_length": 204, "patch_size": 16, "patch_stride": 10}


class AudioAST(Encoder):
    """Patch transformer over ``{"fbank": (B, clips, 1, bins, frames)}`` (or one clip, 4-D).

    Config: ``size`` — ``tiny`` (192 wide, 12 deep, 3 heads), ``base`` (768, 12, 12) or
    ``imagebind-huge`` (ImageBind-huge's audio trunk: 768, 12, 12, stochastic depth 0.1) —
    plus ``num_mel_bins`` and ``target_length`` (the spectrogram size, default 128 x 204),
    ``pool`` (``"cls"`` or ``"mean"``) and any :class:`~colearn_plugin_depth.vit.ImageBindTrunk`
    argument in ``TRUNK_KEYS`` except ``image_size``.
    Output: tokens ``(B, clips * (1 + patches), D)``, pooled ``(B, D)`` (mean over clips).
    """

    modality: ClassVar[str] = "audio"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {**_COMMON, "width": 192, "depth": 12, "heads": 3},
        "base": {**_COMMON, "width": 768, "depth": 12, "heads": 12},
        "imagebind-huge": {**_COMMON, "width": 768, "depth": 12, "heads": 12, "drop_path": 0.1},
    }
    KEYS: ClassVar[tuple[str, ...]] = (
        "num_mel_bins",
        "target_length",
        *(k for k in TRUNK_KEYS if k != "image_size"),
    )

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        resolved = resolve_config("audio/ast", self.PRESETS, config, self.KEYS)
        size = (resolved.pop("num_mel_bins"), resolved.pop("target_length"))
        self.pool = resolved.pop("pool")
        self.trunk = ImageBindTrunk(in_chans=1, image_size=size, **resolved)
        self.width = self.trunk.width

    def forward(self, inputs: Mapping[str, Tensor]) -> EncoderOutput:
        try:
            x = inputs["fbank"]
        except KeyError:
            raise KeyError(
                "audio/ast expects inputs['fbank'] of shape (B, clips, 1, bins, frames); "
                f"got keys {sorted(inputs)}"
            ) from None
        if x.ndim == 4:
            x = x[:, None]
        if x.ndim != 5:
            raise ValueError(
                f"audio/ast expects fbank (B, clips, 1, bins, frames), got {tuple(x.shape)}"
            )
        b, clips = x.shape[:2]
        tokens = self.trunk(x.flatten(0, 1))  # (B * clips, T, D)
        pooled = pool_tokens(tokens, self.pool)  # (B * clips, D)
        tokens = tokens.unflatten(0, (b, clips)).flatten(1, 2)  # (B, clips * T, D)
        pooled = pooled.unflatten(0, (b, clips)).mean(dim=1)  # (B, D)
        return EncoderOutput(tokens=tokens, pooled=pooled)

    @classmethod
    def example_config(cls) -> dict[str, Any]:
        return {"size": "tiny", "depth": 2, "num_mel_bins": 32, "target_length": 46}

    def example_inputs(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        bins, frames = self.trunk.image_size
        return {"fbank": torch.randn(batch_size, 2, 1, bins, frames, generator=generator)}
