"""Tests of orca_gan.metrics on shared numeric cases and synthetic windows."""

import math

import numpy as np
import pytest

from orca_gan import metrics
from orca_gan import spectral

TRANSFORM = spectral.SpectrogramConfig(image_size=32)

_S1 = [[2.0, 0.5], [0.5, 1.0]]
_S2 = [[1.0, -0.3], [-0.3, 3.0]]
# (mean_a, cov_a, mean_b, cov_b): Gaussians whose Fréchet distance has a reference.
GAUSSIAN_CASES = [
    ([1.0, 2.0], _S1, [1.0, 2.0], _S1),                      # identical
    ([0.0, 0.0], _S1, [3.0, -4.0], _S1),                     # shifted mean
    ([0.0, 1.0], np.diag([4.0, 1.0]), [1.0, 1.0], np.diag([1.0, 9.0])),  # diagonal
    ([0.5, -1.0], _S1, [0.0, 0.0], _S2),                     # not commuting
    ([0.0, 0.0], [[1.0, 1.0], [1.0, 1.0]], [0.0, 0.0], np.eye(2)),  # singular
    (np.zeros(5), np.eye(5), np.ones(5), 4.0 * np.eye(5)),
]


def reference_frechet(mean_a, cov_a, mean_b, cov_b):
  """||mu_a - mu_b||^2 + tr S_a + tr S_b - 2 sum sqrt(eig(S_a S_b)).

  A different route from the library's: the eigenvalues of the non-symmetric
  product S_a S_b, which are real and non-negative for PSD S_a, S_b.
  """
  mean_a, mean_b = np.asarray(mean_a), np.asarray(mean_b)
  cov_a, cov_b = np.asarray(cov_a, float), np.asarray(cov_b, float)
  eigenvalues = np.linalg.eigvals(cov_a @ cov_b).real
  return (np.sum((mean_a - mean_b)**2) + np.trace(cov_a) + np.trace(cov_b)
          - 2.0 * np.sum(np.sqrt(np.clip(eigenvalues, 0.0, None))))


@pytest.mark.parametrize('mean_a, cov_a, mean_b, cov_b', GAUSSIAN_CASES)
def test_gaussian_frechet_distance_matches_reference(mean_a, cov_a, mean_b, cov_b):
  expected = reference_frechet(mean_a, cov_a, mean_b, cov_b)
  assert metrics.gaussian_frechet_distance(mean_a, cov_a, mean_b, cov_b) == (
      pytest.approx(expected, abs=1e-9))
  assert metrics.gaussian_frechet_distance(mean_b, cov_b, mean_a, cov_a) == (
      pytest.approx(expected, abs=1e-9))


def test_gaussian_frechet_distance_closed_forms():
  # Equal covariances: only the means count.
  assert metrics.gaussian_frechet_distance([0, 0], _S1, [3, -4], _S1) == (
      pytest.approx(25.0))
  # Diagonal covariances: sum of (sqrt(var_a) - sqrt(var_b))^2 plus the mean shift.
  assert metrics.gaussian_frechet_distance(
      [0, 1], np.diag([4.0, 1.0]), [1, 1], np.diag([1.0, 9.0])) == (
          pytest.approx(1.0 + (2 - 1)**2 + (1 - 3)**2))


def sample(n, mean, cov, seed):
  return np.random.default_rng(seed).multivariate_normal(mean, cov, size=n)


def test_frechet_distance_of_identical_sets_is_zero():
  features = sample(500, [0.0, 1.0, 2.0], np.diag([1.0, 2.0, 0.5]), 0)
  assert metrics.frechet_distance(features, features) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_of_samples_approaches_closed_form():
  a = sample(20000, [0.0, 0.0], _S1, 1)
  b = sample(20000, [1.0, 2.0], _S1, 2)
  assert metrics.frechet_distance(a, b) == pytest.approx(5.0, rel=0.03)


