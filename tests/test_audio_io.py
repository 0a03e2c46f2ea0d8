"""Decoding real recordings in every format, channel handling, and bad files."""

import glob
import os

import numpy as np
import pytest

from orca_gan import audio_io
from orca_gan import prepare_tfrecords
from tests.helpers import make_bad_files, tone, write_wav

FORMATS = ('mp3', 'flac', 'ogg')


def catalogue(shared, fmt):
  return sorted(glob.glob(os.path.join(shared, 'orcasound', 'catalog', fmt, f'*.{fmt}')))


def test_catalogue_calls_agree_across_formats(shared_data):
  names = {fmt: [os.path.basename(p)[:-len(fmt) - 1] for p in catalogue(shared_data, fmt)]
           for fmt in FORMATS}
  assert len(names['mp3']) == 45
  assert names['mp3'] == names['flac'] == names['ogg']
  config = prepare_tfrecords.PrepareConfig(pad_short=True, storage_dtype='float16')
  for name in names['mp3']:
    converted = {
        fmt: prepare_tfrecords.convert_file(
            os.path.join(shared_data, 'orcasound', 'catalog', fmt, f'{name}.{fmt}'),
            config) for fmt in FORMATS}
    durations = [c.info.duration_s for c in converted.values()]
    assert max(durations) - min(durations) < 0.05, name
    flac = converted['flac'].stored.astype(np.float32)
    for fmt in ('mp3', 'ogg'):
      other = converted[fmt].stored.astype(np.float32)
      assert other.shape == flac.shape
      audible = flac > -0.9
      # Lossy coding moves single pixels by a few dB; on average under 2.5 dB.
      assert np.abs(other - flac)[audible].mean() < 0.05, (name, fmt)
      assert np.corrcoef(other.ravel(), flac.ravel())[0, 1] > 0.97, (name, fmt)


def test_real_stereo_recording(shared_data):
  _, info = audio_io.open_audio(os.path.join(shared_data, 'orcasound', 'j_pod.wav'))
  assert (info.channels, info.sample_rate_hz) == (2, 44100)
  assert info.duration_s == pytest.approx(20.0, abs=0.05)


@pytest.fixture
def stereo_wav(tmp_path):
  left = tone(1031.25, 3.0, 16000)     # Row 16.
  right = tone(3031.25, 3.0, 16000)    # Row 48.
  return write_wav(tmp_path / 'stereo.wav', np.stack([left, right], axis=1), 16000)


@pytest.mark.parametrize('channel, loud_rows, quiet_rows', [
    ('mix', [16, 48], []), ('0', [16], [48]), ('1', [48], [16])])
def test_channel_mix_and_selection(stereo_wav, channel, loud_rows, quiet_rows):
  config = prepare_tfrecords.PrepareConfig(channel=channel, storage_dtype='float16')
  image = prepare_tfrecords.convert_file(stereo_wav, config).stored[0].astype(np.float32)
  rows = image.mean(axis=1)
  for row in loud_rows:
    assert rows[row] > 0.5, (channel, row)
  for row in quiet_rows:
    assert rows[row] < -0.5, (channel, row)


def test_missing_channel_is_reported(stereo_wav):
  config = prepare_tfrecords.PrepareConfig(channel='2')
  with pytest.raises(audio_io.AudioError, match='has 2 channel.*needs 3'):
    prepare_tfrecords.convert_file(stereo_wav, config)


def test_bad_files_get_one_line_reasons(tmp_path, shared_data):
  expected = make_bad_files(tmp_path, os.path.join(shared_data, 'bench',
                                                   'orca_scene_10min.mp3'))
  os.symlink(tmp_path / 'nowhere.wav', tmp_path / 'dangling.wav')
  expected['dangling.wav'] = 'cannot read: No such file'
  os.mkdir(tmp_path / 'folder.ogg')
  expected['folder.ogg'] = r'not a regular file \(a folder\)'
  config = prepare_tfrecords.PrepareConfig()
  for name, reason in expected.items():
    with pytest.raises(audio_io.AudioError, match=reason) as raised:
      prepare_tfrecords.convert_file(str(tmp_path / name), config)
    assert '\n' not in str(raised.value)


def test_expand_inputs(tmp_path):
  (tmp_path / 'a' / 'b').mkdir(parents=True)
  for name in ('a/x.wav', 'a/b/y.MP3', 'a/readme.txt', 'z.flac'):
    (tmp_path / name).write_bytes(b'')
  found = audio_io.expand_inputs([str(tmp_path / 'a'), str(tmp_path / '*.flac'),
                                  str(tmp_path / 'a' / 'x.wav')])
  rel = [os.path.relpath(p, tmp_path) for p in found]
  assert rel == ['a/x.wav', 'a/b/y.MP3', 'z.flac']
  with pytest.raises(audio_io.InputError, match='no such file'):
    audio_io.expand_inputs([str(tmp_path / 'missing.wav')])
  with pytest.raises(audio_io.InputError, match='matches no file'):
    audio_io.expand_inputs([str(tmp_path / '*.ogg')])
