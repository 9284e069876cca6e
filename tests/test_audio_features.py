import numpy as np
import pytest

from cnnrnn.audio import AudioError, load_audio, pad_or_trim
from cnnrnn.cnnrnn.data import extract_spectrograms, load_images
from cnnrnn.features import SpectrogramConfig, audio_to_image, log_mel, mel_power, read_png

from conftest import write_wav

CFG = SpectrogramConfig(n_mels=64, n_fft=1024, hop_length=256, duration=2.0, image_size=[48, 96])


@pytest.mark.parametrize("sr", [8000, 22050, 48000])
def test_resampled_to_the_config_rate(tmp_path, real_waveform, sr):
    import librosa

    y, file_sr = real_waveform
    path = write_wav(tmp_path / f"x{sr}.wav", librosa.resample(y, orig_sr=file_sr, target_sr=sr), sr)
    out, out_sr = load_audio(path, 16000)
    assert out_sr == 16000 and out.dtype == np.float32
    assert abs(len(out) - len(y)) <= 2  # same duration in seconds


def test_stereo_is_averaged_to_mono(tmp_path, real_waveform):
    y, sr = real_waveform
    path = write_wav(tmp_path / "st.wav", np.stack([y, 0.5 * y], axis=1), sr, subtype="FLOAT")
    out, _ = load_audio(path, sr)
    assert out.ndim == 1
    np.testing.assert_allclose(out, 0.75 * y, atol=1e-6)


def test_bad_audio_raises_with_a_reason(tmp_path, real_wav, real_waveform):
    empty = write_wav(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    silent = write_wav(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
    nan = write_wav(tmp_path / "nan.wav", np.full(16000, np.nan, np.float32), 16000, subtype="FLOAT")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage" * 3)
    zero = tmp_path / "zero.wav"
    zero.write_bytes(b"")
    for path, reason in [(empty, "empty"), (silent, "silent"), (nan, "not_finite"), (corrupt, "unreadable"),
                         (zero, "unreadable"), (tmp_path / "nope.wav", "missing")]:
        with pytest.raises(AudioError) as info:
            load_audio(path, 16000)
        assert info.value.reason == reason, path


def test_truncated_wav_keeps_what_is_there(tmp_path, real_wav):
    data = real_wav.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2])  # header still claims the full length
    y, _ = load_audio(cut, 16000)
    full, _ = load_audio(real_wav, 16000)
    assert 0 < len(y) < len(full)
    np.testing.assert_allclose(y, full[: len(y)], atol=1e-6)


def test_pad_or_trim():
    y = np.arange(5, dtype=np.float32)
    np.testing.assert_array_equal(pad_or_trim(y, 3), [0, 1, 2])
    np.testing.assert_array_equal(pad_or_trim(y, 7), [0, 1, 2, 3, 4, 0, 0])
    np.testing.assert_array_equal(pad_or_trim(y, 12, "reflect"), [0, 1, 2, 3, 4, 4, 3, 2, 1, 0, 0, 1])


def test_log_mel_matches_librosa(real_waveform):
    import librosa

    y, sr = real_waveform
    cfg = SpectrogramConfig(sr=sr, fmin=20.0, fmax=7600.0)
    ref = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                                         n_mels=cfg.n_mels, fmin=20.0, fmax=7600.0)
    ours = mel_power(y, cfg)
    assert ours.shape == ref.shape == (128, 1 + len(y) // 512) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-6 * ref.max())
    db = log_mel(y, cfg)
    assert db.max() == 0.0 and db.min() >= -cfg.top_db


def test_image_shape_orientation_and_colormap(real_wav):
    image = audio_to_image(real_wav, CFG)
    assert image.shape == (48, 96, 3) and image.dtype == np.uint8
    gray = audio_to_image(real_wav, SpectrogramConfig(**{**CFG.__dict__, "colormap": "gray"}))
    # speech energy sits in the low mel bands, drawn at the bottom of the image
    assert gray[-12:].mean() > gray[:12].mean()
    assert not np.array_equal(image[..., 0], image[..., 2])  # coloured, not grey
    with pytest.raises(ValueError, match="unknown colormap"):
        audio_to_image(real_wav, SpectrogramConfig(**{**CFG.__dict__, "colormap": "rainbowz"}))


def test_extract_counts_bad_files_and_resumes(tmp_path, sample_dir):
    wavs = sorted((sample_dir / "wav" / "Session01").glob("*.wav"))[:6]
    bad = write_wav(tmp_path / "in" / "silent.wav", np.zeros(8000, np.float32), 16000)
    corrupt = tmp_path / "in" / "corrupt.wav"
    corrupt.write_bytes(b"not audio")
    items = [(w.stem, w) for w in wavs] + [("silent", bad), ("corrupt", corrupt)]
    out = tmp_path / "png"
    report = extract_spectrograms(items, out, CFG, workers=2, progress=False, chunk_size=2)
    assert sorted(report.written) == sorted(w.stem for w in wavs)
    assert report.failed == {"silent": ["silent"], "unreadable": ["corrupt"]}
    assert sorted(p.stem for p in out.glob("*.png")) == sorted(w.stem for w in wavs)

    # An interrupted run: one PNG missing, a stray temp file left; the rerun finishes the job
    victim = out / f"{wavs[0].stem}.png"
    expected = read_png(victim)
    victim.unlink()
    (out / f".{victim.name}.abc.tmp").write_bytes(b"half")
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    again = extract_spectrograms(items, out, CFG, workers=1, progress=False)
    assert again.written == [wavs[0].stem]
    assert not list(out.glob('.*.tmp'))  # the interrupted run's temp file is cleaned up
    assert len(again.existing) == 5
    np.testing.assert_array_equal(read_png(victim), expected)
    assert all(p.stat().st_mtime_ns == mtimes[p.name] for p in out.glob("*.png") if p.name in mtimes)

    images = load_images(sorted(out.glob("*.png")), CFG.image_size, progress=False)
    assert images.shape == (6, 48, 96, 3) and images.dtype == np.uint8
