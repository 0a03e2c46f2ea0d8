"""The training reader: batches of consecutive windows, shuffled across files."""

import numpy as np
import pytest

from orca_gan import data
from orca_gan import prepare_tfrecords
from orca_gan import records
from tests.helpers import write_wav

SAMPLE_RATE_HZ = 16000
BAND_HZ = 62.5


def counting_recording(num_windows, first_row):
  """Window i holds a tone in row first_row + i, so a window says where it came from."""
  parts = []
  for i in range(num_windows):
    t = np.arange(3 * SAMPLE_RATE_HZ) / SAMPLE_RATE_HZ
    parts.append(0.5 * np.sin(2 * np.pi * (first_row + i + 0.5) * BAND_HZ * t))
  return np.concatenate(parts)


@pytest.fixture(scope='module')
def record_dir(tmp_path_factory):
  folder = tmp_path_factory.mktemp('seq')
  # Three files; file f's windows have tones in rows 40*f + i.
  paths = [write_wav(folder / f'file{f}.wav', counting_recording(n, 40 * f),
                     SAMPLE_RATE_HZ) for f, n in enumerate([9, 14, 6])]
  out = folder / 'records'
  config = prepare_tfrecords.PrepareConfig(windows_per_shard=10)
  prepare_tfrecords.make_tfrecords(paths, str(out), config, log=lambda line: None)
  return str(out)


def tone_rows(sequence):
  """[t, h, w, 1] -> the loudest row of every window."""
  return sequence[..., 0].mean(axis=2).argmax(axis=1)


def test_sequences_are_consecutive_windows_of_one_file(record_dir):
  dataset = data.sequence_dataset(record_dir, batch_size=4, seq_len=5, seed=3)
  starts = set()
  for batch in dataset.take(30).as_numpy_iterator():
    assert batch.shape == (4, 5, 128, 128, 1) and batch.dtype == np.float32
    assert -1.0 <= batch.min() and batch.max() <= 1.0
    for sequence in batch:
      rows = tone_rows(sequence)
      np.testing.assert_array_equal(np.diff(rows), 1)   # Consecutive, in order.
      assert rows[0] // 40 == rows[-1] // 40            # One file.
      starts.add(int(rows[0]))
  # Random offsets: many different start windows, from every file that is long enough.
  assert len(starts) >= 8
  assert {s // 40 for s in starts} == {0, 1, 2}


def test_one_pass_without_repeat_is_finite_and_seeded(record_dir):
  def run(seed):
    dataset = data.sequence_dataset(record_dir, batch_size=1, seq_len=3, seed=seed,
                                    repeat=False)
    return [tuple(tone_rows(b[0])) for b in dataset.as_numpy_iterator()]

  first = run(7)
  assert first == run(7)
  # Non-overlapping runs of 3: at most floor(9/3) + floor(14/3) + floor(6/3) per pass.
  assert 2 + 4 + 1 <= len(first) <= 3 + 4 + 2


def test_seq_len_longer_than_any_recording_is_refused(record_dir):
  assert data.max_sequence_length(records.read_manifest(record_dir)) == 14
  data.sequence_dataset(record_dir, batch_size=1, seq_len=14)
  with pytest.raises(records.ManifestError, match='seq_len 15 is longer than the '
                     'longest recording \\(14 windows\\)'):
    data.sequence_dataset(record_dir, batch_size=1, seq_len=15)
  with pytest.raises(ValueError, match='at least 1'):
    data.sequence_dataset(record_dir, batch_size=0, seq_len=2)


def test_shards_shorter_than_a_sequence_are_passed_over(tmp_path):
  paths = [write_wav(tmp_path / f'file{f}.wav', counting_recording(n, 40 * f),
                     SAMPLE_RATE_HZ) for f, n in enumerate([8, 3])]
  out = str(tmp_path / 'records')
  config = prepare_tfrecords.PrepareConfig(windows_per_shard=1)  # One file per shard.
  prepare_tfrecords.make_tfrecords(paths, out, config, log=lambda line: None)
  dataset = data.sequence_dataset(out, batch_size=1, seq_len=6, seed=0)
  for batch in dataset.take(5).as_numpy_iterator():
    assert tone_rows(batch[0])[0] // 40 == 0   # Only the 8-window file fits.
