"""Evaluating a generator against real recordings (the library behind bin/evaluate).

`evaluate` draws `num_sequences` sequences of `seq_len` windows from an exported
generator, reads every window of a make_tfrecords folder, and writes to `output_dir`:

* `metrics.json`: the measures of `orca_gan.metrics` for generated vs real windows, with
  the real-vs-real references that make them readable:
  - `frechet_distance`: generated vs all real windows (`generated_vs_real`), and two
    distances at one sample size n (`feature_distances`): the real windows are split
    into two halves by segments of at most `SEGMENT_WINDOWS` windows of a recording
    (`floor_split` 'recording segment'; by window, 'window', when there is a single
    segment or a half would hold fewer than 2 windows),
    n = min(generated windows, smaller half), and n windows are drawn from each half
    and from the generated ones. `real_vs_real_floor` compares the two real samples,
    `generated_vs_real_same_size` the generated sample with half b's. The estimate
    is biased upwards for small samples, so only these two are comparable; a
    generator as good as the data (as different from the recordings it learnt as
    other recordings are) reaches the floor.
  - `kernel_distance`: the unbiased KID-style MMD^2 (`metrics.kernel_distance`) on
    the same three samples: `generated_vs_real` and `real_vs_real_floor`. It has no
    small-sample bias: the floor is near 0 unless recordings differ.
  - `centroids`: energy distance and permutation p-value between the generated and
    the real energy centroids (at most `MAX_CENTROID_POINTS` of each, drawn with the
    seed), and the mean and spread of both clouds; the share of windows that hold no
    sound (contrast below `--quiet_db`: speckle alone, whose centroid is the image
    centre) and the frequency spread of the others (`std_khz_sounding`).
  - `temporal_coherence`: mean correlation of consecutive windows, generated (within
    sequences) and real (every pair of consecutive windows of a recording); and of
    unrelated windows (generated: same step of different sequences; real: random
    pairs that are not neighbours), the level that coherence has to beat, also on
    `metrics.coarse_windows` (`*_unrelated_coarse`: without the speckle, which real
    windows have and a smooth generator lacks), and on `metrics.speckle`
    (`*_unrelated_speckle`: near 0 for real windows, whose speckle is random; high for
    a generator that paints one texture into every window).
  - `speckle`: the standard deviation of `metrics.speckle`, the pixel-scale texture,
    averaged over generated windows and over the kept real ones. A generator below
    real's draws smoother windows than the recordings hold.
  - `nearest_neighbour`: feature-space distances generated -> real (the records are
    meant to be the training set), generated -> generated and real -> real (at most
    `MAX_NEAREST_QUERIES` real queries), and the fractions below the real 1st
    percentile.
  - `intervals` (in `centroids` and `temporal_coherence`, unless `--num_resamples`
    is 0): 90 % cluster-bootstrap intervals (`metrics.cluster_bootstrap`) of the
    spreads, the share of windows without sound and the mean correlation of
    unrelated windows, for the generated and the real windows and for how they
    compare (generated / real for a spread, generated - real for a share or a
    correlation). Generated windows are resampled by sequence, real ones by
    stretches of `BOOTSTRAP_BLOCK_WINDOWS` consecutive windows of a recording. They
    say how far a number would move on another sample of the same recordings, and so
    how big a difference the real set can tell apart: a spread that rests on a few
    windows without sound gets a wide interval. How much other tapes differ they
    cannot say.
  - counts of the windows used, the flags, and the model's metadata.
* `report.png`: centroid scatter, distance and correlation histograms, mean spectral
  profiles, and a few generated and real sequences.

Real windows are read in batches and reduced to features, centroids and
consecutive-pair correlations as they come, so the records need not fit in memory;
only `MAX_KEPT_REAL_WINDOWS` real images are kept, for the unrelated-pair baseline.

Everything is checked before work starts; both files are rendered in memory, and only
then is the output folder created and each file written to a temporary name and renamed
into place: a failed evaluation leaves no output.
"""

import dataclasses
import io
import json
import os

import numpy as np

from orca_gan import configs
from orca_gan import fileio
from orca_gan import metrics
from orca_gan import plotting

MAX_CENTROID_POINTS = 1000
MAX_NEAREST_QUERIES = 2000
MAX_KEPT_REAL_WINDOWS = 512
_READ_BATCH = 256
_GENERATE_BATCH = 16
_SHOWN_SEQUENCES = 3