def test_frechet_distance_grows_with_an_injected_shift():
  rng = np.random.default_rng(3)
  real = rng.normal(size=(400, 8))
  generated = rng.normal(size=(400, 8))
  distances = [metrics.frechet_distance(real, generated + shift)
               for shift in (0.0, 0.25, 0.5, 1.0, 2.0)]
  assert all(a < b for a, b in zip(distances, distances[1:])), distances
  assert distances[0] < 0.2


def test_frechet_distance_rejects_mismatched_features():
  with pytest.raises(ValueError, match='same D'):
    metrics.frechet_distance(np.zeros([4, 3]), np.zeros([4, 2]))
  with pytest.raises(ValueError, match='at least 2'):
    metrics.frechet_distance(np.zeros([1, 3]), np.zeros([4, 3]))


def test_window_features_are_fixed_and_in_image_units():
  rng = np.random.default_rng(4)
  images = rng.uniform(-1, 1, size=(3, 32, 32))
  features = metrics.window_features(images)
  names = metrics.feature_names(32)
  assert features.shape == (3, len(names)) == (3, 53)
  np.testing.assert_array_equal(features, metrics.window_features(images[..., None]))
  assert metrics.window_features(images[:, :16, :16]).shape == (
      3, len(metrics.feature_names(16)))

  constant = np.full([1, 32, 32], -0.25)
  values = dict(zip(names, metrics.window_features(constant)[0]))
  for name, value in values.items():
    expected = -0.25 if (name.startswith('profile') or name in (
        'envelope_mean', 'envelope_min', 'envelope_max')) else 0.0
    assert value == pytest.approx(expected, abs=1e-12), name

  # The DCT coefficients are amplitudes of unit-RMS cosines: a pattern of amplitude A
  # along frequency gives dct_1_0 = A and nothing else.
  rows = np.arange(32)
  pattern = 0.3 * math.sqrt(2) * np.cos(np.pi * (2 * rows + 1) / 64)
  values = dict(zip(names, metrics.window_features(
      np.broadcast_to(pattern[:, None], (1, 32, 32)))[0]))
  assert values['dct_1_0'] == pytest.approx(0.3)
  assert values['dct_0_1'] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize('transform', [
    TRANSFORM, spectral.SpectrogramConfig(sample_rate_hz=8000, window_s=1.0,
                                          image_size=16)])
@pytest.mark.parametrize('row, column', [(0, 0), (5, 7), (-1, 3), (8, -1)])
def test_energy_centroid_of_one_bright_pixel_is_that_pixel(transform, row, column):
  size = transform.image_size
  row, column = row % size, column % size
  # Ties with the background count, but at 10^(-1.9 * 100 / 20) of the bright
  # pixel's power each.
  images = np.full([2, size, size], -1.0)
  images[0, row, column] = 0.9
  images[1, 2, 1] = 0.9
  centroids = metrics.energy_centroids(images, transform, top_fraction=0.01)
  assert centroids.shape == (2, 2)
  np.testing.assert_allclose(
      centroids[0], [(column + 0.5) * transform.hop_s,
                     (row + 0.5) * transform.band_hz / 1000.0], rtol=0, atol=1e-5)


def test_energy_centroid_of_a_flat_window_is_its_centre():
  centroids = metrics.energy_centroids(np.full([1, 32, 32], -1.0), TRANSFORM, 0.01)
  np.testing.assert_allclose(centroids[0], [1.5, 4.0])


def blob_images(count, rng, fixed=None):
  """Noise windows with one bright 3x3 blob, at random places or at `fixed`."""
  images = rng.uniform(-1.0, -0.6, size=(count, 32, 32))
  for image in images:
    row, column = fixed if fixed else rng.integers(2, 30, size=2)
    image[row - 1:row + 2, column - 1:column + 2] = 0.8
  return images


