"""make_tfrecords end to end: records round trip, bad input, interruption and rerun."""

import json
import os
import re
import subprocess
import sys
import wave

import numpy as np
import pytest

from orca_gan import data
from orca_gan import fileio
from orca_gan import prepare_tfrecords
from orca_gan import records
from tests.helpers import (hostile_folder, limit_file_size, make_bad_files, run_app, scene, tone,
                           transform, write_wav)


@pytest.fixture
def audio_dir(tmp_path):
  folder = tmp_path / 'audio'
  folder.mkdir()
  for i, (duration_s, rate) in enumerate([(10, 16000), (7, 44100), (13, 22050),
                                          (6, 48000)]):
    write_wav(folder / f'rec{i}.wav', scene(duration_s, rate, i), rate)
  return folder


def read_all(output_dir):
  windows = list(data.read_windows(str(output_dir)).as_numpy_iterator())
  return records.read_manifest(str(output_dir)), windows


def test_round_trip_equals_direct_transform(audio_dir, tmp_path):
  out = tmp_path / 'records'
  config = prepare_tfrecords.PrepareConfig(windows_per_shard=3)
  summary = prepare_tfrecords.make_tfrecords([str(audio_dir)], str(out), config,
                                             log=lambda line: None)
  assert (summary.converted, summary.skipped, summary.windows) == (4, 0, 3 + 2 + 4 + 2)
  manifest, windows = read_all(out)
  assert [f['windows'] for f in manifest['files']] == [3, 2, 4, 2]
  assert [f['duration_s'] for f in manifest['files']] == pytest.approx([10, 7, 13, 6])
  assert len(manifest['shards']) == 3  # A file never straddles two shards.
  assert len(windows) == 11
  for entry in manifest['files']:
    wav = os.path.join(audio_dir, os.path.basename(entry['path']))
    with wave.open(wav) as f:
      pcm = np.frombuffer(f.readframes(f.getnframes()), '<i2') / 32768.0
    expected = transform(pcm.astype(np.float32), entry['sample_rate_hz'])
    mine = [w for w in windows if w['file_id'] == entry['file_id']]
    assert [w['window_index'] for w in mine] == list(range(entry['windows']))
    assert [w['start_s'] for w in mine] == [3.0 * i for i in range(entry['windows'])]
    stored = np.stack([w['image'] for w in mine])
    # uint8 storage: at most half a step (1/255) from the float transform.
    np.testing.assert_allclose(stored, expected, atol=1 / 255 + 1e-6)


def test_float16_storage_is_finer_and_twice_the_size(audio_dir, tmp_path):
  sizes = {}
  for dtype in ('uint8', 'float16'):
    out = tmp_path / dtype
    config = prepare_tfrecords.PrepareConfig(storage_dtype=dtype, compression='NONE')
    prepare_tfrecords.make_tfrecords([str(audio_dir / 'rec0.wav')], str(out), config,
                                     log=lambda line: None)
    manifest, windows = read_all(out)
    assert manifest['storage']['dtype'] == dtype
    sizes[dtype] = os.path.getsize(records.shard_paths(str(out), manifest)[0])
  assert 1.9 < sizes['float16'] / sizes['uint8'] < 2.1


@pytest.mark.slow
def test_cli_reports_each_bad_file_once_and_converts_the_rest(audio_dir, tmp_path,
                                                              shared_data):
  bad = make_bad_files(audio_dir, os.path.join(shared_data, 'bench',
                                               'orca_scene_10min.mp3'))
  out = tmp_path / 'records'
  result = run_app('make_tfrecords', '--input', str(audio_dir),
                   '--input', str(audio_dir / 'notes.txt'), '--output_dir', str(out))
  assert result.returncode == 0, result.stderr
  last = result.stdout.strip().splitlines()[-1]
  assert last.startswith('make_tfrecords: converted 4 files, skipped 8,')
  assert 'realtime' in last
  for name, reason in bad.items():
    lines = [line for line in result.stderr.splitlines() if name in line]
    assert len(lines) == 1, (name, lines)
    assert lines[0].startswith('skipping ') and re.search(reason, lines[0])
  manifest = json.loads((out / 'manifest.json').read_text())
  assert sorted(os.path.basename(s['path']) for s in manifest['skipped']) == sorted(bad)
  assert all(s['reason'] for s in manifest['skipped'])
  assert len(manifest['files']) == 4


