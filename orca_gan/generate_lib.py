"""Sound from an exported generator (the library behind bin/generate).

The pieces are pure functions of tensors:

* `griffin_lim`: linear STFT magnitude -> audio, with `tf.signal.stft` /
  `tf.signal.inverse_stft` on the frame geometry of `spectral.stft_geometry`.
* `images_to_audio`: one generated sequence of spectrogram images -> audio. The windows
  are joined into one magnitude spectrogram first and Griffin-Lim runs once over the
  whole sequence, so the phase runs on across window joins and there is no click at
  the joins (per-window inversion would fade every window in and out).
* `slerp`: spherical interpolation of latents, for latent walks.
* `sequence_latents`, `interpolation_latents`, `run_generator`: what the generator
  is fed and how it is run.

`generate` ties them together for the command-line app: it validates everything, loads
the model, computes all images and audio in memory, and only then creates the output
folder and writes the files, each atomically.

Alignment of the inverse: image column `j` of window `i` is the frame centred at
`(i * image_size + j + 0.5) * hop` samples (see `spectral`), while `tf.signal.stft` frame
`k` starts at `k * hop`. The audio is therefore handled with `(frame_length - hop) / 2`
extra samples in front (half a hop for the transform's 50 % overlap), which puts the
centre of STFT frame `k` on column `k`, and trimmed to exactly `T * window_s *
sample_rate_hz` samples at the end.
"""

import dataclasses
import math
import os

import numpy as np
import tensorflow as tf

from orca_gan import audio_io
from orca_gan import configs
from orca_gan import export_lib
from orca_gan import models
from orca_gan import spectral

# A reconstruction whose peak exceeds full scale is scaled to this peak.
NORMALISED_PEAK = 0.9
# Fast Griffin-Lim momentum (Perraudin et al. 2013; librosa's default).
_MOMENTUM = 0.99


GenerateError = configs.UsageError  # The one usage error of every app.


@dataclasses.dataclass(frozen=True)
class GenerateConfig:
  """Flags of bin/generate map 1:1 to these fields.

  Raises (on construction):
    GenerateError: With a one-line message naming the flag, for a missing --model or
      --output_dir, a count below its minimum, or --interpolate_seeds that is not two
      integers 'A,B'.
  """
  model: str = configs.flag('',
      'Exported generator SavedModel folder, e.g. demo/run/export/generator.',
      required=True)
  output_dir: str = configs.flag('',
      'Folder for sequences.png, sequence_NNN.wav and, with --interpolate, '
      'interpolation.png, interpolation_NNN.wav. Created once the model has loaded; '
      'files in it are replaced.',
      required=True)
  num_sequences: int = configs.flag(4, 'Sequences to generate.')
  seq_len: int = configs.flag(4, 'Consecutive windows per sequence.')
  seed: int = configs.flag(0, 'Seed of the latents and of the Griffin-Lim phase.')
  griffin_lim_iters: int = configs.flag(32, 'Griffin-Lim iterations per sequence.')
  interpolate: bool = configs.flag(False,
      'Also write a latent walk (slerp) between the first sequences of the two '
      '--interpolate_seeds.')
  interpolate_seeds: str = configs.flag('0,1',
      'A,B: the seeds the walk starts and ends at (the first sequence of --seed A and of'
      ' --seed B).')
  interpolate_steps: int = configs.flag(8, 'Points on the walk, both ends included.')

  def __post_init__(self):
    configs.check(self, GenerateError)
    for name, minimum in (('num_sequences', 1), ('seq_len', 1),
                          ('griffin_lim_iters', 0), ('interpolate_steps', 2)):
      if getattr(self, name) < minimum:
        raise GenerateError(f'--{name} must be at least {minimum}, got '
                         f'{getattr(self, name)}')
    self.seed_pair()  # Validates.

  def seed_pair(self) -> tuple[int, int]:
    """The two seeds of --interpolate_seeds."""
    try:
      seed_a, seed_b = (int(v) for v in self.interpolate_seeds.split(','))
    except ValueError:
      raise GenerateError(f'--interpolate_seeds must be A,B (two integer seeds), got '
                       f'{self.interpolate_seeds!r}') from None
    return seed_a, seed_b


@dataclasses.dataclass(frozen=True)
class Generated:
  """What `generate` computed and wrote.

  Attributes:
    images: float32 in [-1, 1], shape [num_sequences, seq_len, size, size, 1].
    interpolation_images: Same layout with one row per walk point, shape
      [interpolate_steps, seq_len, size, size, 1]; None without --interpolate.
    duration_s: Length of every sequence (and of every WAV file) in seconds.
    paths: Every file written, in order.
  """
  images: np.ndarray
  interpolation_images: np.ndarray | None
  duration_s: float
  paths: tuple[str, ...]


