"""How close generated spectrograms are to real ones: fixed features and statistics.

Pure numpy functions of image arrays (values in [-1, 1], layout [..., H (freq,
low->high), W (time)] as `spectral.audio_to_images` makes them); `evaluate_lib` runs
them on a generator's output and on real TFRecords.

The feature extractor
---------------------
`window_features` maps one window to a fixed vector, the same for every model and every
run, with no learned weights. Every entry is in image-value units (a mean or a
difference of values in [-1, 1], i.e. of scaled dB), so no entry dominates by its
scale and no standardisation from data is needed:

* spectral profile (32 values): the time-averaged value of every frequency row, pooled
  into `min(32, H)` equal bands, low -> high. Where the energy sits in frequency.
* temporal envelope (4): the frequency-averaged value of every column,
  e_t = mean_k x[k, t]; its mean, standard deviation, minimum and maximum. Loudness and
  how much it changes within the window.
* spectral flux (2): f_t = mean_k |x[k, t + 1] - x[k, t]|, its mean and standard
  deviation (the onset-detection feature of e.g. Dixon 2006): how fast the picture
  changes from column to column; calls and clicks raise it, stationary noise does not.
* low-order 2-D DCT (15): c[u, v] = mean_{k,t} x[k, t] a_u cos(pi (2k + 1) u / 2H)
  a_v cos(pi (2t + 1) v / 2W), a_0 = 1, a_{>0} = sqrt(2), for u, v < 4 except (0, 0)
  (the overall mean, which the profile already holds). The coarse layout of the
  image: slopes and bumps in frequency and time and their interaction.

A learned extractor (an ImageNet Inception net as in FID, or VGGish as in the Fréchet
Audio Distance, Kilgour et al. 2019) is neither available offline here nor trained on
hydrophone spectrograms; fixed features keep the numbers comparable between models,
runs and versions of this package.

The measures
------------
* `frechet_distance`: Fréchet distance between Gaussians fitted to two feature sets
  (Dowson & Landau 1982; used as FID by Heusel et al. 2017).
* `kernel_distance`: the unbiased estimate of the squared maximum mean discrepancy
  with the cubic polynomial kernel, as KID (Bińkowski et al. 2018). Unlike the
  Fréchet distance it has no bias from the sample size: its expectation is 0 for two
  samples of one distribution at any size, so it can be read on small samples.
* `energy_centroids` + `centroid_statistics`: where the loudest pixels of each window
  lie, and an energy-distance two-sample test (Székely & Rizzo 2004, 2013) with a
  permutation p-value between generated and real centroids. A generator that draws its
  calls in the same place again and again has a narrow centroid cloud: large distance,
  small p-value, small spread. `window_contrast_db` tells apart the windows that hold
  no sound (`QUIET_DB`): their loudest pixels are speckle, centred in the image, and
  a few of them widen the frequency spread on their own.
* `temporal_coherence`: mean Pearson correlation of consecutive windows of a sequence,
  what the LSTMs are there to produce. Of unrelated windows it measures diversity, and
  also on `coarse_windows`: real spectrograms carry speckle, pixel-scale variation
  independent from window to window that lowers their pixel correlation, so a
  generator that paints smooth images correlates more than real ones even if it
  varies its sounds as they do; the coarse correlation, of `COARSE_SIZE`-pixel block
  averages, tells the two apart.
* `speckle`: each pixel minus the mean of its 3x3 neighbourhood, the pixel-scale
  texture. Its standard deviation is how much speckle a window carries; the
  correlation of two unrelated windows' speckle whether it is random, as in real
  spectrograms (near 0), or a fixed pattern that a generator's convolutions paint
  into every window alike.
* `nearest_neighbour_distances` + `nearest_neighbour_summary`: distances from each
  generated window to its closest training window and closest other generated window
  in feature space; copies of training windows show up as near-zero distances (the
  memorisation check of WaveGAN/SpecGAN, Donahue et al. 2019), collapse as near-zero
  generated-to-generated distances.
* `cluster_bootstrap` + `bootstrap_interval`: how far a statistic would move on another
  sample of the same kind, by resampling whole clusters of correlated windows (a
  generated sequence; a stretch of a recording) with replacement (the cluster
  bootstrap; Efron & Tibshirani 1993, ch. 8). A spread or a share that rests on a few
  windows of a small set (the real windows without sound, say) gets a wide interval.
"""