def test_pad_short_keeps_short_clips(tmp_path):
  clip = write_wav(tmp_path / 'call.wav', tone(2031.25, 1.2, 16000), 16000)
  out = tmp_path / 'records'
  config = prepare_tfrecords.PrepareConfig(pad_short=True)
  prepare_tfrecords.make_tfrecords([clip], str(out), config, log=lambda line: None)
  manifest, windows = read_all(out)
  assert manifest['files'][0]['padded'] and len(windows) == 1
  image = windows[0]['image']
  assert image[32, :45].mean() > 0.5        # The call, in the first 1.2 s ...
  assert image[32, 60:].max() == -1.0       # ... then silence (zero padding).


@pytest.mark.slow
def test_cli_exits_nonzero_when_nothing_converts(tmp_path):
  make_bad_files(tmp_path)
  result = run_app('make_tfrecords', '--input', str(tmp_path),
                   '--output_dir', str(tmp_path / 'out'))
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1] == (
      'error: no file was converted (see the reasons above)')


@pytest.mark.slow
@pytest.mark.parametrize('args, message', [
    (['--input', '/nonexistent/tape.mp3'],
     'error: --input /nonexistent/tape.mp3: no such file or directory'),
    (['--input', '/nonexistent/*.mp3'], 'error: --input /nonexistent/*.mp3: the pattern '
     'matches no file'),
    ([], 'error: --input is required'),
    (['--input', '{audio}', '--output_dir', '{audio}/rec0.wav/out'],
     'error: --output_dir {audio}/rec0.wav/out: not writable (Not a directory)'),
    (['--input', '{audio}', '--image_size', '4'], 'error: image_size must be at least 8'),
    (['--input', '{audio}', '--channel', 'left'], "error: --channel must be 'mix' or"),
    (['--input', '{audio}', '--windows_per_shard', '0'],
     'error: --windows_per_shard must be at least 1'),
])
def test_cli_argument_errors_come_before_any_work(audio_dir, tmp_path, args, message):
  args = [a.format(audio=audio_dir) for a in args]
  if '--output_dir' not in args:
    args += ['--output_dir', str(tmp_path / 'out')]
  result = run_app('make_tfrecords', *args)
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(message.format(audio=audio_dir)), lines
  assert not (tmp_path / 'out').exists()


def test_other_parameters_in_output_dir_are_refused(audio_dir, tmp_path):
  out = str(tmp_path / 'records')
  prepare_tfrecords.make_tfrecords([str(audio_dir / 'rec0.wav')], out,
                                   log=lambda line: None)
  other = prepare_tfrecords.PrepareConfig(
      transform=prepare_tfrecords.spectral.SpectrogramConfig(image_size=64))
  with pytest.raises(prepare_tfrecords.UsageError, match='other transform'):
    prepare_tfrecords.make_tfrecords([str(audio_dir)], out, other, log=lambda line: None)


