"""colearn-plugin-vilbert: ViLBERT's two-stream co-attention transformer over text and image
regions, its pretraining tasks, region extractors and the fashion-scenes dataset.

Only hook implementations live here; every heavy module is imported inside a hook.
"""

from colearn_core import hookimpl

__version__ = "0.1.0"


@hookimpl
def register_fusions(register):
    from .coattention import CoAttentionFusion

    register("co-attention", CoAttentionFusion)


@hookimpl
def register_losses(register):
    from .losses import AlignmentLoss, MaskedLMLoss, MaskedRegionKLLoss

    register("vilbert-masked-lm", MaskedLMLoss)
    register("vilbert-masked-region-kl", MaskedRegionKLLoss)
    register("vilbert-alignment", AlignmentLoss)


@hookimpl
def register_methods(register):
    from .model import ViLBERT

    register("vilbert", ViLBERT)