import math

import numpy as np

NUM_BANDS = 32
# Side of `coarse_windows`: 8x8-pixel blocks of a 128x128 window (500 Hz x 0.19 s at
# 16 kHz and 3-s windows).
COARSE_SIZE = 16
DCT_ORDER = 4
ENVELOPE_STATS = ('mean', 'std', 'min', 'max')
FLUX_STATS = ('mean', 'std')


def _as_windows(images) -> np.ndarray:
  """[..., H, W] or [..., H, W, 1] -> float64 [N, H, W]."""
  images = np.asarray(images, np.float64)
  if images.ndim >= 4 and images.shape[-1] == 1:
    images = images[..., 0]
  if images.ndim < 2:
    raise ValueError(f'images must be [..., H, W], got shape {images.shape}')
  return images.reshape((-1,) + images.shape[-2:])


def _band_edges(size: int) -> np.ndarray:
  """Row boundaries of the `min(NUM_BANDS, size)` pooled bands (none empty)."""
  bands = min(NUM_BANDS, size)
  return np.round(np.linspace(0, size, bands + 1)).astype(int)


def _dct_basis(size: int) -> np.ndarray:
  """[DCT_ORDER, size] DCT-II rows scaled so that row 0 takes the mean."""
  order = min(DCT_ORDER, size)
  k = np.arange(order)[:, None]
  n = np.arange(size)[None, :]
  basis = np.cos(np.pi * (2 * n + 1) * k / (2 * size))
  basis[1:] *= math.sqrt(2.0)
  return basis / size


def feature_names(image_size: int) -> list:
  """Names of the columns of `window_features` for images of this height and width."""
  edges = _band_edges(image_size)
  order = min(DCT_ORDER, image_size)
  return ([f'profile_rows_{a}_{b}' for a, b in zip(edges[:-1], edges[1:])] +
          [f'envelope_{s}' for s in ENVELOPE_STATS] +
          [f'flux_{s}' for s in FLUX_STATS] +
          [f'dct_{u}_{v}' for u in range(order) for v in range(order) if u or v])


def window_features(images) -> np.ndarray:
  """The fixed feature vector of every window (see the module docstring).

  Args:
    images: Values in [-1, 1], shape [..., H (freq), W (time)] or [..., H, W, 1].

  Returns:
    float64 [N, D], N = number of windows, D = len(feature_names(H)) (53 for H >= 32).
  """
  x = _as_windows(images)                                    # [n, h, w]
  n, height, width = x.shape
  profile = x.mean(axis=2)                                   # [n, h]
  edges = _band_edges(height)
  bands = np.stack([profile[:, a:b].mean(axis=1)
                    for a, b in zip(edges[:-1], edges[1:])], axis=1)
  envelope = x.mean(axis=1)                                  # [n, w]
  envelope_stats = np.stack([envelope.mean(1), envelope.std(1), envelope.min(1),
                             envelope.max(1)], axis=1)
  if width > 1:
    flux = np.abs(np.diff(x, axis=2)).mean(axis=1)           # [n, w - 1]
  else:
    flux = np.zeros([n, 1])
  flux_stats = np.stack([flux.mean(1), flux.std(1)], axis=1)
  dct = np.einsum('uk,nkt,vt->nuv', _dct_basis(height), x, _dct_basis(width))
  dct = dct.reshape(n, -1)[:, 1:]                            # Drop (0, 0): the mean.
  return np.concatenate([bands, envelope_stats, flux_stats, dct], axis=1)