def test_interrupted_run_keeps_finished_files_and_rerun_completes(audio_dir, tmp_path,
                                                                  monkeypatch):
  config = prepare_tfrecords.PrepareConfig(windows_per_shard=5, num_workers=1)
  clean = tmp_path / 'clean'
  prepare_tfrecords.make_tfrecords([str(audio_dir)], str(clean), config,
                                   log=lambda line: None)
  _, clean_windows = read_all(clean)

  out = tmp_path / 'records'
  real_convert = prepare_tfrecords.convert_file

  def interrupted_at_rec2(path, cfg):
    if path.endswith('rec2.wav'):
      raise KeyboardInterrupt  # Ctrl-C (or SIGTERM, which the app maps to it).
    return real_convert(path, cfg)

  monkeypatch.setattr(prepare_tfrecords, 'convert_file', interrupted_at_rec2)
  with pytest.raises(KeyboardInterrupt):
    prepare_tfrecords.make_tfrecords([str(audio_dir)], str(out), config,
                                     log=lambda line: None)
  # rec0 (3 windows) + rec1 (2) filled shard 0; nothing half-written remains.
  assert sorted(os.listdir(out)) == ['manifest.json', 'shard-00000.tfrecord.gz']
  manifest, windows = read_all(out)
  assert [os.path.basename(f['path']) for f in manifest['files']] == ['rec0.wav',
                                                                      'rec1.wav']
  assert len(windows) == 5

  # A hard kill can leave a temporary shard and a renamed shard the manifest never
  # listed: both are removed, their files converted again.
  (out / 'shard-00001.tfrecord.gz.tmp').write_bytes(b'partial')
  (out / 'shard-00001.tfrecord.gz').write_bytes(b'unlisted')
  monkeypatch.setattr(prepare_tfrecords, 'convert_file', real_convert)
  lines = []
  summary = prepare_tfrecords.make_tfrecords([str(audio_dir)], str(out), config,
                                             log=lines.append)
  assert (summary.converted, summary.already_done) == (2, 2)
  assert any('removing shard-00001.tfrecord.gz.tmp' in line for line in lines)
  manifest, windows = read_all(out)
  paths = [f['path'] for f in manifest['files']]
  assert len(paths) == len(set(paths)) == 4
  assert [w['window_index'] for w in windows] == [w['window_index'] for w in clean_windows]
  for mine, theirs in zip(windows, clean_windows):
    np.testing.assert_array_equal(mine['image'], theirs['image'])

  # A third run has nothing left to do and changes nothing.
  summary = prepare_tfrecords.make_tfrecords([str(audio_dir)], str(out), config,
                                             log=lambda line: None)
  assert (summary.converted, summary.already_done) == (0, 4)
  assert records.read_manifest(str(out))['files'] == manifest['files']


def test_reader_rejects_missing_or_broken_folders(tmp_path):
  with pytest.raises(records.ManifestError, match='no such TFRecord folder'):
    records.read_manifest(str(tmp_path / 'nope'))
  with pytest.raises(records.ManifestError, match='no manifest'):
    records.read_manifest(str(tmp_path))
  (tmp_path / 'manifest.json').write_text('{"format": "something else"}')
  with pytest.raises(records.ManifestError, match='not an orca_gan.tfrecords/1'):
    records.read_manifest(str(tmp_path))


@pytest.mark.slow
def test_hostile_folder_converts_every_usable_file(tmp_path):
  paths = hostile_folder(str(tmp_path / 'audio'))
  out = tmp_path / 'records'
  result = run_app('make_tfrecords', '--input', str(tmp_path / 'audio'), '--output_dir',
                   str(out), timeout=120)
  assert result.returncode == 0, result.stderr
  assert result.stdout.startswith('make_tfrecords: converted 4 files, skipped 2,')
  manifest = records.read_manifest(str(out))
  files = {f['path']: f for f in manifest['files']}
  assert set(files) == {paths[k] for k in ('good', 'lying_header', 'float32',
                                           'not_utf8')}
  # The lying header's valid half is kept, and the truncation noted.
  assert files[paths['lying_header']]['windows'] == 6
  assert files[paths['good']]['windows'] == 13
  assert 'header claims 640000 samples, the file holds 320000' in (
      files[paths['lying_header']]['note'])
  assert 'truncated' in result.stderr
  skipped = {s['path']: s['reason'] for s in manifest['skipped']}
  assert skipped == {paths['fifo']: 'not a regular file (a named pipe)',
                     paths['nan']: skipped[paths['nan']]}
  assert skipped[paths['nan']] == 'NaN or Inf samples (first in the window from 18 s)'
  assert r'caf\xe9.wav' not in result.stderr  # Converted, so not mentioned ...
  windows = list(data.read_windows(str(out)).as_numpy_iterator())
  assert len(windows) == sum(f['windows'] for f in files.values())
  assert all(np.isfinite(w['image']).all() for w in windows)
  # ... and a rerun finds every file done, whatever its name.
  again = run_app('make_tfrecords', '--input', str(tmp_path / 'audio'), '--output_dir',
                  str(out), timeout=120)
  assert again.returncode == 0 and '4 already done' in again.stdout, again.stderr