EvaluationError = configs.UsageError  # The one usage error of every app.


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
  """Flags of bin/evaluate map 1:1 to these fields."""
  model: str = configs.flag('',
      'Exported generator SavedModel folder (e.g. <logdir>/export/generator).',
      required=True)
  tfrecords: str = configs.flag('',
      'Folder written by make_tfrecords, normally the training records; its transform '
      "must match the model's.",
      required=True)
  output_dir: str = configs.flag('',
      'Where metrics.json and report.png go (created at the end).',
      required=True)
  num_sequences: int = configs.flag(
      256, 'Generated sequences of --seq_len windows (256 x 4 = 1024 windows; with '
      'fewer, a few windows without sound move the frequency spread).')
  seq_len: int = configs.flag(4,
      'Consecutive windows per generated sequence; at most the longest recording in '
      '--tfrecords.')
  seed: int = configs.flag(0,
      'Seed of the latents, the real-vs-real halves, subsamples and permutations.')
  top_fraction: float = configs.flag(0.01,
      'Fraction of the loudest pixels of a window that give its energy centroid.')
  num_permutations: int = configs.flag(1000,
      'Permutations for the p-value of the centroid test.')
  num_resamples: int = configs.flag(1000,
      'Bootstrap resamples for the 90 % intervals of the spreads, the share of windows '
      'without sound and the correlation of unrelated windows (generated windows drawn '
      'by sequence, real ones by 24-s stretch of a recording); 0 leaves them out.')
  quiet_db: float = configs.flag(metrics.QUIET_DB,
      'A window whose loudest 1 % of pixels stand less than this many dB above its '
      'median holds no sound (its centroid is the image centre): counted apart. 8 fits '
      'the bench scene (sounds 6-24 dB out, speckle 4-6); loud broadband noise may '
      'need more.')

  def __post_init__(self):
    configs.check(self, EvaluationError)
    if self.num_resamples < 0:
      raise EvaluationError(f'--num_resamples must be at least 0, got '
                            f'{self.num_resamples}')
    for name in ('seq_len', 'num_permutations'):
      if getattr(self, name) < 1:
        raise EvaluationError(f'--{name} must be at least 1, got {getattr(self, name)}')
    if self.num_sequences < 2:  # Fewer leave no covariance and no unrelated pairs.
      raise EvaluationError(f'--num_sequences must be at least 2, got '
                            f'{self.num_sequences}')
    if not 0.0 < self.top_fraction <= 1.0:
      raise EvaluationError(f'--top_fraction must be in (0, 1], got '
                            f'{self.top_fraction}')
    if not self.quiet_db > 0.0:
      raise EvaluationError(f'--quiet_db must be positive, got {self.quiet_db}')


def load_generator(path: str):
  """Loads an exported generator (`export_lib.load`).

  Raises:
    EvaluationError: `path` is not an orca_gan generator SavedModel.
  """
  from orca_gan import export_lib
  try:
    return export_lib.load(path, 'generator')
  except ValueError as e:
    raise EvaluationError(f'--model: {e}') from e


def check_records(config: EvaluateConfig, model_transform):
  """Reads the manifest and checks it against the model; returns (manifest, transform).

  Raises:
    EvaluationError: The folder is unusable, its transform differs from the model's,
      or it is too short for `seq_len` or the real-vs-real halves.
  """
  from orca_gan import data
  from orca_gan import records
  try:
    manifest = records.read_manifest(config.tfrecords)
    transform = records.manifest_config(manifest)
  except (records.ManifestError, ValueError, KeyError, TypeError) as e:
    raise EvaluationError(f'--tfrecords: {e}') from e
  if transform != model_transform:
    raise EvaluationError(f'--tfrecords {config.tfrecords}: transform differs from the '
                          f"model's (records vs model: "
                          f'{transform.differences(model_transform)})')
  longest = data.max_sequence_length(manifest)
  if config.seq_len > longest:
    raise EvaluationError(f'--seq_len {config.seq_len} is longer than the longest '
                          f'recording in {config.tfrecords} ({longest} windows)')
  total = sum(f['windows'] for f in manifest['files'])
  if total < 4:
    raise EvaluationError(f'--tfrecords {config.tfrecords}: holds {total} windows; '
                          'need at least 4 (two halves of two)')
  return manifest, transform