def _sqrtm_psd(matrix: np.ndarray) -> np.ndarray:
  """Square root of a symmetric positive semi-definite matrix, via `eigh`."""
  eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
  return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def gaussian_frechet_distance(mean_a, cov_a, mean_b, cov_b) -> float:
  """Fréchet (squared 2-Wasserstein) distance between two Gaussians.

  d^2 = ||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2))
  (Dowson & Landau 1982). S_a S_b is not symmetric; its square root's trace equals
  tr((S_a^(1/2) S_b S_a^(1/2))^(1/2)): the argument is symmetric positive
  semi-definite with the eigenvalues of S_a S_b (AB and BA share their non-zero
  eigenvalues), so both roots come from `eigh` with eigenvalues clipped at zero: no
  complex parts to discard as with a general `sqrtm`, and exact for singular
  covariances (fewer samples than dimensions).

  Args:
    mean_a, mean_b: Shape [D].
    cov_a, cov_b: Symmetric positive semi-definite, shape [D, D].

  Returns:
    The distance (squared, as FID reports it), >= 0.
  """
  mean_a, mean_b = np.asarray(mean_a, np.float64), np.asarray(mean_b, np.float64)
  cov_a, cov_b = np.asarray(cov_a, np.float64), np.asarray(cov_b, np.float64)
  root_a = _sqrtm_psd(cov_a)
  product = root_a @ cov_b @ root_a
  eigenvalues = np.linalg.eigvalsh((product + product.T) / 2.0)
  trace_root = np.sqrt(np.clip(eigenvalues, 0.0, None)).sum()
  distance = (np.sum((mean_a - mean_b)**2) + np.trace(cov_a) + np.trace(cov_b)
              - 2.0 * trace_root)
  return float(max(distance, 0.0))


def frechet_distance(features_a, features_b) -> float:
  """Fréchet distance between Gaussians fitted to two feature sets (FID's formula).

  Heusel et al. 2017, "GANs trained by a two time-scale update rule converge to a
  local Nash equilibrium"; means and unbiased (ddof = 1) covariances of the samples.
  The estimate is biased upwards for small samples, so compare it with a real-vs-real
  value at the same sample sizes.

  Args:
    features_a: [N_a, D], N_a >= 2.
    features_b: [N_b, D], N_b >= 2.

  Returns:
    The distance, >= 0; 0 for identical sets.
  """
  a, b = _two_feature_sets(features_a, features_b)
  return gaussian_frechet_distance(a.mean(0), np.cov(a, rowvar=False),
                                   b.mean(0), np.cov(b, rowvar=False))


def _two_feature_sets(features_a, features_b) -> tuple:
  """Both sets as float64 [N, D] arrays; ValueError unless 2-D, same D, N >= 2."""
  a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
  if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
    raise ValueError(f'features must be [N, D] with the same D, got {a.shape}, '
                     f'{b.shape}')
  if len(a) < 2 or len(b) < 2:
    raise ValueError(f'need at least 2 samples per set, got {len(a)} and {len(b)}')
  return a, b


def _kernel_sum(x: np.ndarray, y: np.ndarray, dim: int, block_size: int) -> float:
  """Sum of (x_i . y_j / dim + 1)^3 over all pairs, `block_size` rows of x at a time."""
  return float(sum(np.sum((x[start:start + block_size] @ y.T / dim + 1.0)**3)
                   for start in range(0, len(x), block_size)))


def kernel_distance(features_a, features_b, block_size: int = 1024) -> float:
  """Kernel Inception-style distance: unbiased MMD^2 with the cubic polynomial kernel.

  Bińkowski et al. 2018, "Demystifying MMD GANs": k(x, y) = (x . y / D + 1)^3 and
  MMD^2_u = sum_{i != j} k(a_i, a_j) / (m (m - 1)) + sum_{i != j} k(b_i, b_j) /
  (n (n - 1)) - 2 sum_{i, j} k(a_i, b_j) / (m n). Unbiased: its expectation is the
  population MMD^2 at any sample size, 0 when both sets come from one distribution
  (so an estimate may be slightly negative). The features enter unscaled, as
  `window_features` gives them (image-value units), so values are comparable between
  runs of one feature extractor, not with published KIDs on Inception features.

  Args:
    features_a: [m, D], m >= 2.
    features_b: [n, D], n >= 2.
    block_size: Rows per kernel block (bounds memory at block_size * max(m, n)
      floats).

  Returns:
    The estimate, in squared kernel units; near 0 for samples of one distribution.
  """
  a, b = _two_feature_sets(features_a, features_b)
  m, n, dim = len(a), len(b), a.shape[1]

  def within(x):
    diagonal = float(np.sum((np.sum(x**2, axis=1) / dim + 1.0)**3))
    return (_kernel_sum(x, x, dim, block_size) - diagonal) / (len(x) * (len(x) - 1))

  return (within(a) + within(b)
          - 2.0 * _kernel_sum(a, b, dim, block_size) / (m * n))


