"""The one audio -> spectrogram-image transform, its inverse, and window arithmetic.

Everything that turns audio into model input (the TFRecord writer, training, generation,
embedding) goes through `audio_to_images`; everything that turns model output back into
sound goes through `images_to_magnitude`. The geometry is defined in seconds and hertz,
so the same image comes out of any input sample rate without resampling:

* A recording is cut into consecutive windows of `window_s` seconds; window `i` starts at
  `i * window_s`. `num_windows` is the only place that says how many fit.
* Image width = time: column `j` of a window covers `[j, j + 1) * hop_s` with
  `hop_s = window_s / image_size`. Its frame is a periodic Hann window of `2 * hop_s`
  centred on that interval (50 % overlap, so no transient falls between frames).
* Image height = frequency, low -> high: row `k` is a triangular band centred on
  `(k + 0.5) * band_hz`, with `band_hz = (sample_rate_hz / 2) / image_size`. The bands sum
  to one at every frequency, so together the rows hold all the signal power (mean
  square) from 0 to `sample_rate_hz / 2`, and a tone at `f` is loudest in row
  `floor(f / band_hz)`.
* Value: power in dB, mapped linearly from `[db_min, db_max]` to `[-1, 1]` and clipped.
  A full-scale sine is -3 dB.

The STFT runs at the input's own sample rate with frame lengths scaled to that rate and
only the FFT bins up to `sample_rate_hz / 2` are used, which selects the same 0 ..
`sample_rate_hz / 2` band that resampling to `sample_rate_hz` would, at a fraction of
`tfio.audio.resample`'s cost.
"""

import dataclasses
import functools
import math

import numpy as np
import tensorflow as tf

from orca_gan import configs


@dataclasses.dataclass(frozen=True)
class SpectrogramConfig:
  """Parameters of the transform. Stored in every TFRecord manifest.

  Attributes:
    sample_rate_hz: Analysis rate; images span 0 .. sample_rate_hz / 2.
    window_s: Length of one window (one image) in seconds.
    image_size: Height and width of an image in pixels.
    db_min: Power (dB re full-scale mean square) mapped to -1.
    db_max: Power mapped to +1.
  """
  sample_rate_hz: int = configs.flag(16000,
      'Analysis rate in Hz: images span 0 .. sample_rate / 2. Input is never resampled.')
  window_s: float = configs.flag(3.0, 'Window (one image) length in seconds.')
  image_size: int = configs.flag(128, 'Image height (frequency) and width (time).')
  db_min: float = configs.flag(-100.0, 'Band power in dB (re full-scale) mapped to -1.')
  db_max: float = configs.flag(0.0, 'Band power in dB (re full-scale) mapped to +1.')

  def __post_init__(self):
    if self.sample_rate_hz <= 0:
      raise ValueError(f'sample_rate_hz must be positive, got {self.sample_rate_hz}')
    if self.window_s <= 0:
      raise ValueError(f'window_s must be positive, got {self.window_s}')
    if self.image_size < 8:
      raise ValueError(f'image_size must be at least 8, got {self.image_size}')
    if self.db_max <= self.db_min:
      raise ValueError(f'db_max ({self.db_max}) must exceed db_min ({self.db_min})')

  @property
  def hop_s(self) -> float:
    """Time covered by one image column, in seconds."""
    return self.window_s / self.image_size

  @property
  def frame_s(self) -> float:
    """Length of one analysis frame, in seconds (two columns: 50 % overlap)."""
    return 2.0 * self.hop_s

  @property
  def band_hz(self) -> float:
    """Frequency spacing of image rows, in hertz."""
    return self.sample_rate_hz / 2.0 / self.image_size

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  def differences(self, other: 'SpectrogramConfig') -> str:
    """'name mine vs other, ...' for every parameter that differs."""
    mine, theirs = self.to_dict(), other.to_dict()
    return ', '.join(f'{name} {mine[name]} vs {theirs[name]}' for name in mine
                     if mine[name] != theirs[name])

  @classmethod
  def from_dict(cls, d: dict) -> 'SpectrogramConfig':
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})


@dataclasses.dataclass(frozen=True)
class FrameGeometry:
  """Sample-domain geometry of the transform for one input sample rate."""
  input_rate_hz: int
  window_samples: float  # Exact (possibly fractional) samples per window.
  hop_samples: float     # Exact (possibly fractional) samples per column.
  frame_length: int      # Samples per analysis frame (even).
  fft_length: int
  num_bins: int          # FFT bins kept: those up to sample_rate_hz / 2.


