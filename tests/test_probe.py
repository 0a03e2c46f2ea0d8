"""bin/probe and probe_lib: the scores on known answers, and the app on real calls."""

import glob
import json
import os

import numpy as np
import pytest

from orca_gan import models
from orca_gan import probe_lib
from tests.helpers import TINY_MODEL, run_app


def test_retrieval_scores_on_a_known_ranking():
  similarity = np.array([[0.9, 0.1, 0.5],     # q0 (A): A first -> rank 1
                         [0.8, 0.1, 0.7],     # q1 (B): order A, C(B), ... -> rank 2
                         [0.1, 0.2, 0.3]])    # q2 (Z): not in the catalogue
  result = probe_lib.retrieval(similarity, ['A', 'B', 'Z'], ['A', 'A', 'B'])
  assert result == {'queries': 2, 'precision_at_1': 0.5, 'top_5': 1.0,
                    'mrr': pytest.approx(0.75)}


def test_auc_matches_counting_pairs_with_ties():
  rng = np.random.default_rng(0)
  scores = rng.integers(0, 5, 40).astype(float)     # Many ties.
  positive = rng.random(40) < 0.4
  pairs = [(p > n) + 0.5 * (p == n) for p in scores[positive] for n in scores[~positive]]
  assert probe_lib.roc_auc(scores, positive) == pytest.approx(np.mean(pairs))
  assert probe_lib.roc_auc(scores, np.ones(40, bool)) is None


def clustered(num_labels=3, per_label=6, dim=10, spread=0.3, seed=0):
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=[num_labels, dim])
  labels = np.repeat([f'L{i}' for i in range(num_labels)], per_label)
  points = centres[np.repeat(np.arange(num_labels), per_label)]
  return points + spread * rng.normal(size=points.shape), labels


def test_knn_auc_and_linear_probe_separate_clusters_and_not_noise():
  points, labels = clustered()
  z = probe_lib.zscore(points)
  scores = probe_lib.knn_and_auc(probe_lib.cosine_similarities(z, z), labels, k=3)
  assert scores['knn_accuracy'] == 1.0 and scores['mean_auc'] == 1.0
  assert probe_lib.linear_probe(points, labels, folds=3, l2=1e-2,
                                seed=0)['accuracy'] == 1.0
  # Labels unrelated to the points: about chance (1/3), far from the clusters' 1.0.
  shuffled = np.random.default_rng(1).permutation(labels)
  noise = probe_lib.knn_and_auc(probe_lib.cosine_similarities(z, z), shuffled, k=3)
  assert noise['knn_accuracy'] < 0.6
  assert probe_lib.linear_probe(points, shuffled, folds=3, l2=1e-2,
                                seed=0)['accuracy'] < 0.6


def test_auc_of_a_large_label_is_not_set_by_its_most_generic_member():
  # 20 'orca' files in a loose cluster and one that looks like sea noise, inside a
  # tight cluster of 10 'noise' files. Scored by its nearest member, every noise file
  # ranks above every orca file (that stray is its nearest orca file): AUC 0, where
  # k-NN gets 30 of 31 right. The nearest-neighbour margin misranks the stray alone.
  rng = np.random.default_rng(0)
  orca_centre, noise_centre = 3 * rng.normal(size=[2, 16])
  points = np.concatenate([orca_centre + rng.normal(size=[20, 16]),
                           noise_centre + 0.1 * rng.normal(size=[11, 16])])
  labels = np.array(['orca'] * 21 + ['noise'] * 10)
  scores = probe_lib.knn_and_auc(probe_lib.cosine_similarities(points, points), labels,
                                 k=3)
  assert scores['knn_accuracy'] == pytest.approx(30 / 31)
  assert scores['auc']['orca'] == pytest.approx(20 / 21)


def test_the_unit_that_carries_a_label_ranks_first():
  rng = np.random.default_rng(0)
  labels = np.array(['a'] * 10 + ['b'] * 10)
  features = rng.normal(size=[20, 8])
  features[:, 5] = np.where(labels == 'a', -3.0, 3.0) + 0.1 * rng.normal(size=20)
  units = probe_lib.predictive_units(features, labels, top=2)
  assert units['a'][0] == [5, 0.0] and units['b'][0] == [5, 1.0]


