"""Generation: Griffin-Lim against signals with known answers, plots, and bin/generate."""

import os
import wave

import numpy as np
import pytest
import tensorflow as tf

from orca_gan import export_lib
from orca_gan import generate_lib
from orca_gan import models
from orca_gan import plotting
from orca_gan import spectral
from tests.helpers import run_app, tone, transform

SAMPLE_RATE_HZ = 16000
CONFIG = spectral.SpectrogramConfig()   # 3-s windows, 128 columns: hop 375 samples.
HOP = 375
TINY = models.ModelConfig(image_size=32, z_dim=8, fast_z=5, g_lstm_units=16,
                          d_lstm_units=16, gf_dim=16, df_dim=8)
TINY_TRANSFORM = spectral.SpectrogramConfig(image_size=32)


def frame_rms(audio, frame_s=0.01):
  """RMS in consecutive frames of `frame_s` and the frames' centre times."""
  size = int(round(frame_s * SAMPLE_RATE_HZ))
  frames = np.asarray(audio, np.float64)[:len(audio) // size * size].reshape(-1, size)
  return np.sqrt(np.mean(frames**2, axis=1)), (np.arange(len(frames)) + 0.5) * frame_s


def test_griffin_lim_recovers_a_tone_with_the_exact_length():
  freq_hz = 2531.25  # Centre of row 40.
  images = transform(tone(freq_hz, 6.0, SAMPLE_RATE_HZ), SAMPLE_RATE_HZ)
  assert images.shape == (2, 128, 128)
  audio = generate_lib.images_to_audio(images, CONFIG, iters=32, seed=0)
  assert audio.shape == (2 * 3 * SAMPLE_RATE_HZ,) and audio.dtype == np.float32
  spectrum = np.abs(np.fft.rfft(audio))
  peak_hz = np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE_HZ)[np.argmax(spectrum)]
  assert abs(peak_hz - freq_hz) < CONFIG.band_hz, peak_hz
  # The level comes back within 6 dB (a 0.5 sine has RMS 0.354) and is not normalised.
  assert 0.5 < np.sqrt(np.mean(audio**2)) / 0.354 < 2.0


def test_clicks_come_back_at_their_time():
  # Clicks at column centres (one in window 0, two in window 1) each fill one frame;
  # an inverse off by half a hop (the usual frame-centre vs frame-start slip) would
  # put the energy 187 samples away.
  audio = np.zeros(6 * SAMPLE_RATE_HZ, np.float32)
  clicks = [int((column + 0.5) * HOP) for column in (40, 130, 200)]
  audio[clicks] = 0.9
  result = generate_lib.images_to_audio(transform(audio, SAMPLE_RATE_HZ), CONFIG, 32, 0)
  for click in clicks:
    n = np.arange(click - 3 * HOP, click + 3 * HOP)
    energy = result[n].astype(np.float64)**2
    centroid = np.sum(energy * n) / np.sum(energy)
    assert abs(centroid - click) < HOP / 8, (click, centroid)
    assert np.sum(energy[np.abs(n - click) < HOP]) > 0.99 * np.sum(energy)


def test_amplitude_step_lands_at_its_time():
  audio = tone(1000.0, 6.0, SAMPLE_RATE_HZ)
  audio[:4 * SAMPLE_RATE_HZ] = 0.0  # Silent until 4.0 s (in the second window).
  result = generate_lib.images_to_audio(transform(audio, SAMPLE_RATE_HZ), CONFIG, 32, 0)
  envelope, times = frame_rms(result)
  onset_s = times[np.argmax(envelope > 0.5 * np.median(envelope[times > 4.5]))]
  assert abs(onset_s - 4.0) < 0.02, onset_s


def high_band_rms(audio, low_hz=3000.0):
  """RMS per 10 ms of `audio` above `low_hz`: where a click shows against a 1 kHz tone."""
  spectrum = np.fft.rfft(audio)
  spectrum[np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE_HZ) < low_hz] = 0
  return frame_rms(np.fft.irfft(spectrum, len(audio)))


def join_spike_ratio(audio, joins_s=(3.0, 6.0)):
  """Highest high-band RMS within 50 ms of a join over the highest elsewhere."""
  rms, times = high_band_rms(audio)
  near = np.any([np.abs(times - j) < 0.05 for j in joins_s], axis=0)
  inside = (times > 0.1) & (times < times[-1] - 0.1)  # Not the sequence's own ends.
  return rms[near].max() / rms[inside & ~near].max()