def loudest_pixels(images, top_fraction: float = 0.01) -> np.ndarray:
  """Which pixels of every window are its loudest: those at or above the window's k-th
  largest value, k = ceil(top_fraction * H * W) (ties included).

  Args:
    images: Shape [..., H, W] or [..., H, W, 1].
    top_fraction: Fraction of the pixels that count, in (0, 1].

  Returns:
    bool [N, H, W].
  """
  if not 0.0 < top_fraction <= 1.0:
    raise ValueError(f'top_fraction must be in (0, 1], got {top_fraction}')
  x = _as_windows(images)
  n, height, width = x.shape
  flat = x.reshape(n, -1)
  k = max(1, int(math.ceil(top_fraction * height * width)))
  threshold = -np.partition(-flat, k - 1, axis=1)[:, k - 1:k]        # [n, 1]
  return (flat >= threshold).reshape(n, height, width)


def energy_centroids(images, transform, top_fraction: float = 0.01) -> np.ndarray:
  """Time and frequency centroid of the loudest pixels of every window.

  The `loudest_pixels` of each window, weighted by linear power relative to the
  image's maximum, w = 10^((x - max x) * (db_max - db_min) / 20), i.e. power in the
  transform's dB scale. Column t is at (t + 0.5) * hop_s seconds and row k at
  (k + 0.5) * band_hz, the centres `spectral` gives them. A window of constant value
  gives the image centre.

  Args:
    images: Values in [-1, 1], shape [..., H, W] or [..., H, W, 1].
    transform: The `spectral.SpectrogramConfig` of the images (gives hop_s, band_hz
      and the dB range).
    top_fraction: Fraction of the pixels that count, in (0, 1].

  Returns:
    float64 [N, 2]: (seconds from the window start, kHz).
  """
  x = _as_windows(images)
  loud = loudest_pixels(x, top_fraction)
  _, height, width = x.shape
  peak = x.max(axis=(1, 2), keepdims=True)
  db_range = transform.db_max - transform.db_min
  weights = np.where(loud, 10.0**((x - peak) * db_range / 20.0), 0.0)
  total = weights.sum(axis=(1, 2))
  time_s = (np.arange(width) + 0.5) * transform.hop_s
  freq_khz = (np.arange(height) + 0.5) * transform.band_hz / 1000.0
  centroid_s = np.einsum('nkt,t->n', weights, time_s) / total
  centroid_khz = np.einsum('nkt,k->n', weights, freq_khz) / total
  return np.stack([centroid_s, centroid_khz], axis=1)


# A window whose loudest 1 % of pixels stand less than this above its median holds no
# sound worth locating (bin/evaluate's default --quiet_db): on the bench scene, the
# median real window stands 24 dB out, its quietest 4 % (gaps between calls) 6-8 dB,
# and generated windows of speckle alone 4-6 dB (benchmarks/README.md, "Where the
# excess frequency spread comes from").
QUIET_DB = 8.0


def window_contrast_db(images, transform) -> np.ndarray:
  """How far each window's loudest sound stands out: the 99th percentile of its pixels
  minus their median, in dB (the transform's scale).

  Args:
    images: Values in [-1, 1], shape [..., H, W] or [..., H, W, 1].
    transform: The `spectral.SpectrogramConfig` of the images (gives the dB range).

  Returns:
    float64 [N].
  """
  windows = _as_windows(images)
  flat = windows.reshape(len(windows), -1)
  units = np.percentile(flat, 99, axis=1) - np.median(flat, axis=1)
  return units * (transform.db_max - transform.db_min) / 2.0


def _pairwise_distances(points: np.ndarray) -> np.ndarray:
  diff = points[:, None, :] - points[None, :, :]
  return np.sqrt(np.sum(diff**2, axis=-1))


