"""Stages 1–3 of the CNNRNN job: split, spectrograms, pack. Each reads the previous stage's files.

====================  ============================================  ==========================================
stage                 reads                                         writes
====================  ============================================  ==========================================
:func:`split`         the corpus                                    train.json, test.json, train_audio.json,
                                                                    test_audio.json, labels.json, split_report.json
:func:`spectrograms`  \\*_audio.json, labels.json                    spectrograms/<id>.png, data_train.pickle,
                                                                    data_test.pickle, spectrogram_report.json
:func:`pack`          data_\\*.pickle, the PNGs                       train_final.pickle, test_final.pickle
====================  ============================================  ==========================================

The file names are the original CNNRNN code's. Every stage writes the config it ran with to ``config.json``
when it differs from the one there, so a later stage (or ``cnnrnn predict``) renders audio the same way.
Reruns resume: existing PNGs are kept when the audio they were made from is unchanged (its content fingerprint,
``spectrograms/sources.json``), and ``pack`` is skipped when its pickles are newer than their inputs.

The stages live in their own modules, re-exported here (the family's ``data`` names):
:mod:`~cnnrnn.cnnrnn.splitting` (stage 1), :mod:`~cnnrnn.cnnrnn.render` (stage 2), :mod:`~cnnrnn.cnnrnn.packing`
(stage 3), :mod:`~cnnrnn.cnnrnn.packed` (the packed arrays' storage), :mod:`~cnnrnn.cnnrnn.shards` (stage 2 in N
parts, ``--shard K/N``, merged by ``pack``) and :mod:`~cnnrnn.cnnrnn.run_folder` (what makes a folder a run).

Every stage claims the run folder first (:func:`claim_run`: a new or empty folder, or a CNNRNN run) and holds its
own lock while it writes (:func:`cnnrnn.outputs.stage_lock`); temporaries a killed run of the stage left are removed
when it starts again.
"""
from __future__ import annotations

from .packed import (COPIES_FILE, DISK_MARGIN, IMAGES_FILES, PACKED_FILE, DiskSpaceError, PackedArrayError,
                     check_disk_space, create_rows_file, load_packed, npy_header, open_packed, read_packed_manifest,
                     release_pages)
from .packing import pack
from .render import NORM_FILE, ExtractReport, extract_spectrograms, load_images, normalization_stats, spectrograms
from .run_folder import (NO_SESSION, RUN_FILES, RUN_KIND, SOURCES_FILE, claim_run, is_run_folder,
                         record_config)
from .shards import ShardError, merge_shards, parse_shard, render_shard, shard_of, spectrogram_stats
from .splitting import SplitResult, split, split_per_session

__all__ = ["COPIES_FILE", "DISK_MARGIN", "IMAGES_FILES", "NORM_FILE", "NO_SESSION", "PACKED_FILE", "RUN_FILES",
           "RUN_KIND", "SOURCES_FILE", "DiskSpaceError", "ExtractReport", "PackedArrayError", "ShardError",
           "SplitResult", "check_disk_space", "claim_run", "create_rows_file", "extract_spectrograms",
           "is_run_folder", "load_images", "load_packed", "merge_shards", "normalization_stats", "npy_header",
           "open_packed", "pack", "parse_shard", "read_packed_manifest", "record_config", "release_pages",
           "render_shard", "shard_of", "spectrogram_stats", "spectrograms", "split", "split_per_session"]
