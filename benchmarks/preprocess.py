"""Preprocessing throughput: SimCLR views per second, batched tensor pipeline against
torchvision's per-image PIL transforms, and audio clips per second for Kaldi fbank.

    python benchmarks/preprocess.py                    # 28 -> 32 px and 96 px, CPU
    python benchmarks/preprocess.py --sizes 28:32 96:96 224:224 --images 512 --threads 1

Prints one JSON document on stdout. For each ``INPUT:SIZE`` pair (an RGB PIL image of side
INPUT, augmented to SIZE):

- ``torchvision_pil``: ``transforms.Compose`` of Resize(SIZE) (when INPUT != SIZE),
  RandomResizedCrop, RandomHorizontalFlip, RandomApply(ColorJitter(0.8, 0.8, 0.8, 0.2), 0.8),
  RandomGrayscale(0.2), RandomApply(GaussianBlur(10% kernel, sigma 0.1-2), 0.5), ToTensor,
  Normalize, one image at a time as a DataLoader worker runs it, then ``torch.stack``.
- ``colearn_preprocess_and_augment``: what a colearn data pipeline does for one view:
  ``ImageModality.preprocess`` per image (decode, resize, normalise), ``collate``, then
  ``augment`` on the batch.
- ``colearn_augment``: ``augment`` alone on a collated batch. SimCLR preprocesses each image
  once and augments the batch twice (two views), so this is the per-view cost after the first.
- ``colearn_augment_cuda``: the same on the GPU, when one is present.

Every figure is views (images) per second, the median of ``--repeats`` timed passes over
``--images`` images after one warm-up pass, with ``--threads`` intra-op threads for every
implementation, timed by ``--clock`` (wall, or the process's CPU time on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

#: ``wall``: elapsed time; ``cpu``: this process's CPU time, a fairer clock on a machine shared
#: with other jobs when ``--threads 1`` (CUDA timings always use the wall clock).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = time.perf_counter


def _median_rate(run: Callable[[], None], items: int, repeats: int, sync: bool = False) -> float:
    clock = time.perf_counter if sync else _clock
    run()  # warm-up
    times = []
    for _ in range(repeats):
        if sync:
            torch.cuda.synchronize()
        start = clock()
        run()
        if sync:
            torch.cuda.synchronize()
        times.append(clock() - start)
    return items / statistics.median(times)


def _pil_images(n: int, side: int) -> list[Any]:
    import PIL.Image

    rng = np.random.default_rng(0)
    # smooth random images (a blurred noise field) so that resampling does real work
    base = rng.integers(0, 256, size=(n, side // 4 + 1, side // 4 + 1, 3), dtype=np.uint8)
    return [
        PIL.Image.fromarray(b).resize((side, side), PIL.Image.Resampling.BILINEAR) for b in base
    ]


def _torchvision_pipeline(size: int, resize: bool) -> Callable[[Any], torch.Tensor]:
    import torchvision.transforms as T
    from colearn_plugin_image.modality import CLIP_MEAN, CLIP_STD

    kernel = max(3, int(0.1 * size))
    kernel += 1 - kernel % 2
    steps = [T.Resize(size)] if resize else []
    steps += [
        T.RandomResizedCrop(size, scale=(0.08, 1.0)),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.RandomApply([T.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=0.5),
        T.ToTensor(),
        T.Normalize(CLIP_MEAN, CLIP_STD),
    ]
    return T.Compose(steps)


def bench_simclr(
    input_side: int, size: int, images: int, batch: int, repeats: int
) -> dict[str, Any]:
    """Views per second for one ``input_side -> size`` setting."""
    from colearn_plugin_image.modality import ImageModality

    pil = _pil_images(images, input_side)
    result: dict[str, Any] = {"input_px": input_side, "output_px": size, "images": images}

    pipeline = _torchvision_pipeline(size, resize=input_side != size)

    def torchvision_pil() -> None:
        for start in range(0, images, batch):
            torch.stack([pipeline(im) for im in pil[start : start + batch]])

    result["torchvision_pil"] = _median_rate(torchvision_pil, images, repeats)

    modality = ImageModality(image_size=size)
    gen = torch.Generator().manual_seed(0)

    def preprocess_and_augment() -> None:
        for start in range(0, images, batch):
            chunk = pil[start : start + batch]
            collated = modality.collate([modality.preprocess(im) for im in chunk])
            modality.augment(collated, generator=gen)

    result["colearn_preprocess_and_augment"] = _median_rate(preprocess_and_augment, images, repeats)

    batches = [
        modality.collate([modality.preprocess(im) for im in pil[s : s + batch]])
        for s in range(0, images, batch)
    ]

    def augment_only() -> None:
        for collated in batches:
            modality.augment(collated, generator=gen)

    result["colearn_augment"] = _median_rate(augment_only, images, repeats)
    if torch.cuda.is_available():
        on_gpu = [{"pixels": b["pixels"].cuda()} for b in batches]
        gpu_gen = torch.Generator(device="cuda").manual_seed(0)

        def augment_cuda() -> None:
            for collated in on_gpu:
                modality.augment(collated, generator=gpu_gen)

        result["colearn_augment_cuda"] = _median_rate(augment_cuda, images, repeats, sync=True)
    for key in [k for k in result if k.startswith("colearn_")]:
        result[f"speedup_{key}"] = result[key] / result["torchvision_pil"]
    return result


# --- audio (owned by colearn-plugin-audio) -------------------------------------------------
# Add audio measurements here; each returns a JSON-able dict, or {"skipped": reason}.


def bench_audio_fbank(clips: int, repeats: int) -> dict[str, Any]:
    """Clips per second of ImageBind's fbank (2 s at 16 kHz, 128 mel bins, 25 ms / 10 ms)."""
    try:
        from colearn_plugin_audio.kaldi import fbank
    except ImportError as exc:
        return {"skipped": f"colearn-plugin-audio is not installed ({exc})"}
    options = {
        "sample_frequency": 16000.0,
        "num_mel_bins": 128,
        "frame_length": 25.0,
        "frame_shift": 10.0,
        "window_type": "hanning",
        "htk_compat": True,
        "use_energy": False,
        "dither": 0.0,
    }
    waves = torch.randn(clips, 32000, generator=torch.Generator().manual_seed(0)) * 0.1
    frames = fbank(waves[0], **options).shape[0]

    def one_at_a_time() -> None:
        for wave in waves:
            fbank(wave, **options)

    def batched() -> None:
        fbank(waves, **options)

    return {
        "clip_seconds": 2.0,
        "frames": frames,
        "mel_bins": 128,
        "clips": clips,
        "fbank_per_clip": _median_rate(one_at_a_time, clips, repeats),
        "fbank_batched": _median_rate(batched, clips, repeats),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["28:32", "96:96"], help="INPUT:SIZE")
    parser.add_argument("--images", type=int, default=512, help="images per timed pass")
    parser.add_argument("--batch", type=int, default=256, help="batch size of the pipeline")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--audio-clips", type=int, default=64, help="clips for fbank")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall", help="CPU timings")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    global _clock
    _clock = CLOCKS[args.clock]

    results: dict[str, Any] = {
        "unit": "views (images) per second; audio: clips per second",
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(),
            "threads": args.threads,
            "clock": args.clock,
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },
        "simclr": [],
    }
    for spec in args.sizes:
        input_side, _, size = spec.partition(":")
        setting = bench_simclr(
            int(input_side), int(size or input_side), args.images, args.batch, args.repeats
        )
        results["simclr"].append(setting)
        print(f"simclr {spec}: done", file=sys.stderr)
    results["audio_fbank"] = bench_audio_fbank(args.audio_clips, args.repeats)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