def energy_distance(a, b) -> float:
  """Energy distance between two samples (Székely & Rizzo 2004, 2013).

  E = 2 mean|x - y| - mean|x - x'| - mean|y - y'| over all pairs (V-statistic, so
  E >= 0, and E = 0 only for identical empirical distributions), |.| Euclidean.

  Args:
    a: [N_a, D] (or [N_a]).
    b: [N_b, D] (or [N_b]).
  """
  a, b = _as_points(a), _as_points(b)
  return float(_energy_statistics(_pairwise_distances(np.concatenate([a, b])),
                                  _membership(len(a), len(a) + len(b)))[0])


def _as_points(x) -> np.ndarray:
  x = np.asarray(x, np.float64)
  return x[:, None] if x.ndim == 1 else x


def _membership(n_a: int, total: int) -> np.ndarray:
  member = np.zeros([total, 1])
  member[:n_a] = 1.0
  return member


def _energy_statistics(distances: np.ndarray, member_a: np.ndarray) -> np.ndarray:
  """Energy distance for every labelling column of `member_a` [N, P] (1 = set a)."""
  n_a = member_a[:, 0].sum()
  n_b = len(distances) - n_a
  row_sums = distances.sum(axis=1)                  # [N]
  total = row_sums.sum()
  projected = distances @ member_a                  # [N, P]
  within_a = np.sum(member_a * projected, axis=0)   # sum over a, a'
  across = row_sums @ member_a - within_a           # sum over a, b
  within_b = total - 2.0 * across - within_a
  return 2.0 * across / (n_a * n_b) - within_a / n_a**2 - within_b / n_b**2


def energy_distance_test(a, b, num_permutations: int = 1000, seed: int = 0):
  """Energy distance and its permutation p-value.

  The p-value is (1 + #{permutations with E >= observed}) / (1 + num_permutations)
  (Phipson & Smyth 2010: never 0), from random relabellings of the pooled sample
  drawn with `numpy.random.default_rng(seed)`. Memory and time grow as
  (N_a + N_b)^2: subsample large sets first.

  Args:
    a: [N_a, D] (or [N_a]), N_a >= 1.
    b: [N_b, D] (or [N_b]), N_b >= 1.
    num_permutations: Random relabellings, >= 1.
    seed: Seed of the relabellings.

  Returns:
    (energy distance, p-value).
  """
  a, b = _as_points(a), _as_points(b)
  if len(a) < 1 or len(b) < 1 or num_permutations < 1:
    raise ValueError('need at least one point per set and one permutation')
  distances = _pairwise_distances(np.concatenate([a, b]))
  total = len(a) + len(b)
  observed = _energy_statistics(distances, _membership(len(a), total))[0]
  rng = np.random.default_rng(seed)
  exceed = 0
  for start in range(0, num_permutations, 128):
    count = min(128, num_permutations - start)
    member = np.zeros([total, count])
    for column in range(count):
      member[rng.permutation(total)[:len(a)], column] = 1.0
    # A relative tolerance so that a relabelling equal to the observed one counts.
    exceed += int(np.sum(_energy_statistics(distances, member) >=
                         observed * (1.0 - 1e-9)))
  return float(observed), (1.0 + exceed) / (1.0 + num_permutations)