def generate(loaded, num_sequences: int, seq_len: int, seed: int) -> np.ndarray:
  """Draws sequences from the exported generator.

  Latents are `models.sample_latents([seed, 0], ...)` with the model's own config, so
  slow (per-sequence) latent dims are held as in training.

  Returns:
    float32 [num_sequences, seq_len, H, W] in [-1, 1].
  """
  import tensorflow as tf
  from orca_gan import models
  z = models.sample_latents(tf.constant([seed, 0], tf.int64), num_sequences, seq_len,
                            loaded.model_config)
  serve = loaded.signatures['serving_default']
  images = [serve(z=z[i:i + _GENERATE_BATCH])['images'].numpy()[..., 0]
            for i in range(0, num_sequences, _GENERATE_BATCH)]
  return np.concatenate(images)


@dataclasses.dataclass
class RealStatistics:
  """What is kept of the real windows after one streaming pass."""
  features: np.ndarray            # [N, D]
  centroids: np.ndarray           # [N, 2]
  contrast_db: np.ndarray         # [N] `metrics.window_contrast_db`.
  file_ids: np.ndarray            # [N]
  window_indices: np.ndarray      # [N]
  consecutive: np.ndarray         # [pairs] correlations of consecutive windows.
  kept_positions: np.ndarray      # [K] positions (in file order) of kept images.
  kept_images: np.ndarray         # [K, H, W]


def read_real(tfrecord_dir: str, manifest: dict, transform, top_fraction: float,
              seed: int) -> RealStatistics:
  """One pass over every stored window: features, centroids, consecutive correlations.

  Keeps the images of at most MAX_KEPT_REAL_WINDOWS windows drawn with `seed`.
  """
  from orca_gan import data
  total = sum(f['windows'] for f in manifest['files'])
  rng = np.random.default_rng([seed, 1])
  keep = np.zeros(total, bool)
  keep[rng.choice(total, min(total, MAX_KEPT_REAL_WINDOWS), replace=False)] = True
  features: list = []
  centroids: list = []
  contrast: list = []
  file_ids: list = []
  indices: list = []
  consecutive: list = []
  kept: list = []
  previous = None  # (image, file_id, window_index) of the last window read.
  position = 0
  windows = data.read_windows(tfrecord_dir, manifest).batch(_READ_BATCH)
  for batch in windows.as_numpy_iterator():
    images = batch['image']                                    # [b, h, w]
    ids, index = batch['file_id'], batch['window_index']
    features.append(metrics.window_features(images))
    centroids.append(metrics.energy_centroids(images, transform, top_fraction))
    contrast.append(metrics.window_contrast_db(images, transform))
    file_ids.append(ids)
    indices.append(index)
    # Pairs (j, j + 1) of this batch, with the previous batch's last window in front.
    if previous is not None:
      images_ext = np.concatenate([previous[0][None], images])
      ids_ext = np.concatenate([[previous[1]], ids])
      index_ext = np.concatenate([[previous[2]], index])
    else:
      images_ext, ids_ext, index_ext = images, ids, index
    pairs = (ids_ext[:-1] == ids_ext[1:]) & (index_ext[:-1] + 1 == index_ext[1:])
    if pairs.any():
      consecutive.append(metrics.window_correlations(images_ext[:-1][pairs],
                                                     images_ext[1:][pairs]))
    previous = (images[-1], ids[-1], index[-1])
    chosen = np.nonzero(keep[position:position + len(images)])[0]
    kept.extend((position + i, images[i]) for i in chosen)
    position += len(images)
  return RealStatistics(
      features=np.concatenate(features), centroids=np.concatenate(centroids),
      contrast_db=np.concatenate(contrast),
      file_ids=np.concatenate(file_ids), window_indices=np.concatenate(indices),
      consecutive=np.concatenate(consecutive) if consecutive else np.zeros([0]),
      kept_positions=np.array([p for p, _ in kept], np.int64),
      kept_images=np.stack([image for _, image in kept]))


def _unrelated_real_pairs(real: RealStatistics, seed: int) -> tuple:
  """Random pairs of kept real windows that are not neighbours: two index arrays."""
  rng = np.random.default_rng([seed, 2])
  count = len(real.kept_positions)
  first = rng.permutation(count)
  second = np.roll(first, 1)
  a, b = real.kept_positions[first], real.kept_positions[second]
  neighbours = ((real.file_ids[a] == real.file_ids[b]) &
                (np.abs(real.window_indices[a] - real.window_indices[b]) <= 1))
  keep = ~neighbours & (first != second)
  return first[keep], second[keep]


