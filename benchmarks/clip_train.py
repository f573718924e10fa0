"""CLIP training throughput: colearn vs open_clip, same architecture, weights and batch, in one
run.

    python benchmarks/clip_train.py                       # CPU fp32, a small ViT CLIP
    python benchmarks/clip_train.py --arch ViT-B-32 --batch 256 --device cuda   # GPU bf16

Both sides start from the same open_clip model: colearn's is its conversion
(``colearn_plugin_clip.convert.from_open_clip``), so architecture and initial weights are equal.
One training step = forward of both towers, the symmetric contrastive loss with the learnable
temperature, backward, AdamW step, and the temperature clamp:

- open_clip: ``model(images, texts)`` -> ``open_clip.loss.ClipLoss`` -> backward -> step ->
  ``logit_scale.clamp_(0, log 100)``, the loop of open_clip's ``train_one_epoch``
  (``torch.autocast(bfloat16)`` on GPU);
- colearn: ``colearn_core.train.Trainer.train_step`` (accelerate, the trainer's optimiser
  groups, scheduler and loss bookkeeping; ``mixed_precision: bf16`` on GPU) on a recipe for
  the converted ``clip`` model.

Both train on the same pre-collated batch of random pixels and the token ids of real captions
(data loading is not timed: open_clip's loaders are webdataset/CSV pipelines with no
counterpart here). The captions are shorter than the context: open_clip runs its text tower
over every position, colearn (``trim_text_padding``, default) only up to the longest caption
of the batch, which gives exactly the same embeddings; ``--no-trim`` times colearn doing the
same work as open_clip. Each side runs in its own child process, alternating ``--repeats`` times;
the median is reported. On CPU the clock is the process CPU time with one torch thread by
default (the development machine is shared; wall time is listed too), in fp32; on CUDA it is
wall time after synchronising, in bf16 autocast. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: open_clip model arguments of the architectures (``--arch``); other names are open_clip's own.
ARCHS: dict[str, dict[str, Any]] = {
    # ~15M parameters: a ViT-S/16-like image tower at 96 px and a 6-layer text tower
    "small": {
        "name": "ViT-B-32",
        "kwargs": {
            "embed_dim": 256,
            "vision_cfg": {
                "image_size": 96,
                "patch_size": 16,
                "width": 384,
                "layers": 6,
                "head_width": 64,
            },
            "text_cfg": {
                "context_length": 32,
                "vocab_size": 49408,
                "width": 256,
                "heads": 4,
                "layers": 6,
            },
        },
    },
}
CAPTIONS = [
    "a photo of a dog running on the beach",
    "two cats sleeping on a red sofa",
    "a plate of pasta with tomato sauce",
    "an old car parked in front of a house",
    "a man riding a bicycle down a busy street",
    "a bowl of fruit on a wooden table",
    "a group of people hiking in the mountains",
    "a small boat on a calm lake at sunset",
]


def _build_open_clip(arch: str):
    import open_clip
    import torch

    spec = ARCHS.get(arch, {"name": arch, "kwargs": {}})
    torch.manual_seed(0)
    model = open_clip.create_model(spec["name"], pretrained=None, **spec["kwargs"])
    tokenizer = open_clip.get_tokenizer(spec["name"], context_length=model.context_length)
    return model, tokenizer


def _batch(model, tokenizer, batch: int):
    import torch

    g = torch.Generator().manual_seed(0)
    pixels = torch.randn(batch, 3, *model.visual.image_size, generator=g)
    texts = [CAPTIONS[i % len(CAPTIONS)] + f" number {i}" for i in range(batch)]
    ids = tokenizer(texts)
    return pixels, ids


def _timer(device: str):
    import torch

    def now() -> tuple[float, float]:
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter(), time.process_time()

    return now


def run_open_clip(args: dict) -> dict:
    import torch
    from open_clip.loss import ClipLoss

    torch.set_num_threads(args["threads"])
    device = args["device"]
    model, tokenizer = _build_open_clip(args["arch"])
    pixels, ids = _batch(model, tokenizer, args["batch"])
    model = model.to(device).train()
    pixels, ids = pixels.to(device), ids.to(device)
    loss_fn = ClipLoss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device == "cuda"
        else torch.autocast("cpu", enabled=False)
    )
    now = _timer(device)
    start = None
    for step in range(args["warmup"] + args["steps"]):
        if step == args["warmup"]:
            start = now()
        with autocast:
            image_features, text_features, scale = model(pixels, ids)
            loss = loss_fn(image_features, text_features, scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
    end = now()
    return _rates(args, start, end, float(loss))


def run_colearn(args: dict) -> dict:
    import datasets
    import torch
    from colearn_plugin_clip.convert import clip_config_from_open_clip, load_open_clip_weights

    from colearn_core.train import Trainer, parse_recipe

    torch.set_num_threads(args["threads"])
    device = args["device"]
    source, tokenizer = _build_open_clip(args["arch"])
    pixels, ids = _batch(source, tokenizer, args["batch"])
    config = clip_config_from_open_clip(source)
    # the recipe needs a tokenizer the text modality can build; the timed batch below is
    # open_clip's token ids, so this one only feeds the (untimed) data loader
    config["text"]["modality"] = {"tokenizer": "tiny", "context_length": source.context_length}
    config["trim_text_padding"] = not args["no_trim"]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        n = args["batch"]
        datasets.Dataset.from_dict(
            {"caption": [CAPTIONS[i % len(CAPTIONS)] for i in range(n)]}
        ).save_to_disk(str(data))
        recipe = parse_recipe(
            {
                "method": {"name": "clip", "config": config},
                "data": {"dataset": str(data), "columns": {"text": "caption"}},
                "optim": {"lr": 1e-4, "weight_decay": 0.1, "schedule": "constant"},
                "trainer": {
                    "batch_size": args["batch"],
                    "max_steps": args["warmup"] + args["steps"],
                    "mixed_precision": "bf16" if device == "cuda" else "no",
                    "seed": 0,
                    "trackers": [],
                },
            },
            "benchmark",
        )
        trainer = Trainer(recipe, output_dir=Path(tmp) / "run")
        load_open_clip_weights(source, trainer.method)  # open_clip's starting weights
        dev = trainer.accelerator.device
        batch = {
            "image": {"pixels": pixels.to(dev)},
            "text": {"input_ids": ids.to(dev), "attention_mask": (ids != 0).long().to(dev)},
        }
        trainer.model.train()
        now = _timer(device)
        start = None
        values: dict[str, float] = {}
        for step in range(args["warmup"] + args["steps"]):
            if step == args["warmup"]:
                start = now()
            values = trainer.train_step(batch, step + 1)
        end = now()
    return _rates(args, start, end, values["loss"])


def _rates(args: dict, start: Any, end: Any, loss: float) -> dict:
    samples = args["steps"] * args["batch"]
    wall, cpu = end[0] - start[0], end[1] - start[1]
    clock = wall if args["device"] == "cuda" or args["clock"] == "wall" else cpu
    return {
        "samples_per_s": samples / clock,
        "wall_samples_per_s": samples / wall,
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "last_loss": loss,
    }


def child(side: str, args: dict) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", side, json.dumps(args)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default=None, help="small (default on CPU) or an open_clip name")
    parser.add_argument("--batch", type=int, default=None, help="default 64 (CPU), 256 (CUDA)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (both sides)")
    parser.add_argument(
        "--clock", choices=("cpu", "wall"), default="cpu", help="CPU runs: process CPU time"
    )
    parser.add_argument(
        "--no-trim",
        action="store_true",
        help="colearn computes the text padding too (trim_text_padding: false), as open_clip does",
    )
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.child:
        side, args = ns.child[0], json.loads(ns.child[1])
        print(json.dumps((run_colearn if side == "colearn" else run_open_clip)(args)))
        return

    import open_clip
    import torch

    device = ns.device or ("cuda" if torch.cuda.is_available() else "cpu")
    arch = ns.arch or ("small" if device == "cpu" else "ViT-B-32")
    batch = ns.batch or (64 if device == "cpu" else 256)
    args = {**vars(ns), "device": device, "arch": arch, "batch": batch}
    del args["child"]
    runs: dict[str, list[dict]] = {"colearn": [], "open_clip": []}
    for _ in range(ns.repeats):
        for side in ("colearn", "open_clip"):
            runs[side].append(child(side, args))
    rate = {side: statistics.median(r["samples_per_s"] for r in rs) for side, rs in runs.items()}
    wall = {
        side: statistics.median(r["wall_samples_per_s"] for r in rs) for side, rs in runs.items()
    }
    model, _ = _build_open_clip(arch)
    print(
        json.dumps(
            {
                "benchmark": "clip_train",
                "unit": "training samples/s (image-text pairs; forward, loss, backward, AdamW)",
                "arch": arch,
                "parameters": sum(p.numel() for p in model.parameters()),
                "batch": batch,
                "device": device,
                "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
                "precision": "bf16 autocast" if device == "cuda" else "fp32",
                "clock": "wall" if device == "cuda" or ns.clock == "wall" else "process cpu",
                "threads": ns.threads,
                "trim_text_padding": not ns.no_trim,
                "cpu_count": os.cpu_count(),
                "load_average_1min": os.getloadavg()[0],
                "torch": torch.__version__,
                "open_clip": open_clip.__version__,
                "colearn": round(rate["colearn"], 2),
                "open_clip_rate": round(rate["open_clip"], 2),
                "ratio": round(rate["colearn"] / rate["open_clip"], 3),
                "wall": {k: round(v, 2) for k, v in wall.items()},
                "runs": {k: [round(r["samples_per_s"], 2) for r in rs] for k, rs in runs.items()},
                "last_loss": {k: round(rs[-1]["last_loss"], 4) for k, rs in runs.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
