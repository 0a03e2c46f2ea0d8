"""Tests of the synthetic hydrophone scenes (orca_gan.synth)."""

import functools
import os
import re
import wave

import numpy as np
import pytest

from orca_gan import audio_io
from orca_gan import synth
from tests.helpers import run_app

SAMPLE_RATE_HZ = 44100
# A minute of this seed holds an isolated whistle, pulsed call, click train and
# utterance (no other event within 50 ms) and a stretch of background alone.
SCENE_SEED = 13
SCENE_S = 60.0


@functools.lru_cache(maxsize=None)
def _scene(duration_s: float, sample_rate_hz: int, seed: int):
  """Cached `synth.synthesize_scene` (tests must not modify the result)."""
  return synth.synthesize_scene(duration_s, sample_rate_hz, seed)


def _minute():
  """The test scene: (audio, events)."""
  return _scene(SCENE_S, SAMPLE_RATE_HZ, SCENE_SEED)


def _isolated(events, kind: str, margin_s: float = 0.05):
  """Events of `kind` that no other event comes within `margin_s` of."""
  return [e for e in events if e.kind == kind and not any(
      other is not e and other.start_s < e.end_s + margin_s and
      e.start_s < other.end_s + margin_s for other in events)]


def _quiet_stretch(events, duration_s: float, length_s: float):
  """(start_s, end_s) of the first `length_s` without any event, or None."""
  t_s = 0.0
  for e in sorted(events, key=lambda e: e.start_s):
    if e.start_s - t_s >= length_s + 0.1:
      return t_s + 0.05, t_s + 0.05 + length_s
    t_s = max(t_s, e.end_s)
  if duration_s - t_s >= length_s + 0.1:
    return t_s + 0.05, t_s + 0.05 + length_s
  return None