def test_windows_join_without_clicks():
  images = transform(tone(1000.0, 9.0, SAMPLE_RATE_HZ), SAMPLE_RATE_HZ)  # 3 windows.
  audio = generate_lib.images_to_audio(images, CONFIG, 32, 0)
  assert audio.shape == (9 * SAMPLE_RATE_HZ,)
  assert join_spike_ratio(audio) < 2.0
  # The measure sees a click: a phase jump (sign flip) at the 3-s join.
  flipped = audio.copy()
  flipped[3 * SAMPLE_RATE_HZ:] *= -1
  assert join_spike_ratio(flipped) > 5.0
  # And no dip: the envelope around the joins is like elsewhere.
  envelope, times = frame_rms(audio, frame_s=0.1)
  assert np.all(envelope[(times > 2.5) & (times < 6.5)] > 0.5 * np.median(envelope))


def test_loud_audio_is_normalised_quiet_audio_is_not():
  loud = np.full([1, 128, 128], 1.0, np.float32)  # 0 dB in every band.
  assert np.max(np.abs(generate_lib.images_to_audio(loud, CONFIG, 4, 0))) == (
      pytest.approx(generate_lib.NORMALISED_PEAK))
  quiet = transform(tone(1000.0, 3.0, SAMPLE_RATE_HZ, amplitude=0.05), SAMPLE_RATE_HZ)
  assert np.max(np.abs(generate_lib.images_to_audio(quiet, CONFIG, 4, 0))) < 0.2


def test_slerp_ends_exactly_and_keeps_the_norm_on_the_way():
  rng = np.random.default_rng(0)
  a = rng.normal(size=[3, 16]).astype(np.float32)
  b = rng.normal(size=[3, 16]).astype(np.float32)
  b *= np.linalg.norm(a, axis=-1, keepdims=True) / np.linalg.norm(b, axis=-1,
                                                                 keepdims=True)
  path = generate_lib.slerp(a, b, np.linspace(0, 1, 5)).numpy()
  assert path.shape == (5, 3, 16)
  np.testing.assert_array_equal(path[0], a)
  np.testing.assert_array_equal(path[-1], b)
  np.testing.assert_allclose(np.linalg.norm(path, axis=-1),
                             np.broadcast_to(np.linalg.norm(a, axis=-1), [5, 3]),
                             rtol=1e-5)
  # Equal angles between consecutive points, unlike a straight line.
  unit = path / np.linalg.norm(path, axis=-1, keepdims=True)
  angles = np.arccos(np.clip(np.sum(unit[1:] * unit[:-1], axis=-1), -1, 1))
  np.testing.assert_allclose(angles, np.broadcast_to(angles[0], angles.shape),
                             rtol=1e-4)
  # Parallel vectors: linear.
  np.testing.assert_allclose(generate_lib.slerp(a, 2 * a, [0.5]).numpy()[0], 1.5 * a,
                             rtol=1e-6)


def test_plot_sequences_writes_only_the_png(tmp_path):
  images = np.random.default_rng(0).uniform(-1, 1, [3, 2, 32, 32]).astype(np.float32)
  path = tmp_path / 'plot.png'
  plotting.plot_sequences(images, TINY_TRANSFORM, str(path), title='t',
                          row_labels=['a', 'b', 'c'])
  assert os.listdir(tmp_path) == ['plot.png']
  png = tf.io.decode_png(tf.io.read_file(str(path)))
  assert png.shape[0] > 3 * 100 and png.shape[1] > 2 * 150
  with pytest.raises(ValueError, match='2 row labels for 3 rows'):
    plotting.plot_sequences(images, TINY_TRANSFORM, str(path), row_labels=['a', 'b'])
  with pytest.raises(ValueError, match='images must have shape'):
    plotting.plot_sequences(images[..., :16], TINY_TRANSFORM, str(path))