def test_centroid_statistic_flags_a_generator_that_repeats_itself():
  rng = np.random.default_rng(5)
  real = metrics.energy_centroids(blob_images(80, rng), TRANSFORM)
  same_image = np.repeat(blob_images(1, rng, fixed=(16, 16)), 80, axis=0)
  repeated = metrics.energy_centroids(same_image, TRANSFORM)
  other_real = metrics.energy_centroids(blob_images(80, rng), TRANSFORM)

  flagged = metrics.centroid_statistics(repeated, real, TRANSFORM, 500, seed=0)
  null = metrics.centroid_statistics(other_real, real, TRANSFORM, 500, seed=0)
  assert flagged['p_value'] == pytest.approx(1 / 501)
  assert null['p_value'] > 0.05
  assert flagged['energy_distance'] > 10 * null['energy_distance']
  assert flagged['generated']['std_s'] == pytest.approx(0.0, abs=1e-9)
  assert flagged['real']['std_s'] > 0.5 and null['generated']['std_khz'] > 1.0
  # Quartiles: the repeated image's all equal, the real ones' those of the cloud.
  assert len(set(flagged['generated']['quartiles_khz'])) == 1
  np.testing.assert_allclose(flagged['real']['quartiles_s'],
                             np.percentile(real[:, 0], [25, 50, 75]))


def test_windows_of_speckle_alone_are_quiet_and_set_apart_from_the_spread():
  """Windows of speckle alone put their centroid at the image centre (4 kHz here) and
  widen the frequency spread; their contrast names them, and the spread without them
  is the sounds' own."""
  rng = np.random.default_rng(6)
  sounds = rng.uniform(-1.0, -0.9, size=(20, 32, 32))
  for image, row in zip(sounds, rng.integers(2, 8, size=20)):   # Low sounds, 0.3-1 kHz.
    image[row - 1:row + 2, 10:20] = 0.0
  speckle = rng.uniform(-0.62, -0.6, size=(4, 32, 32))          # 1 dB of texture.
  contrast = metrics.window_contrast_db(np.concatenate([sounds, speckle]), TRANSFORM)
  # 99th percentile of a sound window: inside its 30-pixel blob (3 % of 1024).
  np.testing.assert_allclose(contrast[:20], [50.0 * (0.0 - np.median(w)) for w in sounds],
                             rtol=1e-6)
  assert np.all(contrast[20:] < 1.0) and metrics.QUIET_DB == 8.0
  centroids = metrics.energy_centroids(np.concatenate([sounds, speckle]), TRANSFORM)
  stats = metrics.centroid_statistics(centroids, centroids[:20], TRANSFORM, 20, seed=0,
                                      generated_contrast_db=contrast,
                                      real_contrast_db=contrast[:20])
  generated, real = stats['generated'], stats['real']
  assert generated['quiet_share'] == pytest.approx(4 / 24) and real['quiet_share'] == 0.0
  assert generated['std_khz'] > 2 * real['std_khz']   # Widened by 4 windows.
  assert generated['std_khz_sounding'] == pytest.approx(real['std_khz'])
  assert 'quiet_share' not in metrics.centroid_statistics(centroids, centroids,
                                                          TRANSFORM, 20)['real']
  # A threshold above every sound's contrast leaves no window sounding.
  loud = metrics.centroid_statistics(centroids, centroids[:20], TRANSFORM, 20, seed=0,
                                     generated_contrast_db=contrast,
                                     real_contrast_db=contrast[:20],
                                     quiet_db=contrast.max() + 1.0)['real']
  assert loud['quiet_share'] == 1.0 and loud['std_khz_sounding'] is None


def test_energy_distance_matches_its_definition():
  rng = np.random.default_rng(6)
  a, b = rng.normal(size=(7, 2)), rng.normal(1.0, 1.0, size=(5, 2))

  def mean_distance(x, y):
    return np.mean([np.linalg.norm(p - q) for p in x for q in y])

  expected = 2 * mean_distance(a, b) - mean_distance(a, a) - mean_distance(b, b)
  assert metrics.energy_distance(a, b) == pytest.approx(expected)
  assert metrics.energy_distance(a, a) == pytest.approx(0.0, abs=1e-12)
  statistic, p_value = metrics.energy_distance_test(a, b, 50, seed=1)
  assert statistic == pytest.approx(expected)
  assert (statistic, p_value) == metrics.energy_distance_test(a, b, 50, seed=1)


