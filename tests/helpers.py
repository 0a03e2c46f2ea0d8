"""Helpers for the tests: tiny audio writers and running the apps."""

import os
import subprocess
import sys
import wave

import numpy as np
import tensorflow as tf

from orca_gan import spectral

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), 'shared', 'data')


def write_wav(path, audio, sample_rate_hz):
  """Writes float audio in [-1, 1], shape [samples] or [samples, channels], as 16-bit."""
  audio = np.asarray(audio, np.float64)
  if audio.ndim == 1:
    audio = audio[:, None]
  pcm = np.clip(np.round(audio * 32767), -32768, 32767).astype('<i2')
  with wave.open(str(path), 'wb') as f:
    f.setnchannels(audio.shape[1])
    f.setsampwidth(2)
    f.setframerate(sample_rate_hz)
    f.writeframes(pcm.tobytes())
  return str(path)


def tone(freq_hz, duration_s, sample_rate_hz, amplitude=0.5):
  t = np.arange(int(round(duration_s * sample_rate_hz))) / sample_rate_hz
  return amplitude * np.sin(2 * np.pi * freq_hz * t)


def run_app(name, *args, **kwargs):
  """Runs bin/<name> in a fresh Python process; returns the CompletedProcess."""
  return subprocess.run([sys.executable, os.path.join(REPO, 'bin', name), *args],
                        capture_output=True, text=True, cwd=kwargs.pop('cwd', REPO),
                        timeout=kwargs.pop('timeout', 300), **kwargs)


def transform(audio, sample_rate_hz, config=None):
  """Runs the TF transform over all whole windows of `audio` (zeros outside)."""
  config = config or spectral.SpectrogramConfig()
  geometry = spectral.frame_geometry(config, sample_rate_hz)
  count = spectral.num_windows(len(audio), sample_rate_hz, config.window_s)
  start, stop = spectral.segment_bounds(0, count, geometry)
  segment = np.zeros(stop - start, np.float32)
  lo, hi = max(start, 0), min(stop, len(audio))
  segment[lo - start:hi - start] = audio[lo:hi]
  offsets = spectral.frame_offsets(0, count, config, geometry)
  return spectral.audio_to_images(tf.constant(segment), tf.constant(offsets), config,
                                  sample_rate_hz).numpy()