@pytest.fixture(scope='module')
def export(tmp_path_factory):
  """A tiny untrained generator and discriminator, exported: {'generator': path, ...}."""
  generator = models.Generator(TINY)
  discriminator = models.Discriminator(TINY)
  z = tf.zeros([1, TINY.z_dim])
  generator(z, generator.start_state(z))
  discriminator(tf.zeros([1, 32, 32, 1]), discriminator.initial_state(1))
  return export_lib.export_models(generator, discriminator, TINY,
                                  transform=TINY_TRANSFORM,
                                  export_dir=str(tmp_path_factory.mktemp('export')))


def read_wav(path):
  with wave.open(str(path), 'rb') as f:
    return f.getframerate(), f.getnchannels(), f.getsampwidth(), f.getnframes()


@pytest.mark.slow
def test_cli_writes_plots_and_audio(export, tmp_path):
  out = tmp_path / 'out'
  result = run_app('generate', '--model', export['generator'], '--output_dir', str(out),
                   '--num_sequences', '2', '--seq_len', '2', '--griffin_lim_iters', '4',
                   '--interpolate', '--interpolate_seeds', '3,5',
                   '--interpolate_steps', '3')
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip().splitlines()[-1].startswith(
      f'generate: wrote 2 sequences of 2 windows (6 s each) to {out}')
  assert sorted(os.listdir(out)) == [
      'interpolation.png', 'interpolation_000.wav', 'interpolation_001.wav',
      'interpolation_002.wav', 'sequence_000.wav', 'sequence_001.wav',
      'sequences.png']
  for name, rows in (('sequences.png', 2), ('interpolation.png', 3)):
    png = tf.io.decode_png(tf.io.read_file(str(out / name)))
    # About 1.6 in (160 px) per row; 2 windows of 2.2 in plus the colour bar.
    assert rows * 130 < png.shape[0] < rows * 160 + 150, (name, png.shape)
    assert 500 < png.shape[1] < 700, (name, png.shape)
  for name in os.listdir(out):
    if name.endswith('.wav'):
      assert read_wav(out / name) == (SAMPLE_RATE_HZ, 1, 2, 2 * 3 * SAMPLE_RATE_HZ)


def test_interpolation_ends_at_the_generations_of_its_seeds(export, tmp_path):
  def run(**flags):
    config = generate_lib.GenerateConfig(model=export['generator'],
                                         output_dir=str(tmp_path), seq_len=3,
                                         griffin_lim_iters=0, **flags)
    return generate_lib.generate(config)

  walk = run(seed=3, num_sequences=2, interpolate=True, interpolate_seeds='3,5',
             interpolate_steps=4)
  from_b = run(seed=5, num_sequences=1)
  assert walk.images.shape == (2, 3, 32, 32, 1)
  assert walk.interpolation_images.shape == (4, 3, 32, 32, 1)
  np.testing.assert_allclose(walk.interpolation_images[0], walk.images[0], atol=1e-5)
  np.testing.assert_allclose(walk.interpolation_images[-1], from_b.images[0],
                             atol=1e-5)
  assert not np.allclose(walk.interpolation_images[1], walk.interpolation_images[0])


@pytest.mark.slow
@pytest.mark.parametrize('flags, message', [
    (['--model', '{not_saved_model}'],
     'error: {not_saved_model}: not an orca_gan SavedModel'),
    (['--model', '{discriminator}'],
     'error: {discriminator} is a discriminator SavedModel; expected a generator'),
    (['--num_sequences', '0'], 'error: --num_sequences must be at least 1, got 0'),
    (['--interpolate', '--interpolate_seeds', '3'],
     "error: --interpolate_seeds must be A,B (two integer seeds), got '3'"),
])
def test_cli_bad_input_is_one_line_and_writes_nothing(export, tmp_path, flags,
                                                      message):
  not_saved_model = tmp_path / 'plain_folder'
  not_saved_model.mkdir()
  (not_saved_model / 'notes.txt').write_text('not a model')
  names = {'not_saved_model': str(not_saved_model),
           'discriminator': export['discriminator']}
  flags = [f.format(**names) for f in flags]
  if '--model' not in flags:
    flags = ['--model', export['generator']] + flags
  out = tmp_path / 'out'
  result = run_app('generate', *flags, '--output_dir', str(out))
  lines = result.stderr.strip().splitlines()
  assert result.returncode != 0
  assert len(lines) == 1 and lines[0].startswith(message.format(**names)), lines
  assert not out.exists()
