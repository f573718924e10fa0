"""``colearn embed``: embed files or strings with a trained model into .safetensors or .npy.

Any method that implements :meth:`~colearn_core.Method.embed` works; each input goes through
the model's own modality preprocessing (``model.modalities[name].preprocess``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .cli import Command
from .errors import ConfigError, InputError
from .hookspecs import Register, hookimpl
from .interfaces import Method

__all__ = ["EMBED_COMMAND", "embed_inputs", "save_embeddings"]


@torch.no_grad()
def embed_inputs(
    model: Method, modality: str, inputs: Sequence[Any], *, batch_size: int = 64
) -> Tensor:
    """Embeddings ``(N, D)`` of raw ``inputs`` (file paths, strings, arrays) of one modality."""
    towers = model.modalities
    if modality not in towers:
        raise ConfigError(
            f"this {model.method_name or type(model).__name__} model has no {modality!r} "
            f"tower; it has: {', '.join(sorted(towers)) or 'none'}"
        )
    if not inputs:
        raise InputError(f"modality {modality!r}: nothing to embed (no inputs given)")
    processor = towers[modality]
    device = next(model.parameters()).device
    model.eval()
    chunks = []
    for start in range(0, len(inputs), batch_size):
        samples = []
        for index in range(start, min(start + batch_size, len(inputs))):
            try:
                samples.append(processor.preprocess(inputs[index]))
            except InputError:
                raise
            except Exception as exc:  # a decoder's own error: say which input
                raise InputError(
                    f"modality {modality!r}, input {index} ({str(inputs[index])[:80]!r}): {exc}"
                ) from exc
        batch = {modality: {k: v.to(device) for k, v in processor.collate(samples).items()}}
        chunks.append(model.embed(batch)[modality].float().cpu())
    return torch.cat(chunks)


def save_embeddings(
    embeddings: Tensor, out: str | Path, *, names: Sequence[str], modality: str
) -> Path:
    """Write ``(N, D)`` embeddings to ``.safetensors`` (inputs in the metadata) or ``.npy``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        import numpy as np

        np.save(out, embeddings.numpy(), allow_pickle=False)
    elif out.suffix == ".safetensors":
        from safetensors.torch import save_file

        metadata = {"modality": modality, "inputs": json.dumps(list(names))}
        save_file({"embeddings": embeddings.contiguous()}, str(out), metadata=metadata)
    else:
        raise ConfigError(f"--out {out}: use a .safetensors or .npy file name")
    return out


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="PATH|REPO_ID", help="a model folder or Hub repo id")
    p.add_argument(
        "--modality", required=True, help="the tower to embed with, e.g. image, text, audio"
    )
    p.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="files to embed (images, WAVs, ...), or strings with --modality text",
    )
    p.add_argument(
        "--from-file",
        metavar="LIST.txt",
        help="read inputs from this file, one per line (e.g. captions or paths)",
    )
    p.add_argument("--out", required=True, metavar="FILE", help="output .safetensors or .npy")
    p.add_argument("--revision", default=None, help="Hub branch, tag or commit")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if present)")


def _run(args: argparse.Namespace) -> int:
    from . import from_hub

    inputs = list(args.inputs)
    if args.from_file:
        lines = Path(args.from_file).read_text(encoding="utf-8").splitlines()
        inputs += [line for line in lines if line.strip()]
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = from_hub(args.model, args.revision, modalities=[args.modality], device=device)
    embeddings = embed_inputs(model, args.modality, inputs, batch_size=args.batch_size)
    out = save_embeddings(embeddings, args.out, names=inputs, modality=args.modality)
    print(f"wrote {tuple(embeddings.shape)} {args.modality} embeddings to {out}")
    return 0


EMBED_COMMAND = Command(
    help="embed images, text or audio files with a trained model (.safetensors or .npy)",
    add_arguments=_arguments,
    run=_run,
    intermixed="inputs",
    description="Embed inputs of one modality with a model from a folder or the Hub.\n\n"
    "  colearn embed runs/demo/model --modality image --out img.safetensors a.png b.png\n"
    '  colearn embed --modality text --out text.npy runs/demo/model "a dress" "a bag"',
)


@hookimpl
def register_commands(register: Register) -> None:
    register("embed", EMBED_COMMAND)
