"""The transform against a numpy reference and against signals with known answers."""

import math

import numpy as np
import pytest
import tensorflow as tf

from orca_gan import spectral
from tests.helpers import transform

CONFIG = spectral.SpectrogramConfig()


def numpy_reference(audio, sample_rate_hz, config=CONFIG):
  """The transform as its docstring defines it, written independently in numpy."""
  size = config.image_size
  hop_s = config.window_s / size
  frame = 2 * int(round(hop_s * sample_rate_hz))            # samples, 2 columns
  window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(frame) / frame)
  band_hz = config.sample_rate_hz / 2 / size
  count = int(len(audio) // (config.window_s * sample_rate_hz))
  padded = np.concatenate([np.zeros(frame), audio, np.zeros(frame)])
  freqs = np.fft.rfftfreq(frame, 1 / sample_rate_hz)
  centres = (np.arange(size) + 0.5) * band_hz
  images = np.zeros([count, size, size])
  for w in range(count):
    for c in range(size):
      centre = (w * size + c + 0.5) * hop_s * sample_rate_hz
      first = int(round(centre - frame / 2)) + frame
      spectrum = np.fft.rfft(padded[first:first + frame] * window)
      power = 2 * np.abs(spectrum)**2 / (frame * np.sum(window**2))
      for k in range(size):
        weight = np.clip(1 - np.abs(freqs - centres[k]) / band_hz, 0, 1)
        if k == 0:
          weight[freqs <= centres[0]] = 1
        if k == size - 1:
          weight[freqs >= centres[-1]] = 1
        weight[freqs > config.sample_rate_hz / 2] = 0
        images[w, k, c] = np.sum(weight * power)
  db = 10 * np.log10(np.maximum(images, 1e-20))
  return np.clip(2 * (db - config.db_min) / (config.db_max - config.db_min) - 1, -1, 1)


def test_matches_numpy_reference():
  config = spectral.SpectrogramConfig(image_size=32, window_s=0.5)
  rng = np.random.default_rng(0)
  audio = rng.normal(0, 0.1, 22050).astype(np.float32)      # 1 s at 22.05 kHz
  expected = numpy_reference(audio, 22050, config)
  actual = transform(audio, 22050, config)
  assert actual.shape == (2, 32, 32)
  np.testing.assert_allclose(actual, expected, atol=2e-4)


@pytest.mark.parametrize('sample_rate_hz', [16000, 22050, 44100, 48000])
@pytest.mark.parametrize('freq_hz', [440.0, 2531.25, 6100.0])
def test_tone_lands_in_its_row_at_its_level(sample_rate_hz, freq_hz):
  audio = 0.5 * np.sin(2 * np.pi * freq_hz * np.arange(3 * sample_rate_hz) /
                       sample_rate_hz)
  image = transform(audio.astype(np.float32), sample_rate_hz)[0]
  rows = image.mean(axis=1)
  assert rows.argmax() == math.floor(freq_hz / CONFIG.band_hz)
  # The bands share the tone's power between them without loss: their sum is the
  # tone's mean square, whatever the input rate.
  power = tf.pow(10.0, ((rows + 1) / 2 * (CONFIG.db_max - CONFIG.db_min) +
                        CONFIG.db_min) / 10).numpy()
  assert 10 * np.log10(power.sum()) == pytest.approx(10 * np.log10(0.5**2 / 2), abs=0.1)


@pytest.mark.parametrize('sample_rate_hz', [16000, 44100])
@pytest.mark.parametrize('click_s', [0.01, 4.0, 5.555, 8.99])
def test_click_lands_in_its_column(sample_rate_hz, click_s):
  audio = np.zeros(9 * sample_rate_hz, np.float32)
  audio[int(round(click_s * sample_rate_hz))] = 1.0
  images = transform(audio, sample_rate_hz)
  window = int(click_s // CONFIG.window_s)
  column = int((click_s - window * CONFIG.window_s) // CONFIG.hop_s)
  loudest = np.unravel_index(images[:, 10:].mean(axis=1).argmax(), (3, 128))
  assert loudest == (window, column)


def test_same_image_at_any_input_rate():
  def scene(sample_rate_hz):
    t = np.arange(6 * sample_rate_hz) / sample_rate_hz
    sweep = np.sin(2 * np.pi * (1000 * t + 300 * t**2))       # 1 kHz rising 600 Hz/s
    return (0.3 * sweep + 0.1 * np.sin(2 * np.pi * 5000 * t)).astype(np.float32)

  reference = transform(scene(16000), 16000)
  for rate in (22050, 44100, 48000):
    other = transform(scene(rate), rate)
    loud = reference > -0.5
    assert np.abs(other - reference)[loud].mean() < 0.01, rate


def test_inverse_returns_the_band_power():
  config = CONFIG
  rng = np.random.default_rng(1)
  # A smooth spectrum (band-to-band changes well below the triangle width).
  rows = np.cumsum(rng.normal(0, 0.01, config.image_size))
  images = np.clip(np.tile(rows[:, None], [1, config.image_size]) - 0.2, -0.9, 0.9)
  magnitude = spectral.images_to_magnitude(tf.constant(images, tf.float32), config)
  geometry = spectral.frame_geometry(config, config.sample_rate_hz)
  assert magnitude.shape == (config.image_size, geometry.fft_length // 2 + 1)
  hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(geometry.frame_length) /
                            geometry.frame_length)
  power = 2 * magnitude.numpy()**2 / (geometry.fft_length * np.sum(hann**2))
  bands = power[:, :geometry.num_bins] @ spectral.band_matrix(config, 16000)
  again = spectral.power_to_images(tf.constant(bands.T), config).numpy()
  np.testing.assert_allclose(again[2:-2], images[2:-2], atol=0.01)


def test_num_windows():
  assert spectral.num_windows(48000, 16000, 3.0) == 1
  assert spectral.num_windows(47999, 16000, 3.0) == 0
  assert spectral.num_windows(47999, 16000, 3.0, pad_short=True) == 1
  assert spectral.num_windows(0, 16000, 3.0, pad_short=True) == 0
  assert spectral.num_windows(44100 * 3600, 44100, 3.0) == 1200


def test_inverse_stft_geometry_and_bad_config():
  assert spectral.stft_geometry(CONFIG) == {
      'frame_length': 750, 'frame_step': 375, 'fft_length': 750}
  with pytest.raises(ValueError, match='db_max'):
    spectral.SpectrogramConfig(db_min=0.0, db_max=-10.0)
