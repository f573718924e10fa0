"""colearn-plugin-vilbert: ViLBERT's two-stream co-attention transformer over text and image
regions, its pretraining tasks, region extractors and the fashion-scenes dataset.

Registers: method ``vilbert`` (and ``vilbert-text``, BERT pretraining of its text stream),
fusion ``co-attention``, modality ``regions``, losses ``vilbert-masked-lm``,
``vilbert-masked-region-kl``, ``vilbert-alignment``, tasks ``vilbert-pretraining``,
``vilbert-text-pretraining``, ``vilbert-retrieval``, ``vilbert-vqa``, dataset
``fashion-scenes`` and the converter ``convert/vilbert`` (``colearn convert vilbert``).
Only hook implementations live here; modules load inside the hooks.
"""

from colearn_core import hookimpl

__version__ = "0.1.0"


@hookimpl
def register_modalities(register):
    from .regions import RegionsModality

    register("regions", RegionsModality)


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
def register_tasks(register):
    from .tasks import PretrainingEval, RetrievalTask, TextPretrainingEval, VQATask

    register("vilbert-pretraining", PretrainingEval)
    register("vilbert-text-pretraining", TextPretrainingEval)
    register("vilbert-retrieval", RetrievalTask)
    register("vilbert-vqa", VQATask)


@hookimpl
def register_methods(register):
    from .model import ViLBERT
    from .text_pretrain import ViLBERTText

    register("vilbert", ViLBERT)
    register("vilbert-text", ViLBERTText)


@hookimpl
def register_datasets(register):
    from .scenes import build_fashion_scenes

    register("fashion-scenes", build_fashion_scenes)


@hookimpl
def register_commands(register):
    from .cli import CONVERT_VILBERT_COMMAND

    # The core's CLI runs a command named `convert/<kind>` as `colearn convert <kind>`.
    register("convert/vilbert", CONVERT_VILBERT_COMMAND)