def _stateless_seed(seed) -> tf.Tensor:
  """An int, or a pair of ints, as a `tf.random.stateless_*` seed of shape [2]."""
  seed = np.asarray(seed, np.int64).reshape(-1)
  if seed.size == 1:
    seed = np.array([seed[0], 0], np.int64)
  if seed.size != 2:
    raise ValueError(f'a seed is an int or a pair of ints, got {seed.tolist()}')
  return tf.constant(seed)


@tf.function(reduce_retracing=True)
def _fast_griffin_lim(magnitude, phase, iters, frame_length, frame_step, fft_length,
                      momentum):
  """The Griffin-Lim iterations; frame parameters are Python ints (traced per value).

  Args:
    magnitude: float32, shape [..., frames, fft_length // 2 + 1].
    phase: float32 initial phase in radians, same shape.
    iters: int32 scalar tensor.

  Returns:
    float32 audio, shape [..., (frames - 1) * frame_step + frame_length].
  """
  window_fn = tf.signal.hann_window  # Periodic: the transform's window.
  inverse_window_fn = tf.signal.inverse_stft_window_fn(frame_step, window_fn)
  magnitude = tf.complex(magnitude, tf.zeros_like(magnitude))

  def to_audio(angles):
    return tf.signal.inverse_stft(magnitude * angles, frame_length, frame_step,
                                  fft_length, window_fn=inverse_window_fn)

  def unit(spectrum):
    norm = tf.maximum(tf.abs(spectrum), 1e-12)
    return spectrum / tf.complex(norm, tf.zeros_like(norm))

  def body(i, angles, previous):
    rebuilt = tf.signal.stft(to_audio(angles), frame_length, frame_step, fft_length,
                             window_fn=window_fn)
    accelerated = rebuilt - tf.cast(momentum / (1.0 + momentum), tf.complex64) * previous
    return i + 1, unit(accelerated), rebuilt

  angles = tf.exp(tf.complex(tf.zeros_like(phase), phase))
  _, angles, _ = tf.while_loop(
      lambda i, *_: i < iters, body, (tf.constant(0), angles, tf.zeros_like(angles)))
  return to_audio(angles)


def griffin_lim(magnitude, transform: spectral.SpectrogramConfig, iters: int,
                seed) -> tf.Tensor:
  """Audio whose STFT magnitude approximates `magnitude` (fast Griffin-Lim).

  The frames are those of `spectral.stft_geometry(transform)` at
  `transform.sample_rate_hz`: frame `j` of `magnitude` is centred at `(j + 0.5) * hop`
  samples, like image column `j`. The phase starts random (uniform, from `seed`) and
  is refined by `iters` iterations with momentum 0.99 (Perraudin et al. 2013).

  Args:
    magnitude: Linear magnitude laid out as `spectral.images_to_magnitude` returns it,
      shape [..., frames, fft_length // 2 + 1].
    transform: The spectrogram transform.
    iters: Griffin-Lim iterations; 0 keeps the random phase.
    seed: An int or a pair of ints: the random initial phase.

  Returns:
    float32 audio at `transform.sample_rate_hz`, shape [..., frames * hop], not
    normalised.

  Raises:
    ValueError: If the transform's hop is not a whole number of samples, or
      `magnitude` has the wrong number of bins.
  """
  geometry = spectral.stft_geometry(transform)
  frame_length, hop = geometry['frame_length'], geometry['frame_step']
  magnitude = tf.convert_to_tensor(magnitude, tf.float32)
  bins = geometry['fft_length'] // 2 + 1
  if magnitude.shape.rank is None or magnitude.shape.rank < 2 or (
      magnitude.shape[-1] != bins):
    raise ValueError(f'magnitude must have shape [..., frames, {bins}], got '
                     f'{magnitude.shape}')
  frames = tf.shape(magnitude)[-2]
  phase = tf.random.stateless_uniform(tf.shape(magnitude), _stateless_seed(seed),
                                      maxval=2.0 * math.pi)
  audio = _fast_griffin_lim(magnitude, phase, tf.constant(iters, tf.int32),
                            frame_length, hop, geometry['fft_length'], _MOMENTUM)
  # The analysis frame of column j starts at (j + 0.5) * hop - frame_length / 2; STFT
  # frame k starts at k * hop of the padded signal.
  front = int(round((frame_length - hop) / 2))
  return audio[..., front:front + frames * hop]


def _as_sequence(images_seq, transform: spectral.SpectrogramConfig) -> tf.Tensor:
  """[T, H, W] or [T, H, W, 1] -> float32 [T, H, W], checked against the transform."""
  images = tf.convert_to_tensor(images_seq, tf.float32)
  if images.shape.rank == 4 and images.shape[-1] == 1:
    images = images[..., 0]
  size = transform.image_size
  if images.shape.rank != 3 or tuple(images.shape[1:]) != (size, size):
    raise ValueError(f'images must have shape [T, {size}, {size}] or '
                     f'[T, {size}, {size}, 1], got {images.shape}')
  return images