def test_window_correlations_match_numpy_and_treat_flat_windows():
  rng = np.random.default_rng(7)
  a, b = rng.normal(size=(4, 8, 8)), rng.normal(size=(4, 8, 8))
  b[1] = 0.5 * a[1] + 0.1 * b[1]
  expected = [np.corrcoef(x.ravel(), y.ravel())[0, 1] for x, y in zip(a, b)]
  np.testing.assert_allclose(metrics.window_correlations(a, b), expected, rtol=1e-10)
  flat = np.full([2, 8, 8], -1.0)
  np.testing.assert_array_equal(
      metrics.window_correlations(flat, np.stack([flat[0], a[0]])), [1.0, 0.0])


def test_coarse_correlation_sees_past_speckle_that_pixels_do_not():
  """Two sets of windows that vary their sounds alike, one with speckle (as real
  spectrograms) and one smooth: pixel correlation of unrelated windows tells them apart,
  the coarse one hardly."""
  rng = np.random.default_rng(9)
  rows = np.linspace(0.5, -0.5, 64)[:, None]                  # A shared tilt.
  t = np.arange(64)
  centres = rng.uniform(0, 64, size=(200, 1, 1))
  sounds = 0.6 * np.exp(-0.5 * ((t - centres) / 6.0)**2) * (np.abs(rows) < 0.2)
  smooth = rows + sounds                                       # [200, 64, 64]
  speckled = smooth + rng.normal(0, 0.5, smooth.shape)
  coarse = metrics.coarse_windows(speckled[..., None])
  assert coarse.shape == (200, 16, 16)
  np.testing.assert_allclose(coarse[3, 2, 5], speckled[3, 8:12, 20:24].mean())
  correlations = {}
  for name, windows in (('smooth', smooth), ('speckled', speckled)):
    pairs = (windows[::2], windows[1::2])
    correlations[name] = (metrics.window_correlations(*pairs).mean(),
                          metrics.window_correlations(
                              *map(metrics.coarse_windows, pairs)).mean())
  (smooth_pixels, smooth_coarse), (speckled_pixels, speckled_coarse) = (
      correlations['smooth'], correlations['speckled'])
  assert smooth_pixels > speckled_pixels + 0.3, correlations
  # Block averages keep a quarter of the noise's standard deviation (4x4 blocks).
  assert abs(smooth_coarse - speckled_coarse) < 0.2 * (smooth_pixels - speckled_pixels)


def test_speckle_tells_a_painted_texture_from_random_speckle():
  """Real speckle is drawn anew in every window; a generator's convolutions can paint
  one texture into all of them, which the speckle of unrelated windows shows and the
  block averages do not."""
  rng = np.random.default_rng(10)
  ramp = np.linspace(-0.5, 0.5, 32)
  np.testing.assert_allclose(metrics.speckle(np.full([2, 32, 32], 0.3)), 0.0, atol=1e-12)
  # A plane has no speckle away from the edges.
  plane = (ramp[:, None] + ramp[None, :])[None]
  np.testing.assert_allclose(metrics.speckle(plane)[0, 1:-1, 1:-1], 0.0, atol=1e-12)
  sounds = rng.uniform(-0.3, 0.3, size=(200, 1, 1)) + np.broadcast_to(
      ramp[:, None], (32, 32))                                   # [200, 32, 32]
  random = sounds + rng.normal(0, 0.05, sounds.shape)
  painted = sounds + rng.normal(0, 0.05, (32, 32))          # One texture for all.
  # Independent noise of std s leaves sqrt(1 - 1/9) s around its 3x3 mean.
  assert metrics.speckle(random).std() == pytest.approx(0.05 * np.sqrt(8 / 9), rel=0.05)
  unrelated = {}
  for name, windows in (('random', random), ('painted', painted)):
    pairs = (windows[::2], windows[1::2])
    unrelated[name] = (metrics.window_correlations(*map(metrics.speckle, pairs)).mean(),
                       metrics.window_correlations(
                           *map(metrics.coarse_windows, pairs)).mean())
  assert abs(unrelated['random'][0]) < 0.05 and unrelated['painted'][0] > 0.95
  assert abs(unrelated['random'][1] - unrelated['painted'][1]) < 0.05, unrelated


