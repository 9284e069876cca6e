"""Speed-perturbed training copies of the CNNRNN family (``train.speed_perturb``).

Speed perturbation (Ko, Peddinti, Povey & Khudanpur, "Audio augmentation for speech recognition", Interspeech
2015; Kaldi's ``utils/data/perturb_data_dir_speed_3way.sh``) adds, for every training utterance, copies whose
waveform is played 0.9 and 1.1 times as fast (:func:`cnnrnn.audio.change_speed`, audiomentations). The copies
are made offline, once, and are deterministic (no random draw: same audio and factors, same copies).

How a copy is made, per factor ``f`` (:func:`copy_log_mels`, :func:`copy_images`): the file is loaded at
``spectrogram.sr``, played ``f`` times as fast, cut/padded to ``spectrogram.duration`` like the original, and
turned into a log-mel and an image with the run's settings. Normalisation follows the Kaldi convention that a
speed-perturbed copy is another speaker (``sp0.9-<speaker>``): under ``speaker`` normalisation, the copies of
one speaker at one factor form the pseudo-speaker :func:`copy_speaker` and are standardised with their own
statistics (no labels), so that a copy looks like a test speaker does (each speaker centred on their own
statistics); ``global`` uses the global statistics of the *un-perturbed* training audio, ``utterance`` each
copy's own frames. The statistics the run keeps for real audio come from the un-perturbed audio only.

Where the copies go: :func:`cnnrnn.cnnrnn.train.cross_validate` takes them as ``train_copies``
``(n_factors, N, H, W, 3)``, aligned with the images, and adds ``train_copies[:, fit_idx]`` to the fit of each
fold only: never to the rows that choose the epoch (the inner held-out speaker) or that are scored, so a copy
never crosses its source's fold. The CLI's spectrogram stage renders ``spectrograms/<id>__speed0.9.png`` for
the *train* split's utterances only, and ``pack`` puts them in ``train_final.pickle`` (``speed_copies``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..features import SpectrogramConfig, audio_log_mel, image_of_log_mel
from .config import TrainConfig

#: Train-table keys (``data_train.pickle``, ``train_final.pickle``): the copies (PNG paths per factor, then
#: ``(n_factors, N, H, W, 3) uint8`` once packed), their factors and their method.
COPIES_KEY = "speed_copies"
FACTORS_KEY = "speed_factors"
METHOD_KEY = "speed_method"


def copy_name(name: str, factor: float, method: str = "speed") -> str:
    """The id of a copy: ``<name>__<method><factor>`` (``03a01Fa__speed0.9``)."""
    return f"{name}__{method}{factor:g}"


def copy_speaker(speaker: str | None, factor: float, method: str = "speed") -> str | None:
    """The pseudo-speaker of ``speaker``'s copies at ``factor`` (:func:`copy_name`); ``None`` stays ``None``
    (an unknown speaker's copies fall back to the global statistics, as the original does)."""
    return None if speaker is None or str(speaker) == "" else copy_name(str(speaker), factor, method)


def copy_items(records: Sequence[dict], cfg: TrainConfig) -> list[tuple]:
    """The copies to render for the CLI's train split: ``(copy_id, audio_path, copy_speaker, factor, method)``
    per record ``{id, audio_path, speaker}`` and factor of ``cfg.speed_perturb`` (factor-major); ``[]`` when off."""
    method = cfg.speed_perturb_method
    return [(copy_name(r["id"], f, method), r["audio_path"], copy_speaker(r.get("speaker"), f, method), f, method)
            for f in cfg.speed_perturb for r in records]


def copy_stats(stats, items: Sequence[tuple], spectrogram: SpectrogramConfig, progress: bool = False):
    """``stats`` with the pseudo-speakers of the copies added (``speaker`` normalisation of the CLI's copies).

    Args:
        stats: the run's :class:`cnnrnn.normalize.NormStats` of the un-perturbed audio.
        items: :func:`copy_items` ``(copy_id, audio_path, copy_speaker, factor, method)``.
        spectrogram: the run's log-mel settings.

    Returns:
        A new :class:`~cnnrnn.normalize.NormStats` (:func:`cnnrnn.normalize.with_speakers`): the global and
        real speakers' statistics unchanged, one set per pseudo-speaker from its copies (unusable audio left
        out, as for the originals).
    """
    from ..audio import load_each
    from ..normalize import with_speakers

    mels, names = [], []
    for key in dict.fromkeys((f, m) for _, _, _, f, m in items):  # per (factor, method), in order
        group = [it for it in items if (it[3], it[4]) == key]
        kept, got, _ = load_each([it[1] for it in group],
                                 lambda p: audio_log_mel(p, spectrogram, speed=key[0], speed_method=key[1]),
                                 desc=f"statistics x{key[0]:g}", progress=progress)
        mels += [m.T for m in got]
        names += [group[i][2] for i in kept]
    return with_speakers(stats, mels, names)


def copy_log_mels(paths: Sequence, spectrogram: SpectrogramConfig, cfg: TrainConfig) -> list[list[np.ndarray]]:
    """The log-mels of every file's copies (:func:`cnnrnn.features.audio_log_mel` with ``speed``).

    Args:
        paths: audio files that load (their originals were usable: a copy of a usable file is too).
        spectrogram: the run's log-mel settings. cfg: gives ``speed_perturb`` and ``speed_perturb_method``.

    Returns:
        ``mels[c][i]``: ``(n_mels, frames) float32`` dB of file ``i`` at factor ``cfg.speed_perturb[c]``.

    Raises:
        AudioError: a file cannot be read.
    """
    return [[audio_log_mel(p, spectrogram, speed=f, speed_method=cfg.speed_perturb_method) for p in paths]
            for f in cfg.speed_perturb]


def copy_images(mels: Sequence[Sequence[np.ndarray]], speakers: Sequence[str | None],
                spectrogram: SpectrogramConfig, cfg: TrainConfig, stats=None,
                rows: Sequence[int] | None = None) -> np.ndarray:
    """The images of the copies, normalised as the module docstring says, aligned with the originals.

    Args:
        mels: from :func:`copy_log_mels`, ``mels[c][i]`` for the ``N`` items.
        speakers: ``N`` speakers of the originals (``None`` = unknown).
        spectrogram: the run's image settings (``normalization``, ``norm_range``, ``image_size``, ...).
        cfg: gives the factors and method (the pseudo-speaker names).
        stats: the run's :class:`cnnrnn.normalize.NormStats` of the un-perturbed audio (``global``/``speaker``
            modes), from :func:`cnnrnn.normalize.fit` with the training items as ``reference``.
        rows: the items whose copies are made (a fold's training rows); the copies' speaker statistics come
            from these rows only; the other rows stay zero (``cross_validate`` never reads them). Default: all.

    Returns:
        ``(n_factors, N, H, W, 3) uint8`` BGR.

    Raises:
        ValueError: ``mels`` does not hold one list of ``N`` log-mels per factor.
        NormalizationError: ``global``/``speaker`` normalisation without ``stats``.
    """
    from ..normalize import NormalizationError, with_speakers

    n, factors, method = len(speakers), list(cfg.speed_perturb), cfg.speed_perturb_method
    if len(mels) != len(factors) or any(len(m) != n for m in mels):
        raise ValueError(f"expected {len(factors)} lists of {n} log-mels (one per factor of train.speed_perturb), "
                         f"got {[len(m) for m in mels]}")
    rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    height, width = spectrogram.image_size
    out = np.zeros((len(factors), n, int(height), int(width), 3), np.uint8)
    names = [[copy_speaker(speakers[i], f, method) for i in rows] for f in factors]
    if spectrogram.uses_stats and stats is None:
        raise NormalizationError(f"{spectrogram.normalization} normalisation of the copies needs the run's statistics")
    if spectrogram.normalization == "speaker":
        stats = with_speakers(stats, [mels[c][i].T for c in range(len(factors)) for i in rows],
                              [s for per_factor in names for s in per_factor])
    for c in range(len(factors)):
        for j, i in enumerate(rows):
            out[c, i] = image_of_log_mel(mels[c][i], spectrogram, names[c][j], stats)
    return out


def packed_copies(table: dict, cfg: TrainConfig) -> np.ndarray | None:
    """The copies of a packed train table (``train_final.pickle``), checked against the config.

    Returns:
        ``(n_factors, N, H, W, 3) uint8``, or ``None`` when ``cfg.speed_perturb`` is off.

    Raises:
        ValueError: the config asks for copies the table lacks (other factors or method): the spectrograms
            and pack stages ran with another config and must run again.
    """
    if not cfg.speed_perturb:
        return None
    made = (list(table.get(FACTORS_KEY) or []), table.get(METHOD_KEY))
    if table.get(COPIES_KEY) is None or made != (list(cfg.speed_perturb), cfg.speed_perturb_method):
        raise ValueError(f"train.speed_perturb {cfg.speed_perturb} ({cfg.speed_perturb_method}) but the train table "
                         f"holds copies at {made[0] or 'no factor'} ({made[1]}): run the spectrograms and pack stages "
                         "again with this config")
    return np.asarray(table[COPIES_KEY], np.uint8)