def images_to_audio(images_seq, transform: spectral.SpectrogramConfig, iters: int,
                    seed) -> np.ndarray:
  """One sequence of spectrogram images -> audio, continuous across windows.

  The magnitudes of all windows are concatenated along time and inverted by one
  `griffin_lim` run, so consecutive windows join without clicks. The level follows
  the images' dB scale (a tone comes back within a few dB of its level) unless the
  peak would clip: audio peaking above 1.0 is scaled down to peak at
  `NORMALISED_PEAK` (0.9); quieter audio is left as it is.

  Args:
    images_seq: Values in [-1, 1], shape [T, size (freq), size (time)] or
      [T, size, size, 1].
    transform: The spectrogram transform the images were made (or trained) with.
    iters: Griffin-Lim iterations.
    seed: An int or a pair of ints: Griffin-Lim's random initial phase.

  Returns:
    float32 audio at `transform.sample_rate_hz`, shape
    [T * window_s * sample_rate_hz]; sample `t` belongs to time `t / sample_rate_hz`
    of the sequence.
  """
  images = _as_sequence(images_seq, transform)
  magnitude = spectral.images_to_magnitude(images, transform)   # [T, W, bins]
  magnitude = tf.reshape(magnitude, [-1, magnitude.shape[-1]])  # [T * W, bins]
  audio = griffin_lim(magnitude, transform, iters, seed).numpy()
  peak = float(np.max(np.abs(audio), initial=0.0))
  if peak > 1.0:
    audio *= NORMALISED_PEAK / peak
  return audio


def slerp(a, b, fractions) -> tf.Tensor:
  """Spherical interpolation from `a` to `b`, vector by vector along the last axis.

  Each vector moves along the great circle between the directions of its `a` and `b`
  vectors while its norm changes linearly, as for Gaussian latents (White 2016).
  Nearly parallel vectors are interpolated linearly. Fractions 0 and 1 give `a` and
  `b` exactly.

  Args:
    a: Start, shape [..., d].
    b: End, same shape.
    fractions: Positions along the walk, shape [n]; 0 is `a`, 1 is `b`.

  Returns:
    float32, shape [n, ..., d].
  """
  a = tf.cast(a, tf.float64)
  b = tf.cast(b, tf.float64)
  t = tf.reshape(tf.cast(fractions, tf.float64),
                 [-1] + [1] * a.shape.rank)                     # [n, 1..., 1]
  norm_a = tf.norm(a, axis=-1, keepdims=True)
  norm_b = tf.norm(b, axis=-1, keepdims=True)
  cosine = tf.reduce_sum(a * b, axis=-1, keepdims=True) / tf.maximum(
      norm_a * norm_b, 1e-12)
  omega = tf.acos(tf.clip_by_value(cosine, -1.0, 1.0))          # [..., 1]
  sin_omega = tf.sin(omega)
  parallel = sin_omega < 1e-6
  safe_sin = tf.where(parallel, tf.ones_like(sin_omega), sin_omega)
  weight_a = tf.where(parallel, 1.0 - t, tf.sin((1.0 - t) * omega) / safe_sin)
  weight_b = tf.where(parallel, t, tf.sin(t * omega) / safe_sin)
  return tf.cast(weight_a * a + weight_b * b, tf.float32)


def sequence_latents(seed: int, num_sequences: int, seq_len: int,
                     model_config: models.ModelConfig) -> tf.Tensor:
  """The latents of `bin/generate --seed seed`, shape [num_sequences, seq_len, z_dim].

  Sequence `i` does not depend on `num_sequences`: the first sequence of any run with
  `seed` is the one an interpolation from or to `seed` starts or ends at.
  """
  return models.sample_latents(_stateless_seed(seed), num_sequences, seq_len,
                               model_config)


def interpolation_latents(seed_a: int, seed_b: int, steps: int, seq_len: int,
                          model_config: models.ModelConfig) -> tf.Tensor:
  """A latent walk from the first sequence of `seed_a` to that of `seed_b`.

  Returns:
    float32, shape [steps, seq_len, z_dim]: `slerp` of every time step's latent
    vector at `steps` evenly spaced fractions from 0 to 1.
  """
  z_a = sequence_latents(seed_a, 1, seq_len, model_config)[0]
  z_b = sequence_latents(seed_b, 1, seq_len, model_config)[0]
  return slerp(z_a, z_b, np.linspace(0.0, 1.0, steps))