def centroid_statistics(generated_centroids, real_centroids, transform,
                        num_permutations: int = 1000, seed: int = 0,
                        generated_contrast_db=None, real_contrast_db=None,
                        quiet_db: float = QUIET_DB) -> dict:
  """Compares where generated and real windows put their loudest energy.

  Both coordinates are first divided by their range (window_s seconds and
  sample_rate_hz / 2 in kHz), so time and frequency weigh alike and the distance does
  not depend on the units; then `energy_distance_test`.

  Args:
    generated_centroids: [N_g, 2] (seconds, kHz) from `energy_centroids`.
    real_centroids: [N_r, 2].
    transform: The `spectral.SpectrogramConfig` of both.
    num_permutations: For the p-value.
    seed: Seed of the permutations.
    generated_contrast_db: Optional [N_g] `window_contrast_db` of the same windows.
    real_contrast_db: Optional [N_r], likewise.
    quiet_db: Windows whose contrast is below this hold no sound.

  Returns:
    {'energy_distance', 'p_value', 'num_permutations', 'generated': {...},
    'real': {...}}; each set's dict holds its count, the mean and standard
    deviation of both coordinates ('mean_s', 'std_s', 'mean_khz', 'std_khz') and
    their quartiles ('quartiles_s', 'quartiles_khz': 25th, 50th, 75th percentile;
    unlike the standard deviation, not moved by a few outlying windows). With its
    contrast, also 'quiet_share' (the share of windows below `quiet_db`) and
    'std_khz_sounding' (the frequency spread of the others; None if none).
  """
  scale = np.array([transform.window_s, transform.sample_rate_hz / 2000.0])
  generated = np.asarray(generated_centroids, np.float64)
  real = np.asarray(real_centroids, np.float64)
  distance, p_value = energy_distance_test(generated / scale, real / scale,
                                           num_permutations, seed)

  def spread(c, contrast_db):
    quartiles = np.percentile(c, [25, 50, 75], axis=0)   # [3, 2]
    spreads = centroid_spreads(c, contrast_db, quiet_db)
    result = {'count': int(len(c)), 'mean_s': float(c[:, 0].mean()),
              'std_s': spreads.pop('std_s'), 'mean_khz': float(c[:, 1].mean()),
              'std_khz': spreads.pop('std_khz'),
              'quartiles_s': [float(q) for q in quartiles[:, 0]],
              'quartiles_khz': [float(q) for q in quartiles[:, 1]]}
    result.update(spreads)
    return result

  return {'energy_distance': distance, 'p_value': p_value,
          'num_permutations': int(num_permutations),
          'generated': spread(generated, generated_contrast_db),
          'real': spread(real, real_contrast_db)}


# What `centroid_spreads` returns, in its order.
CENTROID_SPREADS = ('std_s', 'std_khz', 'quiet_share', 'std_khz_sounding')


def centroid_spreads(centroids, contrast_db=None, quiet_db: float = QUIET_DB) -> dict:
  """How widely a set of windows spreads its energy centroids.

  Args:
    centroids: [N, 2] (seconds, kHz) from `energy_centroids`.
    contrast_db: Optional [N] `window_contrast_db` of the same windows.
    quiet_db: Windows whose contrast is below this hold no sound.

  Returns:
    {'std_s', 'std_khz'}: the standard deviation of each coordinate; with the
    contrast also 'quiet_share' (the share of windows below `quiet_db`) and
    'std_khz_sounding' (the frequency spread of the others; None if none).
  """
  c = np.asarray(centroids, np.float64)
  result: dict = {'std_s': float(c[:, 0].std()), 'std_khz': float(c[:, 1].std())}
  if contrast_db is not None:
    quiet = np.asarray(contrast_db) < quiet_db
    result['quiet_share'] = float(quiet.mean())
    result['std_khz_sounding'] = float(c[~quiet, 1].std()) if (~quiet).any() else None
  return result


def window_correlations(images_a, images_b) -> np.ndarray:
  """Pearson correlation of the pixels of paired windows.

  A pair in which a window has no variation has no correlation; it counts as 1 if the
  two windows are equal and 0 otherwise.

  Args:
    images_a: [..., H, W] or [..., H, W, 1].
    images_b: The same shape.

  Returns:
    float64 [N]: one value in [-1, 1] per pair.
  """
  a, b = _as_windows(images_a), _as_windows(images_b)
  if a.shape != b.shape:
    raise ValueError(f'paired windows must have one shape, got {a.shape}, {b.shape}')
  a = a.reshape(len(a), -1)
  b = b.reshape(len(b), -1)
  a_centred = a - a.mean(axis=1, keepdims=True)
  b_centred = b - b.mean(axis=1, keepdims=True)
  norms = np.sqrt(np.sum(a_centred**2, axis=1) * np.sum(b_centred**2, axis=1))
  flat = norms <= 1e-12 * a.shape[1]
  correlation = np.sum(a_centred * b_centred, axis=1) / np.where(flat, 1.0, norms)
  equal = np.all(np.isclose(a, b, rtol=0.0, atol=1e-6), axis=1)
  return np.where(flat, equal.astype(np.float64), np.clip(correlation, -1.0, 1.0))