def frame_geometry(config: SpectrogramConfig, input_rate_hz: int) -> FrameGeometry:
  """Returns the frame lengths used for audio at `input_rate_hz`."""
  if input_rate_hz <= 0:
    raise ValueError(f'input sample rate must be positive, got {input_rate_hz}')
  frame_length = 2 * max(1, int(round(config.frame_s * input_rate_hz / 2)))
  fft_length = frame_length
  bin_hz = input_rate_hz / fft_length
  top_hz = config.sample_rate_hz / 2.0
  num_bins = min(fft_length // 2 + 1, int(math.floor(top_hz / bin_hz + 1e-9)) + 1)
  return FrameGeometry(
      input_rate_hz=int(input_rate_hz),
      window_samples=config.window_s * input_rate_hz,
      hop_samples=config.hop_s * input_rate_hz,
      frame_length=frame_length,
      fft_length=fft_length,
      num_bins=num_bins)


def num_windows(num_samples: int, input_rate_hz: int, window_s: float,
                pad_short: bool = False) -> int:
  """How many whole windows a recording holds: the one place that says so.

  Args:
    num_samples: Length of the recording in samples.
    input_rate_hz: Its sample rate.
    window_s: Window length in seconds.
    pad_short: If true, a non-empty recording shorter than one window counts as one
      (zero-padded) window.

  Returns:
    The number of consecutive windows; a trailing part shorter than a window is dropped.
  """
  # The small epsilon keeps an exact multiple (e.g. 48000 samples at 16 kHz) from
  # flooring down because of float rounding.
  n = int(math.floor(num_samples / (window_s * input_rate_hz) + 1e-9))
  if n == 0 and pad_short and num_samples > 0:
    return 1
  return n


def segment_bounds(first_window: int, count: int, geometry: FrameGeometry):
  """Sample range `[start, stop)` needed to compute `count` windows from `first_window`.

  The range includes half a frame of context on each side; it may extend beyond the
  recording, where `audio_to_images` expects zeros.
  """
  half = geometry.frame_length // 2
  start = int(math.floor(first_window * geometry.window_samples)) - half
  stop = int(math.ceil((first_window + count) * geometry.window_samples)) + half + 1
  return start, stop


@functools.lru_cache(maxsize=32)
def band_matrix(config: SpectrogramConfig, input_rate_hz: int) -> np.ndarray:
  """Triangular band weights mapping FFT-bin power to image rows.

  Returns:
    float32 array, shape [num_bins, image_size]. Every bin's weights sum to one (bins
    below the first centre or above the last one belong wholly to the edge row).
  """
  geometry = frame_geometry(config, input_rate_hz)
  bin_hz = input_rate_hz / geometry.fft_length
  freqs = np.arange(geometry.num_bins) * bin_hz                    # [bins]
  centres = (np.arange(config.image_size) + 0.5) * config.band_hz  # [rows]
  weights = np.maximum(0.0, 1.0 - np.abs(freqs[:, None] - centres[None, :]) /
                       config.band_hz)
  weights[freqs <= centres[0], 0] = 1.0
  weights[freqs >= centres[-1], -1] = 1.0
  return weights.astype(np.float32)


def _hann(frame_length: int) -> np.ndarray:
  n = np.arange(frame_length)
  return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / frame_length)).astype(np.float32)


def _power_scale(geometry: FrameGeometry) -> float:
  """Factor turning one-sided |rfft|^2 of a Hann frame into mean-square power."""
  window = _hann(geometry.frame_length).astype(np.float64)
  return 2.0 / (geometry.fft_length * float(np.sum(window**2)))


def frame_offsets(first_window: int, count: int, config: SpectrogramConfig,
                  geometry: FrameGeometry) -> np.ndarray:
  """Start sample (relative to `segment_bounds(...)[0]`) of every frame.

  Returns:
    int32 array, shape [count, image_size].
  """
  seg_start, _ = segment_bounds(first_window, count, geometry)
  column = (np.arange(first_window * config.image_size,
                      (first_window + count) * config.image_size) + 0.5)
  centres = column * geometry.hop_samples
  starts = np.round(centres - geometry.frame_length / 2).astype(np.int64) - seg_start
  return starts.reshape(count, config.image_size).astype(np.int32)