def _segment(audio: np.ndarray, start_s: float, end_s: float,
             sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
  return audio[int(round(start_s * sample_rate_hz)):
               int(round(end_s * sample_rate_hz))].astype(np.float64)


def _power_spectrum(x: np.ndarray, frame: int = 2048) -> np.ndarray:
  """Mean power per FFT bin over 50 %-overlapping Hann frames (Welch)."""
  frames = np.lib.stride_tricks.sliding_window_view(x, frame)[::frame // 2]
  spectrum = np.fft.rfft(frames * np.hanning(frame), axis=-1)
  return np.mean(np.abs(spectrum)**2, axis=0)


def _crest_factor(x: np.ndarray) -> float:
  return float(np.max(np.abs(x)) / np.sqrt(np.mean(x**2)))


def test_same_seed_gives_identical_scene_and_other_seed_differs():
  audio, events = synth.synthesize_scene(5.0, 16000, seed=3)
  again, events_again = synth.synthesize_scene(5.0, 16000, seed=3)
  other, _ = synth.synthesize_scene(5.0, 16000, seed=4)
  np.testing.assert_array_equal(audio, again)
  assert events == events_again
  assert other.shape == audio.shape
  assert np.mean((other - audio)**2) > 0.1 * np.mean(audio**2)


@pytest.mark.parametrize('duration_s, sample_rate_hz, seed', [
    (SCENE_S, SAMPLE_RATE_HZ, SCENE_SEED), (2.5, 16000, 1), (1.23457, 22050, 2)])
def test_length_dtype_and_peak(duration_s, sample_rate_hz, seed):
  audio, _ = _scene(duration_s, sample_rate_hz, seed)
  assert audio.dtype == np.float32
  assert audio.shape == (round(duration_s * sample_rate_hz),)
  assert np.all(np.isfinite(audio))
  assert 0.1 < np.max(np.abs(audio)) <= 0.9


def test_rejects_bad_arguments():
  with pytest.raises(ValueError, match='duration_s'):
    synth.synthesize_scene(0.0)
  with pytest.raises(ValueError, match='sample_rate_hz'):
    synth.synthesize_scene(1.0, sample_rate_hz=8000)


def test_minute_holds_every_kind_with_sorted_events_inside_the_scene():
  audio, events = _minute()
  assert {e.kind for e in events} == set(synth.KINDS)
  starts = [e.start_s for e in events]
  assert starts == sorted(starts)
  for e in events:
    assert 0.0 <= e.start_s < e.end_s <= audio.size / SAMPLE_RATE_HZ, e
    assert 0.0 <= e.low_hz < e.high_hz <= SAMPLE_RATE_HZ / 2, e


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_scene_is_not_a_wall_of_sound(seed):
  audio, events = _scene(SCENE_S, 16000, seed)
  calls = [e for e in events if e.kind in ('whistle', 'pulsed_call')]
  assert 5 <= len(calls) <= 40
  assert sum(e.kind == 'boat' for e in events) <= 1
  assert sum(e.kind in ('clicks', 'speech') for e in events) <= 12
  covered = np.zeros(audio.size, dtype=bool)
  for e in calls:
    covered[int(e.start_s * 16000):int(e.end_s * 16000)] = True
  assert covered.mean() < 0.6


@pytest.mark.parametrize('kind', ['whistle', 'pulsed_call', 'speech'])
def test_event_energy_lies_in_its_band(kind):
  audio, events = _minute()
  candidates = _isolated(events, kind)
  assert candidates, f'no isolated {kind} in the test scene'
  event = max(candidates, key=lambda e: e.end_s - e.start_s)
  event_s = event.end_s - event.start_s
  quiet = _quiet_stretch(events, SCENE_S, max(event_s, 1.0))
  assert quiet is not None
  excess = (_power_spectrum(_segment(audio, event.start_s, event.end_s)) -
            _power_spectrum(_segment(audio, *quiet)))
  freqs_hz = np.fft.rfftfreq(2048, 1.0 / SAMPLE_RATE_HZ)
  in_band = (freqs_hz >= event.low_hz) & (freqs_hz <= event.high_hz)
  positive = np.maximum(excess, 0.0)
  assert positive[in_band].sum() > 0.9 * positive.sum()
  assert excess[in_band].sum() > 0.9 * excess.sum()
  # And the event stands clearly above the background in its band.
  background = _power_spectrum(_segment(audio, *quiet))
  assert excess[in_band].sum() > 3.0 * background[in_band].sum()


def test_whistles_keep_most_energy_below_8_khz():
  audio, events = _minute()
  for event in _isolated(events, 'whistle'):
    power = _power_spectrum(_segment(audio, event.start_s, event.end_s))
    freqs_hz = np.fft.rfftfreq(2048, 1.0 / SAMPLE_RATE_HZ)
    assert power[freqs_hz < 8000].sum() > 0.5 * power.sum()


def test_click_train_has_a_high_crest_factor():
  audio, events = _minute()
  candidates = _isolated(events, 'clicks')
  assert candidates, 'no isolated click train in the test scene'
  clicks = candidates[0]
  # Same length for both, so the background's expected peak is comparable.
  quiet = _quiet_stretch(events, SCENE_S, clicks.end_s - clicks.start_s)
  assert quiet is not None
  click_crest = _crest_factor(_segment(audio, clicks.start_s, clicks.end_s))
  quiet_crest = _crest_factor(_segment(audio, *quiet))
  assert quiet_crest < 6.0  # Gaussian background.
  assert click_crest > 3.0 * quiet_crest


def _read_wav(path):
  with wave.open(str(path), 'rb') as f:
    assert f.getnchannels() == 1
    assert f.getsampwidth() == 2
    rate_hz = f.getframerate()
    samples = np.frombuffer(f.readframes(f.getnframes()), dtype='<i2')
  return rate_hz, samples


@pytest.mark.parametrize('name', ['clip.wav', 'CLIP.WAV'])
def test_write_audio_wav_round_trip(tmp_path, name):
  rng = np.random.default_rng(0)
  audio = np.concatenate([[-1.0, 1.0, 0.0, 1.5, -2.0],
                          rng.uniform(-1.0, 1.0, 12345)]).astype(np.float32)
  path = tmp_path / name
  audio_io.write_audio(str(path), audio, 22050)
  rate_hz, samples = _read_wav(path)
  assert rate_hz == 22050
  assert samples.size == audio.size
  expected = np.clip(audio.astype(np.float64), -1.0, 1.0)
  np.testing.assert_allclose(samples / 32767.0, expected, rtol=0, atol=0.5 / 32767 + 1e-9)
  assert samples[0] == -32767 and samples[1] == 32767 and samples[3] == 32767
  assert os.listdir(tmp_path) == [name]  # No temporary file left behind.


def test_write_audio_flac_round_trip(tmp_path):
  tf = pytest.importorskip('tensorflow')
  tfio = pytest.importorskip('tensorflow_io')
  audio = np.sin(np.arange(8000) * 0.05) * 0.7
  audio_io.write_audio(str(tmp_path / 'clip.flac'), audio, 16000)
  audio_io.write_audio(str(tmp_path / 'clip.wav'), audio, 16000)
  data = (tmp_path / 'clip.flac').read_bytes()
  assert data[:4] == b'fLaC'
  decoded = tfio.audio.decode_flac(tf.constant(data), dtype=tf.int16).numpy()[:, 0]
  _, from_wav = _read_wav(tmp_path / 'clip.wav')
  np.testing.assert_array_equal(decoded, from_wav)


def test_write_audio_rejects_unknown_extension(tmp_path):
  path = str(tmp_path / 'clip.mp3')
  with pytest.raises(ValueError, match=re.escape(path)):
    audio_io.write_audio(path, np.zeros(10), 16000)
  assert not os.listdir(tmp_path)


def test_write_audio_leaves_old_file_intact_when_rename_fails(tmp_path, monkeypatch):
  path = tmp_path / 'clip.wav'
  audio_io.write_audio(str(path), np.full(100, 0.5), 16000)
  before = path.read_bytes()

  def failing_replace(src, dst):
    raise OSError('disk trouble')

  monkeypatch.setattr(os, 'replace', failing_replace)
  with pytest.raises(OSError, match='disk trouble'):
    audio_io.write_audio(str(path), np.full(200, -0.5), 16000)
  assert path.read_bytes() == before
  assert os.listdir(tmp_path) == ['clip.wav']


def _read_events(path):
  with open(path, encoding='utf-8') as f:
    header, *lines = f.read().splitlines()
  assert header.split('\t') == ['file', 'kind', 'start_s', 'end_s', 'low_hz', 'high_hz']
  return [line.split('\t') for line in lines]


def test_make_demo_corpus_writes_scenes_and_events(tmp_path):
  output_dir = tmp_path / 'demo' / 'nested'
  paths = synth.make_demo_corpus(str(output_dir), num_files=2, duration_s=31.0,
                                 sample_rate_hz=16000, seed=5)
  assert paths == [str(output_dir / 'scene_000.wav'), str(output_dir / 'scene_001.wav')]
  scenes = []
  for path in paths:
    rate_hz, samples = _read_wav(path)
    assert rate_hz == 16000
    assert samples.size == 31 * 16000
    scenes.append(samples)
  assert not np.array_equal(scenes[0], scenes[1])  # Each file has its own seed.
  rows = _read_events(output_dir / 'events.tsv')
  for name in ('scene_000.wav', 'scene_001.wav'):
    assert {row[1] for row in rows if row[0] == name} == set(synth.KINDS)
  for _, kind, start_s, end_s, low_hz, high_hz in rows:
    assert kind in synth.KINDS
    assert 0.0 <= float(start_s) < float(end_s) <= 31.0
    assert 0.0 <= float(low_hz) < float(high_hz) <= 8000.0
  assert sorted(os.listdir(output_dir)) == ['events.tsv', 'scene_000.wav',
                                            'scene_001.wav']


def test_make_demo_corpus_keeps_existing_files(tmp_path):
  kwargs = dict(num_files=2, duration_s=2.0, sample_rate_hz=16000, seed=0)
  paths = synth.make_demo_corpus(str(tmp_path), **kwargs)
  tsv = tmp_path / 'events.tsv'
  mtimes = {p: os.stat(p).st_mtime_ns for p in paths + [str(tsv)]}
  events_text = tsv.read_text()
  assert synth.make_demo_corpus(str(tmp_path), **kwargs) == paths
  assert {p: os.stat(p).st_mtime_ns for p in mtimes} == mtimes
  # A file of the wrong size (e.g. an interrupted copy) is written again; others stay.
  with open(paths[1], 'r+b') as f:
    f.truncate(100)
  synth.make_demo_corpus(str(tmp_path), **kwargs)
  assert os.path.getsize(paths[1]) == 44 + 2 * 2 * 16000
  assert os.stat(paths[0]).st_mtime_ns == mtimes[paths[0]]
  assert tsv.read_text() == events_text


@pytest.mark.slow
def test_cli_writes_scenes_and_rejects_bad_flags_in_one_line(tmp_path):
  result = run_app('synthesize_scene', '--output_dir', str(tmp_path / 'a'), '--num_files',
                   '2', '--duration_s', '2', '--sample_rate', '16000')
  assert result.returncode == 0, result.stderr
  assert sorted(os.listdir(tmp_path / 'a')) == ['events.tsv', 'scene_000.wav',
                                               'scene_001.wav']
  with wave.open(str(tmp_path / 'a' / 'scene_000.wav')) as f:
    assert (f.getframerate(), f.getnframes()) == (16000, 32000)
  bad = run_app('synthesize_scene', '--output_dir', str(tmp_path / 'b'), '--num_files',
                'two')
  assert bad.returncode == 2
  assert bad.stderr.strip().splitlines() == [
      "error: flag --num_files=two: invalid literal for int() with base 10: 'two'"]
  assert not (tmp_path / 'b').exists()