def coarse_windows(images) -> np.ndarray:
  """Windows averaged over square blocks down to at most COARSE_SIZE pixels a side.

  Args:
    images: [..., H, W] or [..., H, W, 1] with H and W multiples of the block side
      (powers of two, as every image of this package).

  Returns:
    float64 [N, H / f, W / f] with f = max(1, H // COARSE_SIZE).
  """
  windows = _as_windows(images)
  n, h, w = windows.shape
  f = max(1, h // COARSE_SIZE)
  return windows.reshape(n, h // f, f, w // f, f).mean(axis=(2, 4))


def speckle(images) -> np.ndarray:
  """Each pixel minus the mean of its 3x3 neighbourhood (edges repeated).

  Args:
    images: [..., H, W] or [..., H, W, 1].

  Returns:
    float64 [N, H, W].
  """
  windows = _as_windows(images)
  _, h, w = windows.shape
  padded = np.pad(windows, ((0, 0), (1, 1), (1, 1)), mode='edge')
  neighbourhood = sum(padded[:, i:i + h, j:j + w] for i in range(3) for j in range(3))
  return windows - neighbourhood / 9.0


def consecutive_correlations(sequences) -> np.ndarray:
  """`window_correlations` of windows t and t + 1 of every sequence.

  Args:
    sequences: [N, T, H, W] or [N, T, H, W, 1], T >= 2.

  Returns:
    float64 [N * (T - 1)].
  """
  x = np.asarray(sequences)
  if x.ndim == 5 and x.shape[-1] == 1:
    x = x[..., 0]
  if x.ndim != 4 or x.shape[1] < 2:
    raise ValueError(f'sequences must be [N, T >= 2, H, W], got shape {x.shape}')
  return window_correlations(x[:, :-1], x[:, 1:])


def temporal_coherence(sequences) -> float:
  """Mean Pearson correlation of consecutive windows within sequences.

  r(t) = cov(x_t, x_{t+1}) / (sd(x_t) sd(x_{t+1})) over the pixels of windows t and
  t + 1 of one sequence, averaged over t and sequences. Real recordings are coherent
  (the background and a call that goes on carry over from one window to the next);
  independent draws of a generator without memory are less so, unless all its windows
  look alike, so read it next to the correlation of unrelated windows.

  Args:
    sequences: [N, T, H, W] or [N, T, H, W, 1], T >= 2.
  """
  return float(consecutive_correlations(sequences).mean())


def nearest_neighbour_distances(queries, references, exclude=None,
                                chunk_size: int = 256) -> np.ndarray:
  """Euclidean distance from each query to its nearest reference.

  Candidates come from ||q||^2 + ||r||^2 - 2 q.r in chunks; the distance to the chosen
  neighbour is then recomputed directly, so an exact copy gives exactly 0.

  Args:
    queries: [N_q, D].
    references: [N_r, D].
    exclude: Optional int [N_q]: for query i, reference exclude[i] is skipped (e.g.
      itself, when queries are references); -1 skips none.
    chunk_size: Queries per chunk (bounds memory at chunk_size * N_r floats).

  Returns:
    float64 [N_q]; inf where no reference is left.
  """
  q = np.asarray(queries, np.float64)
  r = np.asarray(references, np.float64)
  if q.ndim != 2 or r.ndim != 2 or q.shape[1] != r.shape[1]:
    raise ValueError(f'need [N, D] arrays with one D, got {q.shape}, {r.shape}')
  out = np.full(len(q), np.inf)
  if len(r) == 0:
    return out
  r_norms = np.sum(r**2, axis=1)
  for start in range(0, len(q), chunk_size):
    block = q[start:start + chunk_size]
    squared = (np.sum(block**2, axis=1)[:, None] + r_norms[None, :]
               - 2.0 * block @ r.T)                                 # [c, N_r]
    if exclude is not None:
      skip = np.asarray(exclude)[start:start + chunk_size]
      rows = np.nonzero(skip >= 0)[0]
      squared[rows, skip[rows]] = np.inf
    best = np.argmin(squared, axis=1)
    valid = np.isfinite(squared[np.arange(len(block)), best])
    exact = np.sqrt(np.sum((block - r[best])**2, axis=1))
    out[start:start + len(block)] = np.where(valid, exact, np.inf)
  return out


def _summary(distances: np.ndarray) -> dict:
  d = distances[np.isfinite(distances)]
  if len(d) == 0:
    return {'count': 0}
  return {'count': int(len(d)), 'min': float(d.min()),
          'p01': float(np.percentile(d, 1)), 'p10': float(np.percentile(d, 10)),
          'median': float(np.median(d)), 'mean': float(d.mean())}


def nearest_neighbour_summary(generated_to_train, generated_to_generated,
                              train_to_train) -> dict:
  """Summary statistics of nearest-neighbour distances, and memorisation fractions.

  The reference is the 1st percentile of the real windows' distances to their nearest
  other real window, t = p01(train_to_train). `fraction_generated_to_train_below_p01`
  is the fraction of generated windows at most t from a training window (about 0.01
  for a generator that draws like the data, near 1 for one that copies it);
  `fraction_generated_to_generated_below_p01` likewise among generated windows (high
  when the generator repeats itself).

  Args:
    generated_to_train: [N_g] from `nearest_neighbour_distances(gen, train)`.
    generated_to_generated: [N_g], each generated window to its nearest other one.
    train_to_train: [N_t], each real window to its nearest other one.

  Returns:
    Dict of summaries ('count', 'min', 'p01', 'p10', 'median', 'mean') for the three
    sets, 'train_to_train_p01' and the two fractions.
  """
  sets = {'generated_to_train': np.asarray(generated_to_train, np.float64),
          'generated_to_generated': np.asarray(generated_to_generated, np.float64),
          'train_to_train': np.asarray(train_to_train, np.float64)}
  result: dict = {name: _summary(d) for name, d in sets.items()}
  reference = sets['train_to_train'][np.isfinite(sets['train_to_train'])]
  threshold = float(np.percentile(reference, 1)) if len(reference) else float('nan')
  result['train_to_train_p01'] = threshold
  for name in ('generated_to_train', 'generated_to_generated'):
    d = sets[name][np.isfinite(sets[name])]
    result[f'fraction_{name}_below_p01'] = (float(np.mean(d <= threshold))
                                            if len(d) else float('nan'))
  return result


def cluster_bootstrap(statistics, clusters, num_resamples: int, seed) -> np.ndarray:
  """Statistics of resamples that draw whole clusters with replacement.

  Each resample draws as many clusters as there are, uniformly with replacement, and
  joins their members; windows of one cluster (one generated sequence, one stretch of
  a recording) are drawn together, so that the resamples vary as much as samples of
  correlated windows do.

  Args:
    statistics: Function of an index array (into the N items; an item may repeat) to
      a 1-D array of K numbers.
    clusters: [N] cluster of every item (any numbers or strings).
    num_resamples: How many resamples.
    seed: Seed (anything `np.random.default_rng` takes) of the draws.

  Returns:
    float64 [num_resamples, K].
  """
  inverse = np.unique(np.asarray(clusters), return_inverse=True)[1].reshape(-1)
  order = np.argsort(inverse, kind='stable')
  members = np.split(order, np.cumsum(np.bincount(inverse))[:-1])
  rng = np.random.default_rng(seed)
  resamples = []
  for _ in range(num_resamples):
    drawn = rng.integers(len(members), size=len(members))
    resamples.append(np.asarray(statistics(np.concatenate([members[i] for i in drawn])),
                                np.float64))
  return np.stack(resamples)


def bootstrap_interval(resamples, confidence: float = 0.9) -> list:
  """The percentile interval of `resamples` [R, K]: [[low, high]] * K (None if undefined)."""
  tail = 50.0 * (1.0 - confidence)
  resamples = np.asarray(resamples, np.float64)
  intervals = []
  for column in resamples.T:
    column = column[np.isfinite(column)]
    intervals.append([float(v) for v in np.percentile(column, [tail, 100.0 - tail])]
                     if len(column) else None)
  return intervals
