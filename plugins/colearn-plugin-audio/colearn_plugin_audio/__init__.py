"""colearn audio plugin: the ``audio`` modality (ImageBind's log-mel clips) and ``audio/ast``.

:mod:`.kaldi` is a batched torch implementation of Kaldi's fbank and :mod:`.resample` of
torchaudio's windowed-sinc resampling, so neither torchaudio nor ffmpeg is needed; files are
decoded with soundfile. Heavy modules are imported inside the hooks, so importing this package
registers names only.
"""

from __future__ import annotations

from colearn_core import hookimpl

__version__ = "0.1.0"
__all__ = ["register_encoders", "register_modalities"]


@hookimpl
def register_modalities(register):
    from .modality import AudioModality

    register("audio", AudioModality)


@hookimpl
def register_encoders(register):
    from .encoder import AudioAST

    register("audio/ast", AudioAST)