def test_temporal_coherence_is_higher_for_repeated_than_for_shuffled_windows():
  rng = np.random.default_rng(8)
  base = rng.uniform(-1, 1, size=(16, 1, 32, 32))
  repeated = base + 0.2 * rng.normal(size=(16, 5, 32, 32))   # [n, T, h, w]
  shuffled = rng.permutation(repeated.reshape(80, 32, 32)).reshape(16, 5, 32, 32)
  coherent = metrics.temporal_coherence(repeated)
  independent = metrics.temporal_coherence(shuffled)
  assert coherent > 0.8 and abs(independent) < 0.3 and coherent > independent + 0.5
  assert len(metrics.consecutive_correlations(repeated[..., None])) == 16 * 4


def test_nearest_neighbour_distance_of_a_copied_training_window_is_zero():
  rng = np.random.default_rng(9)
  train = metrics.window_features(rng.uniform(-1, 1, size=(20, 32, 32)))
  generated = np.concatenate([train[[3, 11]], train[:2] + 0.5])
  distances = metrics.nearest_neighbour_distances(generated, train, chunk_size=3)
  assert distances[0] == 0.0 and distances[1] == 0.0
  brute = np.min(np.linalg.norm(generated[:, None] - train[None], axis=-1), axis=1)
  np.testing.assert_allclose(distances, brute, rtol=1e-9)

  within = metrics.nearest_neighbour_distances(train, train, exclude=np.arange(20))
  pairwise = np.linalg.norm(train[:, None] - train[None], axis=-1)
  np.fill_diagonal(pairwise, np.inf)
  np.testing.assert_allclose(within, pairwise.min(axis=1), rtol=1e-9)
  assert np.all(within > 0)


def test_nearest_neighbour_summary_counts_memorised_windows():
  train_to_train = np.linspace(1.0, 2.0, 101)       # 1st percentile: 1.01.
  generated_to_train = np.array([0.0, 0.0, 1.5, 1.8])
  generated_to_generated = np.array([0.5, 0.5, 3.0, 3.0])
  summary = metrics.nearest_neighbour_summary(generated_to_train,
                                              generated_to_generated, train_to_train)
  assert summary['train_to_train_p01'] == pytest.approx(1.01)
  assert summary['fraction_generated_to_train_below_p01'] == 0.5
  assert summary['fraction_generated_to_generated_below_p01'] == 0.5
  assert summary['generated_to_train']['min'] == 0.0
  assert summary['train_to_train']['median'] == pytest.approx(1.5)


def test_kernel_distance_matches_its_definition():
  rng = np.random.default_rng(10)
  a, b = rng.normal(size=(6, 3)), rng.normal(0.5, 1.0, size=(4, 3))

  def kernel(x, y):
    return (np.dot(x, y) / 3 + 1.0)**3

  def mean_kernel(x, y, skip_diagonal):
    values = [kernel(x[i], y[j]) for i in range(len(x)) for j in range(len(y))
              if not (skip_diagonal and i == j)]
    return np.mean(values)

  expected = (mean_kernel(a, a, True) + mean_kernel(b, b, True)
              - 2 * mean_kernel(a, b, False))
  assert metrics.kernel_distance(a, b) == pytest.approx(expected, rel=1e-12)
  assert metrics.kernel_distance(a, b, block_size=2) == pytest.approx(expected,
                                                                      rel=1e-12)
  assert metrics.kernel_distance(b, a) == pytest.approx(expected, rel=1e-12)
  with pytest.raises(ValueError, match='same D'):
    metrics.kernel_distance(np.zeros([4, 3]), np.zeros([4, 2]))
  with pytest.raises(ValueError, match='at least 2'):
    metrics.kernel_distance(np.zeros([1, 3]), np.zeros([4, 3]))


def gaussian(n, shift, seed, dim=8):
  return np.random.default_rng(seed).normal(shift, 1.0, size=(n, dim))


