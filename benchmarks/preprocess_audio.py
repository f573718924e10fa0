"""Audio preprocessing throughput: clips per second for ImageBind's log-mel clips.

    python benchmarks/preprocess_audio.py                       # CPU, 1 thread
    python benchmarks/preprocess_audio.py --threads 2 --clips 128

Prints one JSON document on stdout. Every figure is 2 s clips per second (128 mel bins, 25 ms
Hann windows every 10 ms, 198 frames padded to 204), the median of ``--repeats`` timed passes
after one warm-up pass, by wall clock or (``--clock cpu``, steadier on a shared machine) by the
process's CPU time:

- ``fbank_per_clip``: ``colearn_plugin_audio.kaldi.fbank`` on one 16 kHz clip at a time.
- ``fbank_batched``: the same on all ``--clips`` clips in one call.
- ``fbank_batched_cuda``: the same on the GPU, when one is present.
- ``pipeline_array`` / ``pipeline_wav``: ``AudioModality.preprocess`` per example, as a data
  loader worker runs it: 10 s of 44.1 kHz stereo (an array, or WAV bytes decoded by
  soundfile), mix-down, resampling to 16 kHz, 3 clips, fbank, padding, normalisation.
- ``torchaudio_fbank_per_clip``: ``torchaudio.compliance.kaldi.fbank`` one clip at a time, as
  ImageBind calls it, when torchaudio can be imported (``--only torchaudio`` runs just this, in
  an environment that has torchaudio but not colearn).
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

FBANK = {
    "sample_frequency": 16000.0,
    "num_mel_bins": 128,
    "frame_length": 25.0,
    "frame_shift": 10.0,
    "window_type": "hanning",
    "htk_compat": True,
    "use_energy": False,
    "dither": 0.0,
}


#: ``wall``: time.perf_counter; ``cpu``: this process's CPU time (steadier on a shared machine).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = time.perf_counter


def _median_rate(run: Callable[[], None], items: int, repeats: int, sync: bool = False) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        if sync:
            torch.cuda.synchronize()
        start = _clock()
        run()
        if sync:
            torch.cuda.synchronize()
        times.append(_clock() - start)
    return round(items / statistics.median(times), 1)


def _clips(n: int) -> torch.Tensor:
    return torch.randn(n, 32000, generator=torch.Generator().manual_seed(0)) * 0.1


def bench_colearn(clips: int, examples: int, repeats: int) -> dict[str, Any]:
    import numpy as np
    import soundfile
    from colearn_plugin_audio.kaldi import fbank
    from colearn_plugin_audio.modality import AudioModality

    waves = _clips(clips)
    out: dict[str, Any] = {}

    def per_clip() -> None:
        for wave in waves:
            fbank(wave, **FBANK)

    out["fbank_per_clip"] = _median_rate(per_clip, clips, repeats)
    out["fbank_batched"] = _median_rate(lambda: fbank(waves, **FBANK), clips, repeats)
    if torch.cuda.is_available():
        on_gpu = waves.cuda()
        out["fbank_batched_cuda"] = _median_rate(
            lambda: fbank(on_gpu, **FBANK), clips, repeats, sync=True
        )

    modality = AudioModality()
    rng = np.random.default_rng(0)
    arrays = [(0.1 * rng.standard_normal((2, 441000))).astype(np.float32) for _ in range(examples)]
    wavs = []
    for array in arrays:
        buf = io.BytesIO()
        soundfile.write(buf, array.T, 44100, format="WAV", subtype="PCM_16")
        wavs.append(buf.getvalue())
    per_example = modality.options["clips_per_example"]

    def pipeline_array() -> None:
        for i, array in enumerate(arrays):
            modality.preprocess((array, 44100), index=i)

    def pipeline_wav() -> None:
        for i, raw in enumerate(wavs):
            modality.preprocess(raw, index=i)

    out["pipeline_array"] = _median_rate(pipeline_array, examples * per_example, repeats)
    out["pipeline_wav"] = _median_rate(pipeline_wav, examples * per_example, repeats)
    out["pipeline_input"] = "10 s, 44.1 kHz, stereo; 3 clips per example"
    return out


def bench_torchaudio(clips: int, repeats: int) -> dict[str, Any]:
    # torchaudio's compiled extension may not match this torch; kaldi.fbank does not need it
    sys.modules.setdefault("torchaudio.lib._torchaudio", None)  # type: ignore[arg-type]
    try:
        import torchaudio
        from torchaudio.compliance import kaldi
    except Exception as exc:  # noqa: BLE001 - any import failure means "not measured"
        return {"torchaudio_fbank_per_clip": {"skipped": f"torchaudio unavailable ({exc})"}}
    waves = _clips(clips)

    def per_clip() -> None:
        for wave in waves:
            kaldi.fbank(wave[None], **FBANK)

    return {
        "torchaudio_fbank_per_clip": _median_rate(per_clip, clips, repeats),
        "torchaudio_version": torchaudio.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=64, help="2 s clips for the fbank rows")
    parser.add_argument("--examples", type=int, default=8, help="10 s examples for pipelines")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--only", choices=["colearn", "torchaudio"], default=None)
    parser.add_argument(
        "--clock", choices=sorted(CLOCKS), default="wall", help="cpu: process CPU time"
    )
    args = parser.parse_args(argv)
    global _clock
    _clock = CLOCKS[args.clock]
    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {
        "unit": "2 s clips per second",
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(),
            "threads": args.threads,
            "clock": args.clock,
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },
    }
    if args.only != "torchaudio":
        results.update(bench_colearn(args.clips, args.examples, args.repeats))
    if args.only != "colearn":
        results.update(bench_torchaudio(args.clips, args.repeats))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
