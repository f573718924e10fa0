"""SimCLR training throughput, augmentation included: colearn vs lightly, in one run.

Both sides train the same torchvision ResNet-18 (standard stem, random init, ``fc`` removed;
lightly's CIFAR-10 example) with a 512-2048-128 projection head, NT-Xent at temperature 0.5,
AdamW, the same batch size, on the same images stored the same way: a ``datasets`` dataset
of PNG-encoded RGB images (Fashion-MNIST resized to ``--size`` px and repeated to 3
channels). Augmentations: random resized crop, horizontal flip, colour jitter (p 0.8),
grayscale (p 0.2), no blur (lightly's CIFAR-10 setting), two views per image.

- colearn: ``colearn_core.train.Trainer`` on a recipe for the ``simclr`` method with the
  ``image/resnet`` encoder; the data loader decodes and normalises one image per sample and
  the method draws both views for the whole batch at once (``ImageModality.augment``).
- lightly: a DataLoader over the same images with ``lightly.transforms.SimCLRTransform``
  (per-sample PIL/torchvision ops, two views), ``SimCLRProjectionHead`` and
  ``lightly.loss.NTXentLoss``, in the hand-written loop of lightly's examples.

Each side runs in its own child process, alternating ``--repeats`` times; a rate is training
samples (images, not views) per second over the timed steps, after ``--warmup`` steps.
Prints one JSON object. Needs ``pip install lightly``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def build_dataset(size: int, count: int):
    """``count`` Fashion-MNIST training images, resized to ``size`` px RGB, as PNG bytes in a
    ``datasets`` Image column (decoded to PIL on read) with a ``label`` column."""
    import io

    import datasets
    import PIL.Image
    from colearn_plugin_image.fashion_mnist import load_fashion_mnist_arrays

    images, labels = load_fashion_mnist_arrays("train")
    encoded = []
    for array in images[:count]:
        image = PIL.Image.fromarray(array).convert("RGB").resize((size, size), PIL.Image.BILINEAR)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        encoded.append({"bytes": buffer.getvalue(), "path": None})
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    return datasets.Dataset.from_dict(
        {"image": encoded, "label": labels[:count].tolist()}, features=features
    )


def run_colearn(args: dict) -> dict:
    import torch

    from colearn_core.train import Trainer, parse_recipe

    torch.set_num_threads(args["threads"])
    steps = args["warmup"] + args["steps"]
    with tempfile.TemporaryDirectory() as tmp:
        recipe = parse_recipe(
            {
                "method": {
                    "name": "simclr",
                    "config": {
                        "modality": {
                            "image_size": args["size"],
                            "channels": 3,
                            "resize": "none",
                            "mean": MEAN,
                            "std": STD,
                            "augmentations": ["crop", "flip", "color"],
                        },
                        "encoder": {"name": "image/resnet", "arch": "resnet18"},
                        "projection": {"hidden_dim": 2048, "output_dim": 128, "batch_norm": True},
                        "loss": {"temperature": 0.5},
                    },
                },
                "data": {
                    "dataset": args["data"],
                    "columns": {"image": "image"},
                    "num_workers": args["workers"],
                },
                "optim": {"lr": 1e-3, "weight_decay": 1e-6},
                "trainer": {
                    "batch_size": args["batch"],
                    "max_steps": steps,
                    "log_every": 1,
                    "seed": 0,
                    "trackers": [],
                },
            },
            "benchmark",
        )
        trainer = Trainer(recipe, output_dir=Path(tmp) / "run")
        trainer.fit()
        rows = [json.loads(line) for line in trainer.metrics_path.read_text().splitlines()]
    rates = [r["samples_per_s"] for r in rows if r["step"] > args["warmup"]]
    # samples_per_s of each logged step is batch / its duration: harmonic mean = total rate.
    return {"samples_per_s": len(rates) / sum(1 / r for r in rates), "steps": len(rates)}


def run_lightly(args: dict) -> dict:
    import datasets
    import torch
    import torchvision
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.transforms import SimCLRTransform

    torch.set_num_threads(args["threads"])
    torch.manual_seed(0)
    hf = datasets.load_from_disk(args["data"])
    transform = SimCLRTransform(
        input_size=args["size"], gaussian_blur=0.0, normalize={"mean": MEAN, "std": STD}
    )

    class Views(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(hf)

        def __getitem__(self, i: int):
            row = hf[i]
            return transform(row["image"]), row["label"]

    loader = torch.utils.data.DataLoader(
        Views(),
        batch_size=args["batch"],
        shuffle=True,
        drop_last=True,
        num_workers=args["workers"],
        generator=torch.Generator().manual_seed(0),
    )
    resnet = torchvision.models.resnet18()
    backbone = torch.nn.Sequential(*list(resnet.children())[:-1])
    head = SimCLRProjectionHead(512, 2048, 128)
    criterion = NTXentLoss(temperature=0.5)
    params = list(backbone.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-6)
    backbone.train()
    head.train()
    step, start = 0, None
    while step < args["warmup"] + args["steps"]:
        for (x0, x1), _ in loader:
            if step == args["warmup"]:
                start = time.perf_counter()
            z0 = head(backbone(x0).flatten(start_dim=1))
            z1 = head(backbone(x1).flatten(start_dim=1))
            loss = criterion(z0, z1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step == args["warmup"] + args["steps"]:
                break
    elapsed = time.perf_counter() - start
    return {"samples_per_s": args["steps"] * args["batch"] / elapsed, "steps": args["steps"]}


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
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (both)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (both)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.child:
        side, args = ns.child[0], json.loads(ns.child[1])
        print(json.dumps((run_colearn if side == "colearn" else run_lightly)(args)))
        return

    import lightly
    import torch

    count = ns.batch * (ns.steps + ns.warmup)
    with tempfile.TemporaryDirectory() as tmp:
        data = str(Path(tmp) / "images")
        build_dataset(ns.size, count).save_to_disk(data)
        args = {**vars(ns), "data": data}
        del args["child"]
        runs: dict[str, list[float]] = {"colearn": [], "lightly": []}
        for _ in range(ns.repeats):
            for side in ("colearn", "lightly"):
                runs[side].append(child(side, args)["samples_per_s"])
    colearn, light = statistics.median(runs["colearn"]), statistics.median(runs["lightly"])
    print(
        json.dumps(
            {
                "benchmark": "simclr_train",
                "unit": "training samples/s (2 views each, augmentation included)",
                "model": "torchvision resnet18 + 512-2048-128 head, NT-Xent T=0.5, AdamW",
                "batch": ns.batch,
                "image_size": ns.size,
                "workers": ns.workers,
                "threads": ns.threads,
                "cpu_count": os.cpu_count(),
                "load_average_1min": os.getloadavg()[0],
                "torch": torch.__version__,
                "lightly": lightly.__version__,
                "colearn": round(colearn, 1),
                "lightly_rate": round(light, 1),
                "ratio": round(colearn / light, 3),
                "runs": {k: [round(v, 1) for v in vs] for k, vs in runs.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