def load_generator(path: str):
  """Loads an exported generator (`export_lib.load`).

  Raises:
    GenerateError: If `path` is not an orca_gan generator SavedModel (one line).
  """
  try:
    return export_lib.load(path, 'generator')
  except ValueError as e:
    raise GenerateError(str(e)) from e


def run_generator(loaded, z) -> np.ndarray:
  """Runs a loaded generator's serving signature on latents [b, T, z_dim].

  Returns:
    float32 images in [-1, 1], shape [b, T, size, size, 1].
  """
  z = tf.convert_to_tensor(z, tf.float32)
  return loaded.signatures['serving_default'](z=z)['images'].numpy()


def _audio_of(images, transform, iters, seeds) -> list[np.ndarray]:
  return [images_to_audio(sequence, transform, iters, seed)
          for sequence, seed in zip(images, seeds, strict=True)]


def _check_finite(images, model_path: str) -> None:
  if not np.all(np.isfinite(images)):
    raise GenerateError(f'{model_path}: the generator produced NaN or infinite values')


def _write(output_dir: str, png_name: str, wav_prefix: str, images, audio, transform,
           title: str, row_labels: list[str]) -> list[str]:
  """Writes one PNG of `images` and one WAV per sequence; returns the paths."""
  from orca_gan import plotting  # matplotlib: only when plotting.
  png = os.path.join(output_dir, png_name)
  plotting.plot_sequences(images, transform, png, title=title, row_labels=row_labels)
  paths = [png]
  for i, samples in enumerate(audio):
    paths.append(os.path.join(output_dir, f'{wav_prefix}_{i:03d}.wav'))
    audio_io.write_audio(paths[-1], samples, transform.sample_rate_hz)
  return paths


def generate(config: GenerateConfig) -> Generated:
  """Runs bin/generate: sequences (and a latent walk) as PNG plots and WAV files.

  Writes to `config.output_dir`:
    sequences.png: one row per sequence (`plotting.plot_sequences`).
    sequence_NNN.wav: sequence NNN; Griffin-Lim phase seeded with (seed, NNN).
    With `config.interpolate`:
    interpolation.png: one row per walk point, from seed A (top) to seed B.
    interpolation_NNN.wav: walk point NNN, one file per point (so that points can be
      played side by side). Every point's Griffin-Lim phase starts from the same seed
      (A, 0), so the sounds differ only through the images, and point 0 sounds
      exactly like sequence_000.wav of a run with --seed A.

  Nothing is written, and the folder is not created, until the model has loaded and
  all images and audio have been computed; every file is written under a temporary
  name and renamed.

  Raises:
    GenerateError: One-line message for a bad model path, a SavedModel that is not a
      generator, a transform that cannot be inverted, an --output_dir that is a file,
      or a generator that outputs NaN.
    OSError: If the files cannot be written.
  """
  if os.path.exists(config.output_dir) and not os.path.isdir(config.output_dir):
    raise GenerateError(f'--output_dir {config.output_dir} exists and is not a folder')
  loaded = load_generator(config.model)
  model_config, transform = loaded.model_config, loaded.transform
  try:
    spectral.stft_geometry(transform)
  except ValueError as e:
    raise GenerateError(f'{config.model}: {e}') from e
  iters = config.griffin_lim_iters

  images = run_generator(loaded, sequence_latents(
      config.seed, config.num_sequences, config.seq_len, model_config))
  _check_finite(images, config.model)
  audio = _audio_of(images, transform, iters,
                    [(config.seed, i) for i in range(config.num_sequences)])
  walk = None
  if config.interpolate:
    seed_a, seed_b = config.seed_pair()
    walk = run_generator(loaded, interpolation_latents(
        seed_a, seed_b, config.interpolate_steps, config.seq_len, model_config))
    _check_finite(walk, config.model)
    walk_audio = _audio_of(walk, transform, iters, [(seed_a, 0)] * len(walk))

  try:
    os.makedirs(config.output_dir, exist_ok=True)
  except OSError as e:
    raise OSError(f'--output_dir {config.output_dir}: cannot create it '
                  f'({e.strerror or e})') from e
  paths = _write(config.output_dir, 'sequences.png', 'sequence', images, audio,
                 transform, f'{config.model}: seed {config.seed}',
                 [f'seq {i}' for i in range(config.num_sequences)])
  if walk is not None:
    labels = [f'slerp {f:.2f}'
              for f in np.linspace(0.0, 1.0, config.interpolate_steps)]
    labels[0], labels[-1] = f'seed {seed_a}', f'seed {seed_b}'
    paths += _write(config.output_dir, 'interpolation.png', 'interpolation', walk,
                    walk_audio, transform,
                    f'{config.model}: slerp from seed {seed_a} to seed {seed_b}', labels)
  return Generated(images=images, interpolation_images=walk,
                   duration_s=config.seq_len * transform.window_s, paths=tuple(paths))
