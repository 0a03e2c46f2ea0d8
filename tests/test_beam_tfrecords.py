"""make_tfrecords --runner: the Apache Beam pipeline against the local converter."""

import json
import os
import sys

import pytest

from orca_gan import prepare_tfrecords
from orca_gan import records
from tests.helpers import make_bad_files, run_app, scene, write_wav

beam_tfrecords = pytest.importorskip(
    'orca_gan.beam_tfrecords', reason='needs the beam extra')
pytest.importorskip('apache_beam', reason="Apache Beam: pip install -e '.[beam]'")


@pytest.fixture
def inputs(tmp_path, shared_data):
  """Real catalogue calls in three formats, synthetic wavs at other rates, bad files."""
  folder = tmp_path / 'audio'
  folder.mkdir()
  for i, (duration_s, rate) in enumerate([(10, 16000), (7, 44100), (13, 22050)]):
    write_wav(folder / f'rec{i}.wav', scene(duration_s, rate, i), rate)
  make_bad_files(folder)
  catalog = os.path.join(shared_data, 'orcasound', 'catalog')
  return [str(folder), os.path.join(catalog, 'mp3', '*S01*.mp3'),
          os.path.join(catalog, 'flac', '*S02*.flac'),
          os.path.join(catalog, 'ogg', '*S03*.ogg')]


def folder_contents(output_dir):
  """{name: bytes} of every file, the manifest without its time stamp."""
  contents = {}
  for name in sorted(os.listdir(output_dir)):
    with open(os.path.join(output_dir, name), 'rb') as f:
      contents[name] = f.read()
  manifest = json.loads(contents.pop(records.MANIFEST))
  del manifest['updated']
  return contents, manifest


def local(inputs, output_dir, config):
  prepare_tfrecords.make_tfrecords(inputs, str(output_dir), config, log=lambda line: None)
  return folder_contents(output_dir)


@pytest.mark.slow
def test_direct_runner_in_processes_writes_what_the_local_converter_writes(inputs,
                                                                           tmp_path):
  # Catalogue calls are shorter than a window: --pad_short keeps them.
  config = prepare_tfrecords.PrepareConfig(windows_per_shard=2, pad_short=True)
  expected_files, expected_manifest = local(inputs, tmp_path / 'local', config)
  assert len(expected_manifest['files']) == 7 and len(expected_manifest['shards']) >= 4
  assert len(expected_manifest['skipped']) == 4
  out = tmp_path / 'beam'
  input_flags = [flag for path in inputs for flag in ('--input', path)]
  result = run_app('make_tfrecords', *input_flags, '--output_dir', str(out),
                   '--windows_per_shard', '2', '--pad_short', '--runner', 'DirectRunner',
                   '--pipeline_options', '--direct_num_workers=2')
  assert result.returncode == 0, result.stderr[-3000:]
  files, manifest = folder_contents(out)
  # Byte-equal shards: the same images, file ids, window indices and start times, in
  # the same shards; and the same manifest, skipped files and their reasons included.
  assert manifest == expected_manifest
  assert files == expected_files
  assert result.stdout.startswith('make_tfrecords: converted 7 files, skipped 4, ')
  for name in ('empty.mp3', 'text.wav', 'image.flac'):
    assert sum(f'skipping {out.parent}/audio/{name}:' in line
               for line in result.stderr.splitlines()) == 1
  assert 'INFO:apache_beam' not in result.stderr  # Beam's chatter is off by default.


def in_memory(output_dir, inputs, config):
  options = beam_tfrecords.pipeline_options(
      'DirectRunner', ['--direct_running_mode=in_memory'], 1)
  return beam_tfrecords.make_tfrecords(inputs, str(output_dir), config, options,
                                       log=lambda line: None)