# Units of the real-vs-real split: segments of a recording of at most this many
# windows (3.2 minutes of 3-s windows).
SEGMENT_WINDOWS = 64


def split_real_halves(file_ids: np.ndarray, seed: int,
                      window_indices: np.ndarray | None = None) -> tuple:
  """Splits the real windows into two halves by recording, as balanced as possible.

  Recordings are shuffled with `seed`, ordered by window count (largest first, ties
  in shuffled order) and each goes to the half with fewer windows so far (the
  greedy partition). With `window_indices`, the units are segments of at most
  `SEGMENT_WINDOWS` consecutive windows of a recording instead (one long tape and a
  short clip would otherwise leave a half of a few windows; neighbours then meet
  across a half only at segment ends). With a single unit, or when a half would hold
  fewer than 2 windows, the windows themselves are split at random into halves of
  N // 2 and N - N // 2.

  Args:
    file_ids: [N] recording of every real window.
    seed: Seed of the shuffle.
    window_indices: [N] window number within its recording, or None.

  Returns:
    (indices of half a, indices of half b, 'recording', 'recording segment' or
    'window'); the indices are sorted and together cover 0 .. N - 1 once.
  """
  file_ids = np.asarray(file_ids)
  unit = 'recording'
  if window_indices is not None:
    segments = np.asarray(window_indices) // SEGMENT_WINDOWS
    file_ids = np.unique(np.stack([file_ids, segments], axis=1), axis=0,
                         return_inverse=True)[1].reshape(-1)
    unit = 'recording segment'
  rng = np.random.default_rng([seed, 4])
  files, counts = np.unique(file_ids, return_counts=True)
  if len(files) >= 2:
    order = rng.permutation(len(files))
    order = order[np.argsort(-counts[order], kind='stable')]
    sizes = [0, 0]
    in_a = []
    for f in order:
      half = 0 if sizes[0] <= sizes[1] else 1
      sizes[half] += counts[f]
      if half == 0:
        in_a.append(files[f])
    member_a = np.isin(file_ids, in_a)
    if min(sizes) >= 2:
      return np.nonzero(member_a)[0], np.nonzero(~member_a)[0], unit
  order = rng.permutation(len(file_ids))
  middle = len(order) // 2
  return np.sort(order[:middle]), np.sort(order[middle:]), 'window'


def feature_distances(gen_features: np.ndarray, real_features: np.ndarray,
                      file_ids: np.ndarray, seed: int,
                      window_indices: np.ndarray | None = None) -> tuple:
  """Fréchet and kernel distances, generated vs real and real vs real, at one size.

  The real windows are split by `split_real_halves`; n = min(generated windows,
  windows of the smaller half), and n windows are drawn (with `seed`) from the
  generated ones and from each half. The floor compares the two real samples, the
  same-size distance the generated sample with half b's sample (the same one, so
  the two differ only in their first set).

  Args:
    gen_features: [G, D] `window_features` of the generated windows, G >= 2.
    real_features: [N, D] of the real windows, N >= 4.
    file_ids: [N] recording of every real window.
    seed: Seed of the split and the samples.
    window_indices: [N] window number within its recording: split by segments of
      recordings (see `split_real_halves`).

  Returns:
    (`frechet_distance` dict, `kernel_distance` dict) of metrics.json.
  """
  index_a, index_b, split = split_real_halves(file_ids, seed, window_indices)
  size = min(len(gen_features), len(index_a), len(index_b))
  rng = np.random.default_rng([seed, 5])
  gen_sample = _subsample(gen_features, size, rng)
  real_a = real_features[_subsample(index_a, size, rng)]
  real_b = real_features[_subsample(index_b, size, rng)]
  frechet = {
      'generated_vs_real': metrics.frechet_distance(gen_features, real_features),
      'generated_vs_real_same_size': metrics.frechet_distance(gen_sample, real_b),
      'real_vs_real_floor': metrics.frechet_distance(real_a, real_b),
      'floor_split': split,
      'windows': {'generated': len(gen_features), 'real': len(real_features),
                  'same_size': size, 'same_size_generated': size,
                  'real_half_a': len(index_a), 'real_half_b': len(index_b)},
      'recordings': {'real_half_a': len(np.unique(file_ids[index_a])),
                     'real_half_b': len(np.unique(file_ids[index_b]))},
      'feature_dim': int(gen_features.shape[1]),
  }
  kernel = {
      'generated_vs_real': metrics.kernel_distance(gen_sample, real_b),
      'real_vs_real_floor': metrics.kernel_distance(real_a, real_b),
      'kernel': '(x.y / D + 1)^3',
      'windows': size,
  }
  return frechet, kernel