_READ_AFTER_FAILED_DECODE = '''
import os, sys
from orca_gan import audio_io, prepare_tfrecords
lying, other, out = sys.argv[1:]
# As before the header check: the decoder is sent past the end of the data and fails
# mid-file, with reads still queued behind the failing one.
audio_io.wav_data_frames = lambda path: None
config = prepare_tfrecords.PrepareConfig(num_workers=1, chunk_windows=4)
for i in range(20):
  summary = prepare_tfrecords.make_tfrecords(
      [lying, other], os.path.join(out, str(i)), config, log=lambda line: None)
  assert (summary.skipped, summary.converted) == (1, 1), summary
print('ok')
'''


@pytest.mark.slow
def test_a_failed_decode_leaves_no_read_in_flight(tmp_path):
  # The reader is reused by the next file on the thread: a read of the failed file
  # still queued then ran on a float reader with int16 and aborted the process.
  paths = hostile_folder(str(tmp_path))
  result = subprocess.run(
      [sys.executable, '-c', _READ_AFTER_FAILED_DECODE, paths['lying_header'],
       paths['float32'], str(tmp_path / 'out')], capture_output=True, text=True,
      timeout=300)
  assert result.returncode == 0 and result.stdout.strip() == 'ok', result.stderr[-2000:]


@pytest.mark.slow
def test_a_second_writer_is_refused_while_the_first_runs(audio_dir, tmp_path):
  out = tmp_path / 'records'
  with fileio.lock_folder(str(out), '--output_dir', 'make_tfrecords'):
    result = run_app('make_tfrecords', '--input', str(audio_dir), '--output_dir',
                     str(out))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f'error: --output_dir {out} is in use by another process (make_tfrecords, pid '
        f'{os.getpid()}); wait for it to finish or choose another folder']
    assert not (out / 'manifest.json').exists()
  # The lock dies with its holder, even killed: nothing is ever stale.
  holder = subprocess.Popen(
      [sys.executable, '-c', 'import sys, time; from orca_gan import fileio\n'
       f'with fileio.lock_folder({str(out)!r}, "--output_dir", "x"):\n'
       '  print("locked", flush=True); time.sleep(600)'],
      stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == 'locked'
  assert run_app('make_tfrecords', '--input', str(audio_dir), '--output_dir',
                 str(out)).returncode == 1
  holder.kill()
  holder.wait()
  result = run_app('make_tfrecords', '--input', str(audio_dir), '--output_dir', str(out))
  assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_disk_full_names_the_path_and_leaves_nothing_half_written(audio_dir, tmp_path):
  out = tmp_path / 'records'
  # A file-size limit: writes past it fail with EFBIG, as on a full disk.
  result = run_app('make_tfrecords', '--input', str(audio_dir), '--output_dir', str(out),
                   '--compression', 'NONE', preexec_fn=limit_file_size(100_000))
  assert result.returncode == 1, result.stderr
  message = result.stderr.strip().splitlines()[-1]
  assert message.startswith(f'error: {out}/shard-00000.tfrecord: cannot write'), message
  assert not [n for n in os.listdir(out) if n.endswith('.tmp')]
  manifest = records.read_manifest(str(out))
  assert manifest['files'] == [] and manifest['shards'] == []
  result = run_app('make_tfrecords', '--input', str(audio_dir), '--output_dir', str(out),
                   '--compression', 'NONE')
  assert result.returncode == 0 and 'converted 4 files' in result.stdout, result.stderr