@pytest.mark.slow
def test_a_rerun_after_a_crash_converts_only_what_is_missing(inputs, tmp_path,
                                                             monkeypatch):
  config = prepare_tfrecords.PrepareConfig(windows_per_shard=4)
  expected_files, expected_manifest = local(inputs[:1], tmp_path / 'local', config)
  out = tmp_path / 'beam'
  write_windows = prepare_tfrecords.write_windows

  def failing(writer, stored, file_id, window_s):
    if file_id == 2:
      raise OSError(28, 'No space left on device')
    write_windows(writer, stored, file_id, window_s)

  # The in-memory runner runs the steps in this process, where they can be patched.
  monkeypatch.setattr(prepare_tfrecords, 'write_windows', failing)
  with pytest.raises(Exception, match='No space left on device'):
    in_memory(out, inputs[:1], config)
  assert not os.path.exists(out / records.MANIFEST)  # Nothing listed, nothing lost:
  parts = os.listdir(out / prepare_tfrecords.BEAM_PARTS)
  assert len(parts) == 8 + 3  # Every file's outcome, and the windows of the 3 good ones.
  monkeypatch.setattr(prepare_tfrecords, 'write_windows', write_windows)
  converted = []
  convert_file = prepare_tfrecords.convert_file
  monkeypatch.setattr(prepare_tfrecords, 'convert_file',
                      lambda path, config: converted.append(path) or convert_file(path,
                                                                                  config))
  # A file changed since the crash is converted again; the others are not.
  changed = os.path.join(inputs[0], 'rec1.wav')
  os.utime(changed, ns=(0, 0))
  summary = in_memory(out, inputs[:1], config)
  assert converted == [changed]
  assert (summary.converted, summary.skipped) == (3, 5)
  assert folder_contents(out) == (expected_files, expected_manifest)
  assert not os.path.exists(out / prepare_tfrecords.BEAM_PARTS)
  # Once done, a rerun finds nothing to do; the local converter continues the folder.
  summary = in_memory(out, inputs[:1], config)
  assert (summary.converted, summary.already_done) == (0, 3)


def test_beam_missing_is_a_usage_error(monkeypatch):
  monkeypatch.setitem(sys.modules, 'apache_beam', None)  # `import` raises ImportError.
  with pytest.raises(prepare_tfrecords.UsageError,
                     match=r"^--runner needs Apache Beam: pip install -e '\.\[beam\]'$"):
    beam_tfrecords.pipeline_options('DirectRunner', [], 2)


def test_direct_runner_uses_the_workers_unless_told_otherwise():
  options = beam_tfrecords.pipeline_options('DirectRunner', [], 3).get_all_options()
  assert (options['direct_num_workers'], options['direct_running_mode']) == (
      3, 'multi_processing')
  options = beam_tfrecords.pipeline_options(
      'DirectRunner', ['--direct_num_workers=5'], 3).get_all_options()
  assert options['direct_num_workers'] == 5


@pytest.mark.slow
@pytest.mark.parametrize('flags, message', [
    (['--runner', 'MyRunner'], 'error: flag --runner=MyRunner: value should be one of'),
    (['--pipeline_options', '--direct_num_workers=2'],
     'error: --pipeline_options needs --runner'),
    (['--runner', 'DirectRunner', '--pipeline_options', 'direct_num_workers=2'],
     "error: --pipeline_options: 'direct_num_workers=2' is not a Beam option"),
    (['--runner', 'DirectRunner', '--output_dir', 'gs://bucket/records'],
     'error: --output_dir gs://bucket/records: --runner needs a folder path that every '
     'worker mounts'),
])
def test_cli_bad_beam_flags_are_one_line_before_any_work(flags, message, tmp_path):
  audio = write_wav(tmp_path / 'a.wav', scene(4, 16000, 0), 16000)
  if '--output_dir' not in flags:
    flags = [*flags, '--output_dir', str(tmp_path / 'out')]
  result = run_app('make_tfrecords', '--input', audio, *flags)
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith(message), (
      result.stderr)
  assert not os.path.exists(tmp_path / 'out')
