"""bin/evaluate and evaluate_lib: a tiny exported generator against tiny records."""

import dataclasses
import io
import json
import math
import os
import re
import shutil

import numpy as np
import pytest

from orca_gan import evaluate_lib
from orca_gan import metrics
from orca_gan import plotting
from orca_gan import records
from orca_gan import prepare_tfrecords
from tests.helpers import TINY_TRANSFORM, damaged_records, run_app, tone, write_wav

SAMPLE_RATE_HZ = 16000
TRANSFORM = TINY_TRANSFORM
FAST = ['--num_sequences', '6', '--seq_len', '3', '--num_permutations', '200']


def recording(seconds, freq_hz, seed):
  """A tone that comes and goes over noise."""
  rng = np.random.default_rng(seed)
  audio = tone(freq_hz, seconds, SAMPLE_RATE_HZ, amplitude=0.3)
  audio *= (np.arange(len(audio)) // (SAMPLE_RATE_HZ * 2)) % 2
  return audio + rng.normal(0.0, 0.01, len(audio))


@pytest.fixture(scope='module')
def record_dir(tmp_path_factory):
  folder = tmp_path_factory.mktemp('evaluate_records')
  # 5 + 4 + 3 windows of 3 s.
  paths = [write_wav(folder / f'rec{i}.wav', recording(seconds, freq, i),
                     SAMPLE_RATE_HZ)
           for i, (seconds, freq) in enumerate([(15, 1000), (12, 3000), (9, 6000)])]
  out = str(folder / 'records')
  prepare_tfrecords.make_tfrecords(
      paths, out, prepare_tfrecords.PrepareConfig(transform=TRANSFORM),
      log=lambda line: None)
  return out


def finite_numbers(value, where=''):
  """Yields (path, number) for every number in a JSON tree."""
  if isinstance(value, dict):
    for key, item in value.items():
      yield from finite_numbers(item, f'{where}.{key}')
  elif isinstance(value, list):
    for i, item in enumerate(value):
      yield from finite_numbers(item, f'{where}[{i}]')
  elif isinstance(value, (int, float)) and not isinstance(value, bool):
    yield where, value


@pytest.mark.slow
def test_cli_writes_metrics_and_report(record_dir, exported, tmp_path):
  out = tmp_path / 'eval'
  result = run_app('evaluate', '--model', exported['generator'], '--tfrecords',
                   record_dir, '--output_dir', str(out), '--seed', '3',
                   '--quiet_db', '6.5', *FAST)
  assert result.returncode == 0, result.stderr[-3000:]
  line = result.stdout.strip().splitlines()[-1]
  assert line.startswith('evaluate: FD ') and 'real-vs-real floor' in line, line
  assert 'centroid energy distance' in line and 'coherence gen' in line, line
  assert 'averaged to 16x16 gen' in line and 'windows with no sound gen ' in line, line
  assert sorted(os.listdir(out)) == ['metrics.json', 'report.png']  # No temp files.
  assert (out / 'report.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'

  written = json.loads((out / 'metrics.json').read_text())
  assert written['windows'] == {'generated': 18, 'real': 12, 'real_files': 3}
  fd = written['frechet_distance']
  # Recordings of 5, 4 and 3 windows (one segment each): halves of 5 and 4 + 3.
  assert fd['floor_split'] == 'recording segment'
  assert fd['windows'] == {'generated': 18, 'real': 12, 'same_size': 5,
                           'same_size_generated': 5, 'real_half_a': 5,
                           'real_half_b': 7}
  assert fd['recordings'] == {'real_half_a': 1, 'real_half_b': 2}
  for key in ('generated_vs_real', 'generated_vs_real_same_size',
              'real_vs_real_floor'):
    assert fd[key] >= 0.0, key
  kid = written['kernel_distance']
  assert kid['windows'] == 5 and 'KID ' in line and 'halves by recording' in line
  assert all(math.isfinite(kid[key]) for key in ('generated_vs_real',
                                                 'real_vs_real_floor'))
  centroids = written['centroids']
  assert 0.0 < centroids['p_value'] <= 1.0 and centroids['energy_distance'] >= 0.0
  assert centroids['quiet_db'] == 6.5
  for name in ('generated', 'real'):
    assert set(centroids[name]) == {'count', 'mean_s', 'std_s', 'mean_khz', 'std_khz',
                                    'quartiles_s', 'quartiles_khz', 'quiet_share',
                                    'std_khz_sounding'}
    assert 0.0 <= centroids[name]['quiet_share'] <= 1.0
    for key in ('quartiles_s', 'quartiles_khz'):
      assert len(centroids[name][key]) == 3 and sorted(centroids[name][key]) == \
          centroids[name][key], key
  coherence = written['temporal_coherence']
  # 6 sequences x 2 steps; files of 5, 4, 3 windows have 4 + 3 + 2 neighbours.
  assert coherence['pairs']['generated'] == 12 and coherence['pairs']['real'] == 9
  for key in ('generated', 'real', 'generated_unrelated', 'real_unrelated',
              'generated_unrelated_coarse', 'real_unrelated_coarse',
              'generated_unrelated_speckle', 'real_unrelated_speckle'):
    assert -1.0 <= coherence[key] <= 1.0, key
  assert written['speckle']['generated'] > 0.0 and written['speckle']['real'] > 0.0
  nearest = written['nearest_neighbour']
  for key in ('generated_to_train', 'generated_to_generated', 'train_to_train'):
    assert set(nearest[key]) == {'count', 'min', 'p01', 'p10', 'median', 'mean'}, key
  assert 0.0 <= nearest['fraction_generated_to_train_below_p01'] <= 1.0
  assert written['model_metadata']['kind'] == 'generator'
  assert written['model_metadata']['model_config']['z_dim'] == 8
  assert written['flags']['seed'] == 3
  numbers = list(finite_numbers(written))
  assert len(numbers) > 50
  assert all(math.isfinite(v) for _, v in numbers), [p for p, v in numbers
                                                      if not math.isfinite(v)]


def test_same_seed_same_metrics(record_dir, exported, tmp_path, monkeypatch):
  # The report is checked above; skipping it here saves the drawing time.
  monkeypatch.setattr(plotting, 'evaluation_report',
                      lambda out, *args, **kwargs: out.write(b'png'))

  def run(name, seed):
    config = evaluate_lib.EvaluateConfig(
        model=exported['generator'], tfrecords=record_dir,
        output_dir=str(tmp_path / name), num_sequences=4, seq_len=2, seed=seed,
        num_permutations=100)
    result = evaluate_lib.evaluate(config, log=lambda line: None)
    del result['flags']
    return result

  first, again, other = run('a', 0), run('b', 0), run('c', 1)
  assert first == again
  assert (first['frechet_distance']['generated_vs_real'] !=
          other['frechet_distance']['generated_vs_real'])


def test_failure_while_rendering_leaves_no_output(record_dir, exported, tmp_path,
                                                  monkeypatch):
  def broken(*args, **kwargs):
    raise RuntimeError('drawing failed')

  monkeypatch.setattr(plotting, 'evaluation_report', broken)
  out = tmp_path / 'eval'
  config = evaluate_lib.EvaluateConfig(
      model=exported['generator'], tfrecords=record_dir, output_dir=str(out),
      num_sequences=2, seq_len=2, num_permutations=10)
  with pytest.raises(RuntimeError, match='drawing failed'):
    evaluate_lib.evaluate(config, log=lambda line: None)
  assert not out.exists()


def edited_records(record_dir, folder, **transform):
  """A copy of the records whose manifest claims another transform."""
  copy = str(folder / 'edited_records')
  shutil.copytree(record_dir, copy)
  path = os.path.join(copy, 'manifest.json')
  with open(path) as f:
    manifest = json.load(f)
  manifest['transform'].update(transform)
  with open(path, 'w') as f:
    json.dump(manifest, f)
  return copy


# (flags, expected start of the one-line error). {model}, {discriminator},
# {records}, {missing}, {db_records} and {size_records} are filled in.
BAD_INPUTS = {
    'not_a_saved_model': (
        ['--model', '{records}'],
        'error: --model: {records}: not an orca_gan SavedModel'),
    'missing_model': (
        ['--model', '{missing}'],
        'error: --model: {missing}: not an orca_gan SavedModel'),
    'discriminator': (
        ['--model', '{discriminator}'],
        'error: --model: {discriminator} is a discriminator SavedModel; expected a '
        'generator'),
    'missing_records': (['--tfrecords', '{missing}'],
                        'error: --tfrecords: {missing}: no such TFRecord folder'),
    'transform_db_min': (
        ['--tfrecords', '{db_records}'],
        "error: --tfrecords {db_records}: transform differs from the model's (records "
        'vs model: db_min -90.0 vs -100.0)'),
    'transform_image_size': (
        ['--tfrecords', '{size_records}'],
        "error: --tfrecords {size_records}: transform differs from the model's "
        '(records vs model: image_size 64 vs 32)'),
    'seq_len': (['--seq_len', '6'], 'error: --seq_len 6 is longer than the longest '
                'recording in {records} (5 windows)'),
    'num_sequences': (['--num_sequences', '1'],
                      'error: --num_sequences must be at least 2, got 1'),
    'quiet_db': (['--quiet_db', '0'], 'error: --quiet_db must be positive, got 0.0'),
    'num_resamples': (['--num_resamples', '-1'],
                      'error: --num_resamples must be at least 0, got -1'),
}


@pytest.fixture
def bad_names(record_dir, exported, tmp_path):
  return {'model': exported['generator'],
          'discriminator': exported['discriminator'], 'records': record_dir,
          'missing': str(tmp_path / 'missing'),
          'db_records': edited_records(record_dir, tmp_path / 'db', db_min=-90.0),
          'size_records': edited_records(record_dir, tmp_path / 'size', image_size=64)}


def bad_config(flags, names, output_dir):
  fields = {'model': names['model'], 'tfrecords': names['records'],
            'output_dir': output_dir}
  for flag, value in zip(flags[::2], flags[1::2]):
    name = flag[2:]
    default = getattr(evaluate_lib.EvaluateConfig, name)
    fields[name] = type(default)(value.format(**names))
  return fields


@pytest.mark.parametrize('case', sorted(BAD_INPUTS))
def test_bad_input_fails_before_writing(case, bad_names, tmp_path):
  flags, message = BAD_INPUTS[case]
  out = tmp_path / 'eval'
  with pytest.raises(evaluate_lib.EvaluationError) as raised:
    evaluate_lib.evaluate(evaluate_lib.EvaluateConfig(
        **bad_config(flags, bad_names, str(out))), log=lambda line: None)
  text = 'error: ' + str(raised.value)
  assert '\n' not in text and text.startswith(message.format(**bad_names)), text
  assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize('case', ['discriminator', 'transform_db_min'])
def test_cli_bad_input_is_one_line(case, bad_names, tmp_path):
  flags, message = BAD_INPUTS[case]
  fields = bad_config(flags, bad_names, str(tmp_path / 'eval'))
  result = run_app('evaluate', *[f'--{k}={v}' for k, v in fields.items()], *FAST[:2])
  lines = result.stderr.strip().splitlines()
  assert result.returncode != 0
  assert len(lines) == 1 and lines[0].startswith(message.format(**bad_names)), lines
  assert not (tmp_path / 'eval').exists()


@pytest.mark.slow
def test_cli_requires_output_dir(record_dir, exported):
  result = run_app('evaluate', '--model', exported['generator'], '--tfrecords',
                   record_dir)
  assert result.returncode != 0
  assert result.stderr.strip().splitlines() == ['error: --output_dir is required']


# Windows per recording of a synthetic real set: 2000 in 8 recordings.
RECORDING_SIZES = [150, 400, 200, 350, 100, 300, 250, 250]


def recording_ids(sizes=RECORDING_SIZES):
  """File id of every window, recordings one after another (ids need not be 0..n)."""
  return np.repeat(3 * np.arange(len(sizes)) + 1, sizes)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_real_halves_share_no_recording_and_are_balanced(seed):
  file_ids = recording_ids()
  index_a, index_b, split = evaluate_lib.split_real_halves(file_ids, seed)
  assert split == 'recording'
  assert not set(file_ids[index_a]) & set(file_ids[index_b])
  np.testing.assert_array_equal(np.sort(np.concatenate([index_a, index_b])),
                                np.arange(len(file_ids)))
  # Greedy, largest first: the halves differ by at most the smallest recording.
  assert abs(len(index_a) - len(index_b)) <= min(RECORDING_SIZES)
  again = evaluate_lib.split_real_halves(file_ids, seed)
  np.testing.assert_array_equal(again[0], index_a)


def test_real_halves_fall_back_to_windows_for_one_recording():
  index_a, index_b, split = evaluate_lib.split_real_halves(np.full(9, 7), seed=0)
  assert split == 'window' and (len(index_a), len(index_b)) == (4, 5)
  assert not set(index_a) & set(index_b)
  # Two recordings, one of a single window: a half of 1 has no covariance.
  _, _, split = evaluate_lib.split_real_halves(recording_ids([1, 20]), seed=0)
  assert split == 'window'


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_same_size_frechet_of_a_perfect_generator_reaches_the_floor(seed):
  # Real and generated features from one 53-dimensional Gaussian, far more real
  # windows than generated ones. Comparing 256 generated windows with a real half of
  # 1000 against a floor of two halves of 1000 (the old bias) gave ratios near 2.4.
  rng = np.random.default_rng(seed)
  real, generated = rng.normal(size=(2000, 53)), rng.normal(size=(256, 53))
  frechet, kernel = evaluate_lib.feature_distances(generated, real, recording_ids(),
                                                   seed)
  assert frechet['floor_split'] == 'recording'
  assert frechet['windows']['same_size'] == frechet['windows'][
      'same_size_generated'] == kernel['windows'] == 256
  ratio = frechet['generated_vs_real_same_size'] / frechet['real_vs_real_floor']
  assert 0.8 < ratio < 1.25, frechet
  # Unbiased: both near 0 (either sign), and no further apart than noise.
  assert abs(kernel['generated_vs_real']) < 0.03, kernel
  assert abs(kernel['real_vs_real_floor']) < 0.03, kernel


def test_same_size_distances_see_a_shifted_generator():
  rng = np.random.default_rng(5)
  real, generated = rng.normal(size=(2000, 53)), rng.normal(0.5, 1.0, size=(256, 53))
  frechet, kernel = evaluate_lib.feature_distances(generated, real, recording_ids(), 5)
  assert frechet['generated_vs_real_same_size'] > 2 * frechet['real_vs_real_floor']
  assert kernel['generated_vs_real'] > 10 * abs(kernel['real_vs_real_floor'])


def synthetic_windows(rng, count):
  """Windows of one distribution: noise of random level and contrast, one tone row."""
  level = rng.uniform(-0.8, -0.2, size=(count, 1, 1))
  contrast = rng.uniform(0.05, 0.3, size=(count, 1, 1))
  images = level + contrast * rng.uniform(-1, 1, size=(count, 32, 32))
  images[np.arange(count), rng.integers(0, 32, count)] += 0.5
  return np.clip(images, -1, 1)


def test_compute_metrics_compares_equal_sizes_and_splits_by_recording():
  rng = np.random.default_rng(6)
  images = synthetic_windows(rng, sum(RECORDING_SIZES))
  file_ids = recording_ids()
  window_indices = np.concatenate([np.arange(n) for n in RECORDING_SIZES])
  kept = np.sort(rng.choice(len(images), 64, replace=False))
  real = evaluate_lib.RealStatistics(
      features=metrics.window_features(images),
      centroids=metrics.energy_centroids(images, TRANSFORM),
      contrast_db=metrics.window_contrast_db(images, TRANSFORM), file_ids=file_ids,
      window_indices=window_indices, consecutive=np.zeros([0]),
      kept_positions=kept, kept_images=images[kept])
  generated = synthetic_windows(rng, 256).reshape(64, 4, 32, 32)
  config = evaluate_lib.EvaluateConfig(model='m', tfrecords='r', output_dir='o',
                                       num_permutations=20)
  result, _ = evaluate_lib.compute_metrics(generated, real, TRANSFORM, config)
  fd = result['frechet_distance']
  assert fd['floor_split'] == 'recording segment' and fd['windows']['same_size'] == 256
  # 8 recordings of 250 windows, cut into segments of at most 64: balanced halves.
  assert abs(fd['windows']['real_half_a'] - fd['windows']['real_half_b']) <= 64
  assert fd['windows']['real_half_a'] + fd['windows']['real_half_b'] == 2000
  expected = evaluate_lib.feature_distances(
      metrics.window_features(generated), real.features, file_ids, config.seed,
      window_indices)
  assert (fd, result['kernel_distance']) == expected
  line = evaluate_lib.summary_line(evaluate_lib._jsonable(result), 'out')
  assert '256 windows each, halves by recording segment), KID ' in line, line


def test_compute_metrics_sees_a_texture_painted_into_every_generated_window():
  rng = np.random.default_rng(7)
  images = synthetic_windows(rng, 256)
  real = evaluate_lib.RealStatistics(
      features=metrics.window_features(images),
      centroids=metrics.energy_centroids(images, TRANSFORM),
      contrast_db=metrics.window_contrast_db(images, TRANSFORM),
      file_ids=np.repeat(np.arange(4), 64), window_indices=np.tile(np.arange(64), 4),
      consecutive=np.zeros([0]), kept_positions=np.arange(128), kept_images=images[:128])
  smooth = synthetic_windows(rng, 256) * 0.5 - 0.3
  painted = (smooth + rng.uniform(-0.3, 0.3, (32, 32))).reshape(64, 4, 32, 32)
  config = evaluate_lib.EvaluateConfig(model='m', tfrecords='r', output_dir='o',
                                       num_permutations=20)
  result, arrays = evaluate_lib.compute_metrics(painted, real, TRANSFORM, config)
  coherence = result['temporal_coherence']
  assert coherence['generated_unrelated_speckle'] > 0.5
  assert abs(coherence['real_unrelated_speckle']) < 0.1
  assert result['speckle']['real'] == pytest.approx(
      metrics.speckle(images[:128]).std(axis=(1, 2)).mean())
  line = evaluate_lib.summary_line(evaluate_lib._jsonable(result), 'out')
  assert (f"their speckle gen {coherence['generated_unrelated_speckle']:.2f}, real "
          f"{coherence['real_unrelated_speckle']:.2f}), speckle gen "
          f"{result['speckle']['generated']:.3f} vs real ") in line, line

  # The report draws the per-window values behind both numbers.
  assert np.mean(arrays['gen_unrelated_speckle']) == pytest.approx(
      coherence['generated_unrelated_speckle'])
  assert np.mean(arrays['gen_speckle']) == pytest.approx(result['speckle']['generated'])
  empty = np.zeros([0, 4, 32, 32])
  figure = plotting.evaluation_report(io.BytesIO(), evaluate_lib._jsonable(result),
                                      arrays, empty, empty, TRANSFORM, 'painted')
  panel, = [ax for ax in figure.axes
            if ax.get_title().startswith('Speckle of unrelated windows')]
  drawn = {}
  for patch, label in zip(panel.patches, panel.get_legend_handles_labels()[1]):
    x, y = patch.get_xy().T                  # The outline of a step histogram.
    drawn[label] = x[y > 0]
  assert drawn['generated'].min() > 0.4 and drawn['real'].max() < 0.3
  assert figure.get_suptitle().startswith('painted\nFD ')


def test_intervals_draw_real_windows_by_stretch_of_a_recording():
  """Ten of 200 real windows hold no sound. Met in one stretch of the tape, another
  tape might hold none or twice as many, and the interval of their share is wide;
  spread over the tape, it is narrow. The generated windows' intervals stay."""
  rng = np.random.default_rng(8)
  images = synthetic_windows(rng, 200)
  generated = synthetic_windows(rng, 256).reshape(64, 4, 32, 32)
  config = evaluate_lib.EvaluateConfig(model='m', tfrecords='r', output_dir='o',
                                       num_permutations=20, num_resamples=300)
  width, generated_interval = {}, {}
  for case, quiet in (('together', np.arange(40, 50)), ('apart', np.arange(5, 200, 20))):
    contrast = np.full(200, 2.0 * metrics.QUIET_DB)
    contrast[quiet] = 0.5 * metrics.QUIET_DB
    real = evaluate_lib.RealStatistics(
        features=metrics.window_features(images),
        centroids=metrics.energy_centroids(images, TRANSFORM), contrast_db=contrast,
        file_ids=np.full(200, 3), window_indices=np.arange(200),
        consecutive=np.zeros([0]), kept_positions=np.arange(128),
        kept_images=images[:128])
    result, _ = evaluate_lib.compute_metrics(generated, real, TRANSFORM, config)
    centroids, intervals = result['centroids'], result['centroids']['intervals']
    assert centroids['real']['quiet_share'] == 0.05
    for name in evaluate_lib.SPREAD_STATISTICS:
      for side in ('generated', 'real'):
        low, high = intervals[name][side]
        assert low <= centroids[side][name] <= high, (case, name, side)
      kind = 'difference' if name == 'quiet_share' else 'ratio'
      low, high = intervals[name][kind]
      gen, real_value = centroids['generated'][name], centroids['real'][name]
      assert low <= (gen - real_value if kind == 'difference' else gen / real_value) <= high
    width[case] = np.diff(intervals['quiet_share']['real'])[0]
    generated_interval[case] = intervals['quiet_share']['generated']
    line = evaluate_lib.summary_line(evaluate_lib._jsonable(result), 'out')
    low, high = (100 * b for b in intervals['quiet_share']['difference'])
    assert f'(gen - real 90 % interval {low:+.0f} to {high:+.0f} points)' in line, line
  assert width['together'] > 2 * width['apart'], width
  assert generated_interval['together'] == generated_interval['apart']

  coherence = result['temporal_coherence']
  low, high = coherence['intervals']['unrelated']['difference']
  assert low <= coherence['generated_unrelated'] - coherence['real_unrelated'] <= high
  without = evaluate_lib.compute_metrics(generated, real, TRANSFORM, dataclasses.replace(
      config, num_resamples=0))[0]
  assert 'intervals' not in without['centroids']
  assert 'intervals' not in without['temporal_coherence']
  assert 'interval' not in evaluate_lib.summary_line(evaluate_lib._jsonable(without), 'o')


def test_a_long_tape_and_a_short_clip_split_by_segments():
  """One 200-window recording and one of 6: by recording the smaller half would hold
  6 windows; by segments both halves hold about 103, and no segment is cut."""
  file_ids = np.repeat([0, 1], [200, 6])
  window_indices = np.concatenate([np.arange(200), np.arange(6)])
  a, b, split = evaluate_lib.split_real_halves(file_ids, 0, window_indices)
  assert split == 'recording segment' and min(len(a), len(b)) >= 70
  segment = file_ids * 1000 + window_indices // evaluate_lib.SEGMENT_WINDOWS
  assert not set(segment[a]) & set(segment[b])


@pytest.mark.parametrize('how', ['flip', 'truncate'])
def test_damaged_shard_is_named_and_nothing_written(record_dir, exported, tmp_path,
                                                    how):
  shard = damaged_records(record_dir, str(tmp_path / 'records'), how)
  config = evaluate_lib.EvaluateConfig(
      model=exported['generator'], tfrecords=str(tmp_path / 'records'),
      output_dir=str(tmp_path / 'out'), num_sequences=4, seq_len=2)
  with pytest.raises(records.CorruptShardError,
                     match=f'^{re.escape(shard)}: corrupt or truncated shard'):
    evaluate_lib.evaluate(config, log=lambda line: None)
  assert not (tmp_path / 'out').exists()