def power_to_images(band_power: tf.Tensor, config: SpectrogramConfig) -> tf.Tensor:
  """Maps band power to image values in [-1, 1]. Shape preserved."""
  db = 10.0 * tf.math.log(tf.maximum(band_power, 1e-20)) / math.log(10.0)
  scaled = 2.0 * (db - config.db_min) / (config.db_max - config.db_min) - 1.0
  return tf.clip_by_value(scaled, -1.0, 1.0)


def images_to_power(images: tf.Tensor, config: SpectrogramConfig) -> tf.Tensor:
  """Inverse of `power_to_images` (exact inside the clipping range)."""
  db = (tf.cast(images, tf.float32) + 1.0) / 2.0 * (config.db_max - config.db_min)
  return tf.pow(10.0, (db + config.db_min) / 10.0)


def audio_to_images(segment: tf.Tensor, offsets: tf.Tensor, config: SpectrogramConfig,
                    input_rate_hz: int) -> tf.Tensor:
  """The transform: mono audio -> spectrogram images.

  Args:
    segment: float32 audio at `input_rate_hz`, shape [samples], laid out as
      `segment_bounds` says (zeros outside the recording).
    offsets: int32 frame starts within `segment`, shape [windows, image_size], from
      `frame_offsets`.
    config: The transform's parameters.
    input_rate_hz: Sample rate of `segment`.

  Returns:
    float32 images in [-1, 1], shape [windows, image_size (freq, low->high),
    image_size (time)].
  """
  geometry = frame_geometry(config, input_rate_hz)
  index = offsets[:, :, None] + tf.range(geometry.frame_length, dtype=tf.int32)
  frames = tf.gather(segment, index)                    # [w, cols, frame]
  frames *= tf.constant(_hann(geometry.frame_length))
  spectrum = tf.signal.rfft(frames, fft_length=[geometry.fft_length])
  spectrum = spectrum[..., :geometry.num_bins]          # [w, cols, bins]
  power = tf.math.square(tf.math.real(spectrum)) + tf.math.square(tf.math.imag(spectrum))
  power *= _power_scale(geometry)
  band_power = tf.einsum('wcb,bk->wkc', power,
                         tf.constant(band_matrix(config, input_rate_hz)))
  return power_to_images(band_power, config)             # [w, rows, cols]


def images_to_magnitude(images: tf.Tensor, config: SpectrogramConfig) -> tf.Tensor:
  """Approximate inverse: images -> linear STFT magnitude at `config.sample_rate_hz`.

  The magnitude is laid out for `tf.signal.inverse_stft` with `stft_geometry(config)`:
  band power is spread back over the FFT bins by the same triangular weights (linear
  interpolation between band centres) and rescaled from mean-square power to |rfft|.

  Args:
    images: Shape [..., image_size (freq), image_size (time)], values in [-1, 1].
    config: The transform's parameters.

  Returns:
    float32 magnitude, shape [..., image_size (time frames), fft_length // 2 + 1].
  """
  geometry = frame_geometry(config, config.sample_rate_hz)
  weights = band_matrix(config, config.sample_rate_hz)      # [bins, rows]
  # Bins per band, so that a flat spectrum comes back flat.
  density = weights / np.maximum(weights.sum(axis=0, keepdims=True), 1e-9)
  band_power = images_to_power(images, config)              # [..., rows, time]
  bin_power = tf.einsum('...kt,bk->...tb', band_power, tf.constant(density))
  full_bins = geometry.fft_length // 2 + 1
  pad = [[0, 0]] * (len(bin_power.shape) - 1) + [[0, full_bins - geometry.num_bins]]
  bin_power = tf.pad(bin_power, pad)
  return tf.sqrt(bin_power / _power_scale(geometry))


def stft_geometry(config: SpectrogramConfig) -> dict:
  """Frame parameters of `images_to_magnitude` at the analysis rate, for inverse STFT."""
  geometry = frame_geometry(config, config.sample_rate_hz)
  hop = geometry.hop_samples
  if abs(hop - round(hop)) > 1e-6:
    raise ValueError(f'window_s * sample_rate_hz / image_size = {hop} must be a whole '
                     'number of samples to invert the transform')
  return {'frame_length': geometry.frame_length, 'frame_step': int(round(hop)),
          'fft_length': geometry.fft_length}