def test_spectral_profile_is_band_mean_and_std_over_time():
  images = np.zeros([1, 4, 6], np.float32)
  images[0, 2] = [1, -1, 1, -1, 1, -1]
  np.testing.assert_allclose(probe_lib.spectral_profile(images),
                             [[0, 0, 0, 0, 0, 0, 1, 0]])


@pytest.fixture
def calls(shared_data):
  catalog = os.path.join(shared_data, 'orcasound', 'catalog')
  return os.path.join(catalog, 'mp3', 'FO-S0[1-5]*.mp3'), os.path.join(
      catalog, 'flac', 'FO-S*.flac')


@pytest.mark.slow
def test_cli_finds_the_same_calls_across_formats(exported, calls, tmp_path):
  """mp3 copies of five catalogue calls against all 45 in flac: the spectrogram
  baselines must put each call's own recording first."""
  queries, catalogue = calls
  out = tmp_path / 'probe'
  result = run_app('probe', '--model', exported['discriminator'], '--queries', queries,
                   '--catalogue', catalogue, '--output_dir', str(out))
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip().splitlines()[-1].startswith(
      'probe: 50 files, 30 labels, 5 queries against 45')
  report = json.loads((out / 'probe.json').read_text())
  pooled = models.pooled_feature_names(TINY_MODEL)
  assert set(report['features']) == {'spectral_profile', 'raw_pixels'} | {
      f'{kind} {name}' for kind in ('trained', 'untrained') for name in ['lstm'] + pooled}
  for name in ('spectral_profile', 'raw_pixels'):
    retrieval = report['features'][name]['retrieval']
    assert retrieval['queries'] == 5 and retrieval['precision_at_1'] == 1.0, name
  for entry in report['features'].values():
    assert 0 <= entry['knn_accuracy'] <= 1 and 0 <= entry['mean_auc'] <= 1
  # The table's columns line up whatever the longest feature name.
  first_words = ('feature', 'trained', 'untrained', 'raw_pixels', 'spectral_profile')
  rows = [line for line in result.stdout.splitlines()
          if line.split(' ')[0] in first_words]
  assert len(rows) == 1 + len(report['features'])
  assert len({len(row) for row in rows}) == 1, rows
  assert len(report['features']['trained lstm']['predictive_units']['S1']) == 5
  assert (out / 'probe.png').stat().st_size > 0


def write_csv(path, rows):
  path.write_text('\n'.join(','.join(r) for r in rows) + '\n')
  return str(path)


@pytest.mark.slow
@pytest.mark.parametrize('case, message', [
    ('one_label', "error: --labels_csv: every file has the label 'S1'"),
    ('bad_header', 'error: --labels_csv {csv}: the first line must be path,label'),
    ('unknown_path', 'error: --labels_csv {csv}: line 2: no such file nowhere.wav'),
    ('single_file_label', 'error: --labels_csv: labels with fewer than two files: S2'),
    ('generator', 'error: --model '),
])
def test_cli_bad_input_is_one_line_and_writes_nothing(exported, calls, tmp_path, case,
                                                      message):
  catalogue = sorted(glob.glob(calls[1]))
  csv = tmp_path / 'labels.csv'
  rows = {
      'one_label': [['path', 'label'], [catalogue[0], 'S1'], [catalogue[1], 'S1']],
      'bad_header': [['file', 'label'], [catalogue[0], 'S1']],
      'unknown_path': [['path', 'label'], ['nowhere.wav', 'S1']],
      'single_file_label': [['path', 'label'], [catalogue[0], 'S1'],
                            [catalogue[1], 'S1'], [catalogue[2], 'S2']],
      'generator': [['path', 'label'], [catalogue[0], 'S1'], [catalogue[1], 'S1'],
                    [catalogue[2], 'S2'], [catalogue[3], 'S2']],
  }[case]
  write_csv(csv, rows)
  model = exported['generator' if case == 'generator' else 'discriminator']
  out = tmp_path / 'probe'
  result = run_app('probe', '--model', model, '--labels_csv', str(csv), '--output_dir',
                   str(out))
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 2
  assert len(lines) == 1 and lines[0].startswith(message.format(csv=csv)), lines
  assert not out.exists()