def test_kernel_distance_is_near_zero_for_one_distribution_and_grows_with_a_shift():
  same = metrics.kernel_distance(gaussian(500, 0.0, 0), gaussian(500, 0.0, 1))
  distances = [metrics.kernel_distance(gaussian(500, 0.0, 0),
                                       gaussian(500, shift, 1))
               for shift in (0.25, 0.5, 1.0)]
  # Unbiased: near 0 (either sign) for one distribution, not merely small.
  assert abs(same) < 0.03
  assert distances[0] > 0.1 and distances[0] > 10 * abs(same)
  assert all(a < b for a, b in zip(distances, distances[1:])), distances


def test_kernel_distance_is_unbiased_in_sample_size_and_frechet_is_not():
  def mean_over_seeds(measure, n, seeds):
    return np.mean([measure(gaussian(n, 0.0, 2 * k), gaussian(n, 0.5, 2 * k + 1))
                    for k in range(seeds)])

  kid_small = mean_over_seeds(metrics.kernel_distance, 50, 200)
  kid_large = mean_over_seeds(metrics.kernel_distance, 500, 20)
  assert kid_small == pytest.approx(kid_large, rel=0.15)  # Both about 1.1.
  fd_small = mean_over_seeds(metrics.frechet_distance, 50, 200)
  fd_large = mean_over_seeds(metrics.frechet_distance, 500, 20)
  assert fd_small > 1.3 * fd_large  # About 3.0 vs 2.1: why FD needs equal sizes.


def test_cluster_bootstrap_covers_the_mean_of_clustered_data_as_often_as_it_says():
  """20 clusters of 10 items that share their cluster's offset: the 90 % interval
  of the mean from whole clusters covers the true mean (0) in about 90 % of samples;
  resampling the items as if they were independent covers it far less often."""
  rng = np.random.default_rng(0)
  clusters = np.repeat(np.arange(20) * 7, 10)        # Ids need not be 0 .. n - 1.
  covered = {'clusters': 0, 'items': 0}
  trials = 200
  for trial in range(trials):
    x = rng.normal(size=20)[clusters // 7] + rng.normal(0.0, 0.1, 200)
    for name, groups in (('clusters', clusters), ('items', np.arange(200))):
      resamples = metrics.cluster_bootstrap(lambda index, x=x: [x[index].mean()], groups,
                                            200, [trial])
      (low, high), = metrics.bootstrap_interval(resamples, 0.9)
      covered[name] += low <= 0.0 <= high
  assert 0.8 <= covered['clusters'] / trials <= 0.97, covered
  assert covered['items'] / trials < 0.55, covered


def test_cluster_bootstrap_draws_whole_clusters_and_repeats_with_its_seed():
  clusters = np.array([5, 5, 5, 9, 2, 2])
  seen = []
  resamples = metrics.cluster_bootstrap(
      lambda index: seen.append(np.sort(index)) or [len(index)], clusters, 50, [1, 2])
  assert resamples.shape == (50, 1) and resamples.dtype == np.float64
  for index in seen:                      # 3 clusters drawn, each with all its members.
    counts = np.bincount(clusters[index], minlength=10)
    assert counts[5] % 3 == 0 and counts[2] % 2 == 0 and counts.sum() == len(index)
    assert counts[5] // 3 + counts[9] + counts[2] // 2 == 3
  np.testing.assert_array_equal(
      metrics.cluster_bootstrap(lambda index: [index.sum()], clusters, 20, [1, 2]),
      metrics.cluster_bootstrap(lambda index: [index.sum()], clusters, 20, [1, 2]))


def test_bootstrap_interval_leaves_out_undefined_resamples():
  resamples = np.array([[v, np.nan, v if v < 50 else np.inf] for v in np.arange(101.0)])
  within, undefined, finite = metrics.bootstrap_interval(resamples, 0.9)
  assert within == pytest.approx([5.0, 95.0]) and undefined is None
  assert finite == pytest.approx([2.45, 46.55])   # Of 0 .. 49 alone.
