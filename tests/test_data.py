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
  # random_phase reads one window more.
  data.sequence_dataset(record_dir, batch_size=1, seq_len=13, random_phase=True)
  with pytest.raises(records.ManifestError, match='seq_len 14 is longer than the '
                     'longest recording \\(14 windows\\) less the one more'):
    data.sequence_dataset(record_dir, batch_size=1, seq_len=14, random_phase=True)
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


# make_tfrecords' frame step at 16 kHz: 3 s over 128 columns.
HOP_SAMPLES = 375


@pytest.fixture(scope='module')
def noise_audio_and_records(tmp_path_factory):
  """Eight windows of noise, made louder over time; every column differs from every
  other, so a cut says where it was taken."""
  folder = tmp_path_factory.mktemp('phase')
  rng = np.random.default_rng(0)
  n = 8 * 3 * SAMPLE_RATE_HZ
  audio = rng.normal(0, 1, n) * np.linspace(0.01, 0.3, n)
  out = str(folder / 'records')
  prepare_tfrecords.make_tfrecords([write_wav(folder / 'noise.wav', audio, SAMPLE_RATE_HZ)],
                                   out, prepare_tfrecords.PrepareConfig(),
                                   log=lambda line: None)
  return folder, audio, out


def stored_strip(record_dir):
  """All stored windows of a folder laid end to end in time: [H, windows * W]."""
  return np.concatenate([w['image'] for w in
                         data.read_windows(record_dir).as_numpy_iterator()], axis=1)


def test_random_phase_cuts_sequences_anywhere_on_the_frame_grid(noise_audio_and_records):
  _, _, records_dir = noise_audio_and_records
  strip = stored_strip(records_dir)
  width = 128

  def first_columns(seed):
    dataset = data.sequence_dataset(records_dir, batch_size=1, seq_len=3, seed=seed,
                                    random_phase=True)
    found = []
    for batch in dataset.take(40).as_numpy_iterator():
      assert batch.shape == (1, 3, 128, 128, 1)
      cut = np.concatenate(list(batch[0, ..., 0]), axis=1)   # [H, 3 W]
      # Where in the recording's image the sequence was cut: exactly one place.
      at = [s for s in range(strip.shape[1] - cut.shape[1] + 1)
            if np.array_equal(strip[:, s:s + cut.shape[1]], cut)]
      assert len(at) == 1
      found.append(at[0])
    return found

  found = first_columns(seed=5)
  assert found == first_columns(seed=5)
  # Cuts start at all sorts of columns within a window (40 draws of 128: about 34
  # distinct), not only at stored boundaries, and in every window that has 3 after it.
  assert len({s % width for s in found}) >= 25
  assert {s // width for s in found} == set(range(5))
  # Without it, sequences start at window boundaries only.
  dataset = data.sequence_dataset(records_dir, batch_size=1, seq_len=3, seed=5)
  for batch in dataset.take(10).as_numpy_iterator():
    first = batch[0, 0, ..., 0]
    assert any(np.array_equal(first, strip[:, w * width:(w + 1) * width])
               for w in range(8))


def test_a_cut_is_the_window_that_starts_that_much_later(noise_audio_and_records):
  """The fact random_phase rests on: make_tfrecords puts every window of a file on one
  frame grid, so the stored image of a recording that starts 37 columns later equals
  the cut of this one's, column for column, up to rounding (3.6 % of the pixels differ
  by one storage step here)."""
  folder, audio, records_dir = noise_audio_and_records
  late = str(folder / 'late')
  prepare_tfrecords.make_tfrecords(
      [write_wav(folder / 'late.wav', audio[37 * HOP_SAMPLES:], SAMPLE_RATE_HZ)],
      late, prepare_tfrecords.PrepareConfig(), log=lambda line: None)
  strip, late_strip = stored_strip(records_dir), stored_strip(late)
  assert late_strip.shape[1] == 7 * 128
  # The late recording's first frame reads zeros before its start where this one
  # reads sound: compare from its second column on.
  difference = np.abs(late_strip[:, 1:] - strip[:, 37 + 1:37 + 7 * 128])
  assert difference.max() <= 1 / 127.5 + 1e-6 and np.mean(difference > 0) < 0.05
  # One column off would not pass.
  assert np.mean(np.abs(late_strip[:, 1:] - strip[:, 38 + 1:38 + 7 * 128]) > 0) > 0.5
