"""colearn-plugin-text: the ``text`` modality, the ``text/transformer`` (CLIP) and ``text/bert``
encoders, and the ``colearn tokenizer`` command.

Importing this package imports nothing heavy; the hooks import the modules that define what
they register when the plugin is loaded.
"""

from __future__ import annotations

from colearn_core import hookimpl

__version__ = "0.1.0"
__all__ = ["register_commands", "register_encoders", "register_modalities"]


@hookimpl
def register_modalities(register):  # type: ignore[no-untyped-def]
    from .modality import TextModality

    register("text", TextModality)


@hookimpl
def register_encoders(register):  # type: ignore[no-untyped-def]
    from .encoders import BertEncoder, TextTransformer

    register("text/transformer", TextTransformer)
    register("text/bert", BertEncoder)


@hookimpl
def register_commands(register):  # type: ignore[no-untyped-def]
    from .cli import TOKENIZER_COMMAND

    register("tokenizer", TOKENIZER_COMMAND)
