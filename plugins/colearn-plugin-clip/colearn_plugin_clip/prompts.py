"""Class names and prompt templates, with named presets for recipes and ``colearn eval``.

Fashion-MNIST has two disjoint template sets: :data:`FASHION_MNIST_TRAIN_TEMPLATES` make the
training captions of the ``fashion-mnist-captions`` dataset, and zero-shot evaluation uses
:data:`FASHION_MNIST_HELDOUT_TEMPLATES`, which the model never saw.
"""

from __future__ import annotations

from collections.abc import Sequence

from colearn_core import ConfigError

__all__ = [
    "CLASS_NAME_PRESETS",
    "CLIP_TEMPLATES",
    "FASHION_MNIST_CLASS_NAMES",
    "FASHION_MNIST_HELDOUT_TEMPLATES",
    "FASHION_MNIST_TRAIN_TEMPLATES",
    "TEMPLATE_PRESETS",
    "resolve_class_names",
    "resolve_templates",
]

#: Fashion-MNIST's classes (label order) as they read in a caption.
FASHION_MNIST_CLASS_NAMES: tuple[str, ...] = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)

#: Templates of the training captions.
FASHION_MNIST_TRAIN_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "a {}.",
    "a photo of the {}.",
    "a grayscale photo of a {}.",
    "a low resolution photo of a {}.",
    "a product photo of a {}.",
    "this is a {}.",
    "a small photo of a {}.",
    "a cropped photo of a {}.",
    "a close-up photo of a {}.",
    "a photo of my {}.",
    "a tiny picture of the {}.",
)

#: Zero-shot templates, disjoint from the training ones.
FASHION_MNIST_HELDOUT_TEMPLATES: tuple[str, ...] = (
    "a black and white photo of a {}.",
    "a blurry photo of a {}.",
    "a bright photo of the {}.",
    "a good photo of a {}.",
    "a centered picture of the {}.",
    "there is a {} in this image.",
    "a {} on a plain background.",
    "a pixelated image of the {}.",
)

#: A few of OpenAI CLIP's ImageNet templates, for natural images.
CLIP_TEMPLATES: tuple[str, ...] = (
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a photo of the large {}.",
    "a photo of the small {}.",
    "a bright photo of a {}.",
    "a cropped photo of the {}.",
    "a photo of a {}.",
    "a close-up photo of a {}.",
    "itap of a {}.",
    "a good photo of a {}.",
    "art of the {}.",
    "a drawing of a {}.",
)

CLASS_NAME_PRESETS: dict[str, tuple[str, ...]] = {"fashion-mnist": FASHION_MNIST_CLASS_NAMES}
TEMPLATE_PRESETS: dict[str, tuple[str, ...]] = {
    "fashion-mnist-train": FASHION_MNIST_TRAIN_TEMPLATES,
    "fashion-mnist-heldout": FASHION_MNIST_HELDOUT_TEMPLATES,
    "clip": CLIP_TEMPLATES,
    "identity": ("{}",),
}


def _strings(what: str, value: Sequence[str] | str, presets: dict[str, tuple[str, ...]]):
    if isinstance(value, str):
        if value not in presets:
            raise ConfigError(
                f"{what}: unknown preset {value!r}; presets: {', '.join(presets)}; or give a "
                "list of strings"
            )
        return list(presets[value])
    if not isinstance(value, Sequence) or not value:
        raise ConfigError(f"{what} must be a preset name or a non-empty list, got {value!r}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise ConfigError(f"{what}[{i}] must be a non-empty string, got {item!r}")
    return list(value)


def resolve_class_names(value: Sequence[str] | str) -> list[str]:
    """A list of class names, or a preset of :data:`CLASS_NAME_PRESETS`."""
    return _strings("class_names", value, CLASS_NAME_PRESETS)


def resolve_templates(value: Sequence[str] | str) -> list[str]:
    """A list of templates each with exactly one ``{}``, or a preset of
    :data:`TEMPLATE_PRESETS`."""
    templates = _strings("templates", value, TEMPLATE_PRESETS)
    for i, template in enumerate(templates):
        if template.count("{}") != 1 or template.replace("{}", "").count("{") > 0:
            raise ConfigError(
                f"templates[{i}] = {template!r} must contain exactly one '{{}}' (where the class "
                "name goes) and no other braces"
            )
    return templates