# Real windows are resampled for the bootstrap intervals in stretches of this many
# consecutive windows of a recording (24 s of 3-s windows): a call series or a boat
# passing spans several windows, which are then drawn together.
BOOTSTRAP_BLOCK_WINDOWS = 8
# Statistics of the energy centroids that get intervals: the names of
# `metrics.centroid_statistics`. A spread is compared as generated / real; a share or a
# correlation as generated - real.
SPREAD_STATISTICS = metrics.CENTROID_SPREADS
_BY_DIFFERENCE = ('quiet_share', 'unrelated')
_CONFIDENCE = 0.9


def _real_clusters(real: RealStatistics, positions: np.ndarray) -> np.ndarray:
  """Bootstrap cluster of the real windows at `positions`: (recording, stretch)."""
  return (real.file_ids[positions].astype(np.int64) * (1 << 32) +
          real.window_indices[positions] // BOOTSTRAP_BLOCK_WINDOWS)


def _spread_statistics(points: np.ndarray, quiet_db: float) -> np.ndarray:
  """SPREAD_STATISTICS of (seconds, kHz, contrast dB) rows (NaN for None)."""
  spreads = metrics.centroid_spreads(points[:, :2], points[:, 2], quiet_db)
  return np.array([spreads[name] for name in SPREAD_STATISTICS], np.float64)


def _intervals(statistics, names, generated: tuple, real: tuple,
               config: 'EvaluateConfig') -> dict:
  """90 % cluster-bootstrap intervals of `statistics` of generated and real items.

  Args:
    statistics: Function of an [n, ...] array of items to len(names) numbers.
    names: The statistics' names.
    generated, real: (items [N, ...], cluster of every item [N]).
    config: Gives num_resamples and seed.

  Returns:
    {'confidence', 'resamples', 'real_clusters', name: {'generated': [lo, hi], 'real':
    [lo, hi], 'ratio' (generated / real) or, for a share or a correlation,
    'difference' (generated - real): [lo, hi]}}, the two sides resampled
    independently.
  """
  resamples = {}
  for side, (items, clusters), stream in (('generated', generated, 6),
                                          ('real', real, 7)):
    resamples[side] = metrics.cluster_bootstrap(
        lambda index, items=items: statistics(items[index]), clusters, config.num_resamples,
        [config.seed, stream])
  with np.errstate(divide='ignore', invalid='ignore'):
    compared = {'ratio': resamples['generated'] / resamples['real'],
                'difference': resamples['generated'] - resamples['real']}
  result: dict = {'confidence': _CONFIDENCE, 'resamples': config.num_resamples,
                  'real_clusters': f'{BOOTSTRAP_BLOCK_WINDOWS} consecutive windows of a '
                                   'recording'}
  columns = {side: metrics.bootstrap_interval(r, _CONFIDENCE)
             for side, r in {**resamples, **compared}.items()}
  for k, name in enumerate(names):
    kind = 'difference' if name in _BY_DIFFERENCE else 'ratio'
    result[name] = {side: columns[side][k] for side in ('generated', 'real', kind)}
  return result


def _subsample(x: np.ndarray, limit: int, rng) -> np.ndarray:
  if len(x) <= limit:
    return x
  return x[np.sort(rng.choice(len(x), limit, replace=False))]


def _mean_or_none(x: np.ndarray):
  return float(np.mean(x)) if len(x) else None


def compute_metrics(generated: np.ndarray, real: RealStatistics, transform,
                    config: EvaluateConfig) -> tuple:
  """All the numbers of metrics.json except the run description.

  Args:
    generated: [S, T, H, W] generated sequences.
    real: From `read_real`.
    transform: The spectrogram transform of both.
    config: Gives seed, top_fraction and num_permutations.

  Returns:
    (metrics dict, per-window arrays for the report).
  """
  rng = np.random.default_rng([config.seed, 3])
  seq_len = generated.shape[1]
  gen_windows = generated.reshape((-1,) + generated.shape[2:])
  gen_features = metrics.window_features(gen_windows)
  real_features = real.features
  frechet, kernel = feature_distances(gen_features, real_features, real.file_ids,
                                      config.seed, real.window_indices)

  gen_centroids = metrics.energy_centroids(gen_windows, transform, config.top_fraction)
  # Bootstrap clusters: generated windows by sequence, real ones by stretch of a tape.
  gen_clusters = np.repeat(np.arange(generated.shape[0]), seq_len)
  real_clusters = _real_clusters(real, np.arange(len(real.features)))
  # (seconds, kHz, contrast in dB) per window, subsampled together.
  gen_index = _subsample(np.arange(len(gen_windows)), MAX_CENTROID_POINTS, rng)
  gen_points = np.column_stack(
      [gen_centroids, metrics.window_contrast_db(gen_windows, transform)])[gen_index]
  real_index = _subsample(np.arange(len(real.centroids)), MAX_CENTROID_POINTS, rng)
  real_points = np.column_stack([real.centroids, real.contrast_db])[real_index]
  centroids = metrics.centroid_statistics(
      gen_points[:, :2], real_points[:, :2], transform, config.num_permutations,
      config.seed, generated_contrast_db=gen_points[:, 2],
      real_contrast_db=real_points[:, 2], quiet_db=config.quiet_db)
  centroids['quiet_db'] = config.quiet_db
  centroids['top_fraction'] = config.top_fraction
  if config.num_resamples:
    centroids['intervals'] = _intervals(
        lambda points: _spread_statistics(points, config.quiet_db),
        SPREAD_STATISTICS, (gen_points, gen_clusters[gen_index]),
        (real_points, real_clusters[real_index]), config)

  gen_consecutive = (metrics.consecutive_correlations(generated) if seq_len > 1
                     else np.zeros([0]))
  # Window t of sequence i against window t of sequence i + 1: unrelated draws.
  gen_pairs = (generated, np.roll(generated, 1, axis=0))
  gen_unrelated = metrics.window_correlations(*gen_pairs)
  first, second = _unrelated_real_pairs(real, config.seed)
  real_pairs = (real.kept_images[first], real.kept_images[second])
  real_unrelated = metrics.window_correlations(*real_pairs)
  coarse = {name: metrics.window_correlations(*map(metrics.coarse_windows, pairs))
            for name, pairs in (('generated', gen_pairs), ('real', real_pairs))}
  gen_speckle = metrics.speckle(generated)                    # [N * T, H, W]
  gen_speckle = gen_speckle.reshape(generated.shape[:2] + gen_speckle.shape[1:])
  real_speckle = metrics.speckle(real.kept_images)
  fine = {'generated': metrics.window_correlations(
              gen_speckle, np.roll(gen_speckle, 1, axis=0)),
          'real': metrics.window_correlations(real_speckle[first],
                                              real_speckle[second])}
  coherence = {
      'generated': _mean_or_none(gen_consecutive),
      'real': _mean_or_none(real.consecutive),
      'generated_unrelated': _mean_or_none(gen_unrelated),
      'real_unrelated': _mean_or_none(real_unrelated),
      'generated_unrelated_coarse': _mean_or_none(coarse['generated']),
      'real_unrelated_coarse': _mean_or_none(coarse['real']),
      'generated_unrelated_speckle': _mean_or_none(fine['generated']),
      'real_unrelated_speckle': _mean_or_none(fine['real']),
      'pairs': {'generated': len(gen_consecutive), 'real': len(real.consecutive),
                'generated_unrelated': len(gen_unrelated),
                'real_unrelated': len(real_unrelated)},
  }
  if config.num_resamples:
    coherence['intervals'] = _intervals(
        lambda pairs: np.array([pairs.mean()]), ('unrelated',),
        (gen_unrelated, gen_clusters),
        (real_unrelated, _real_clusters(real, real.kept_positions[first])), config)

  real_queries = _subsample(np.arange(len(real_features)), MAX_NEAREST_QUERIES, rng)
  gen_to_real = metrics.nearest_neighbour_distances(gen_features, real_features)
  gen_to_gen = metrics.nearest_neighbour_distances(
      gen_features, gen_features, exclude=np.arange(len(gen_features)))
  real_to_real = metrics.nearest_neighbour_distances(
      real_features[real_queries], real_features, exclude=real_queries)
  nearest = metrics.nearest_neighbour_summary(gen_to_real, gen_to_gen, real_to_real)
  nearest['space'] = 'window_features (Euclidean)'

  speckle_size = {'generated': gen_speckle.std(axis=(-2, -1)).ravel(),
                  'real': real_speckle.std(axis=(-2, -1))}
  speckle = {'generated': float(speckle_size['generated'].mean()),
             'real': _mean_or_none(speckle_size['real'])}
  result = {'frechet_distance': frechet, 'kernel_distance': kernel,
            'centroids': centroids, 'speckle': speckle,
            'temporal_coherence': coherence, 'nearest_neighbour': nearest}
  arrays = {'gen_features': gen_features, 'real_features': real_features,
            'gen_centroids': gen_centroids, 'real_centroids': real.centroids,
            'gen_consecutive': gen_consecutive, 'real_consecutive': real.consecutive,
            'gen_unrelated': gen_unrelated, 'real_unrelated': real_unrelated,
            'gen_to_real': gen_to_real, 'gen_to_gen': gen_to_gen,
            'real_to_real': real_to_real,
            'gen_speckle': speckle_size['generated'], 'real_speckle': speckle_size['real'],
            'gen_unrelated_speckle': fine['generated'],
            'real_unrelated_speckle': fine['real']}
  return result, arrays


def real_sequences_for_report(config: EvaluateConfig, manifest: dict) -> np.ndarray:
  """A few real sequences of `seq_len` windows, [n, T, H, W] (n may be below 3)."""
  from orca_gan import data
  dataset = data.sequence_dataset(config.tfrecords, 1, config.seq_len, seed=config.seed,
                                  repeat=False, manifest=manifest)
  shown = [batch[0, ..., 0] for batch in
           dataset.take(_SHOWN_SEQUENCES).as_numpy_iterator()]
  if not shown:  # Possible: the reader cuts runs at a random phase.
    size = manifest['transform']['image_size']
    return np.zeros([0, config.seq_len, size, size], np.float32)
  return np.stack(shown)


def summary_line(result: dict, output_dir: str) -> str:
  """The one line bin/evaluate prints."""
  fd = result['frechet_distance']
  kd = result['kernel_distance']
  c = result['centroids']
  coh = result['temporal_coherence']
  nn = result['nearest_neighbour']

  def num(x, fmt='.3g'):
    return 'n/a' if x is None else format(x, fmt)

  def pct(x):
    return 'n/a' if x is None else f'{100 * x:.0f}%'

  def interval(intervals, name, fmt='.2f', scale=1, unit=''):
    """' (gen / real 90 % interval 1.00 to 1.99)', or '' without intervals."""
    if intervals is None:
      return ''
    entry = intervals[name]
    kind = 'ratio' if 'ratio' in entry else 'difference'
    bounds = entry[kind]
    shown = ('n/a' if bounds is None else
             ' to '.join(format(scale * b, fmt) for b in bounds) + unit)
    return (f" (gen {'/' if kind == 'ratio' else '-'} real "
            f"{100 * intervals['confidence']:.0f} % interval {shown})")

  spreads, unrelated = c.get('intervals'), coh.get('intervals')

  return (
      f"evaluate: FD {num(fd['generated_vs_real'])} (same-size "
      f"{num(fd['generated_vs_real_same_size'])}, real-vs-real floor "
      f"{num(fd['real_vs_real_floor'])}; {fd['windows']['same_size']} windows each, "
      f"halves by {fd['floor_split']}), KID {num(kd['generated_vs_real'])} (floor "
      f"{num(kd['real_vs_real_floor'])}), centroid energy distance "
      f"{num(c['energy_distance'])} (p={num(c['p_value'])}; centroid std gen "
      f"{num(c['generated']['std_s'], '.2f')} s / "
      f"{num(c['generated']['std_khz'], '.2f')} kHz vs real "
      f"{num(c['real']['std_s'], '.2f')} s{interval(spreads, 'std_s')} / "
      f"{num(c['real']['std_khz'], '.2f')} kHz{interval(spreads, 'std_khz')}; "
      f"windows with no sound gen {pct(c['generated']['quiet_share'])} vs real "
      f"{pct(c['real']['quiet_share'])}"
      f"{interval(spreads, 'quiet_share', '+.0f', 100, ' points')}, without them "
      f"{num(c['generated']['std_khz_sounding'], '.2f')} vs "
      f"{num(c['real']['std_khz_sounding'], '.2f')} kHz), "
      f"coherence gen {num(coh['generated'], '.2f')} vs real "
      f"{num(coh['real'], '.2f')} (unrelated gen "
      f"{num(coh['generated_unrelated'], '.2f')}, real "
      f"{num(coh['real_unrelated'], '.2f')}{interval(unrelated, 'unrelated', '+.2f')}"
      f"; averaged to {metrics.COARSE_SIZE}x"
      f"{metrics.COARSE_SIZE} gen "
      f"{num(coh['generated_unrelated_coarse'], '.2f')}, real "
      f"{num(coh['real_unrelated_coarse'], '.2f')}; their speckle gen "
      f"{num(coh['generated_unrelated_speckle'], '.2f')}, real "
      f"{num(coh['real_unrelated_speckle'], '.2f')}), speckle gen "
      f"{num(result['speckle']['generated'], '.3f')} vs real "
      f"{num(result['speckle']['real'], '.3f')}, NN distance to real median "
      f"{num(nn['generated_to_train'].get('median'))} (real-to-real "
      f"{num(nn['train_to_train'].get('median'))}), "
      f"within the real-to-real 1st percentile: "
      f"{pct(nn['fraction_generated_to_train_below_p01'])} of generated windows of a "
      f"real one, {pct(nn['fraction_generated_to_generated_below_p01'])} of another "
      f"generated one; wrote {os.path.join(output_dir, 'metrics.json')} and "
      f"{os.path.join(output_dir, 'report.png')}")


def _jsonable(value):
  """numpy scalars -> Python numbers, non-finite floats -> None (JSON has no NaN)."""
  if isinstance(value, dict):
    return {k: _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if isinstance(value, (np.integer,)):
    return int(value)
  if isinstance(value, (float, np.floating)):
    return float(value) if np.isfinite(value) else None
  return value


def evaluate(config: EvaluateConfig, log=print) -> dict:
  """Runs the evaluation and writes metrics.json and report.png to config.output_dir.

  Returns:
    The metrics written to metrics.json.

  Raises:
    EvaluationError: Bad model, records or flags; nothing has been written.
  """
  from orca_gan import records
  loaded = load_generator(config.model)
  manifest, transform = check_records(config, loaded.transform)
  if os.path.exists(config.output_dir) and not os.path.isdir(config.output_dir):
    raise EvaluationError(f'--output_dir {config.output_dir} exists and is not a '
                          'folder')

  generated = generate(loaded, config.num_sequences, config.seq_len,
                       config.seed)
  log(f'evaluate: generated {config.num_sequences} sequences of {config.seq_len} '
      f'windows; reading {config.tfrecords}')
  with records.naming_bad_shards(config.tfrecords, manifest):
    real = read_real(config.tfrecords, manifest, transform, config.top_fraction,
                     config.seed)
    shown = real_sequences_for_report(config, manifest)
  result, arrays = compute_metrics(generated, real, transform, config)
  result = {
      'model': os.path.abspath(config.model),
      'tfrecords': os.path.abspath(config.tfrecords),
      'flags': dataclasses.asdict(config),
      'windows': {'generated': int(generated.shape[0] * generated.shape[1]),
                  'real': int(len(real.features)),
                  'real_files': int(len(np.unique(real.file_ids)))},
      **result,
      'model_metadata': loaded.metadata,
  }
  result = _jsonable(result)
  # Both files are rendered in memory first: a failure up to here leaves no output.
  png = io.BytesIO()
  plotting.evaluation_report(png, result, arrays, generated[:_SHOWN_SEQUENCES], shown,
                             transform, title=f'{config.model} vs {config.tfrecords}')
  contents = {'metrics.json': (json.dumps(result, indent=1) + '\n').encode('utf-8'),
              'report.png': png.getvalue()}
  try:
    os.makedirs(config.output_dir, exist_ok=True)
    for name, payload in contents.items():
      fileio.write_bytes_atomic(os.path.join(config.output_dir, name), payload)
  except OSError as e:
    raise EvaluationError(
        f'--output_dir {config.output_dir}: cannot write ({e})') from e
  return result
