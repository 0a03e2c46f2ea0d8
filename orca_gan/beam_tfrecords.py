"""make_tfrecords on Apache Beam: the same conversion, spread over many machines.

The pipeline (run by `make_tfrecords --runner ...`) computes what the local converter
(`prepare_tfrecords.make_tfrecords`) computes, window for window: the same images,
file ids, window indices, start times and shards.

1. Convert (one file per element, in parallel): `prepare_tfrecords.convert_file`
   decodes and transforms the file; its stored windows go to a part file in the
   staging folder `<output_dir>/.beam-parts`, renamed into place when whole, and a
   small record of the outcome (its manifest entry, or why it was skipped) beside it.
   A file whose part exists already (from a run that crashed later), and whose size
   and modification time have not changed since, is not converted again.
2. Plan (once, when every file is done): file ids follow the input order, and files
   are packed into shards as the local converter packs them (a shard is closed once it
   holds `windows_per_shard` windows; a file never straddles two shards).
3. Write (one shard per element, in parallel): the shard is written under a temporary
   name from the parts of its files and renamed when complete.
4. Finish (once): the manifest is written from the results, then the parts deleted.

A crash before step 4 leaves the manifest as it was; shards it does not list are
removed by the next run, which converts only the files whose parts are missing.
Every worker reads the inputs and writes the output folder by path: on a cluster
both must be on a filesystem every worker mounts.
"""

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time

import numpy as np

from orca_gan import audio_io
from orca_gan import fileio
from orca_gan import prepare_tfrecords
from orca_gan import records
from orca_gan import workers

RUNNERS = ('DirectRunner', 'DataflowRunner', 'FlinkRunner', 'SparkRunner')

UsageError = prepare_tfrecords.UsageError


def import_beam():
  """apache_beam, or a one-line UsageError saying how to install it."""
  root = logging.getLogger()
  level = root.level
  # Its import warns that Google Cloud's BigQuery client is missing, which no step here
  # uses.
  root.setLevel(logging.ERROR)
  try:
    import apache_beam
  except ImportError:
    raise UsageError("--runner needs Apache Beam: pip install -e '.[beam]'") from None
  finally:
    root.setLevel(level)
  return apache_beam


def pipeline_options(runner: str, options, num_workers: int):
  """Beam's PipelineOptions for `--runner` and the pass-through `--pipeline_options`.

  The DirectRunner defaults to `num_workers` processes (multi_processing), as many
  files at once as the local converter converts, and workers log only errors; the
  options given override these.

  Raises:
    UsageError: An option is not of the form --name or --name=value.
  """
  import_beam()
  from apache_beam.options import pipeline_options as beam_options
  options = list(options)
  for option in options:
    if not option.startswith('--'):
      raise UsageError(f'--pipeline_options: {option!r} is not a Beam option (--name=value)')
  given = {o[2:].split('=', 1)[0] for o in options}
  defaults: dict = {'default_sdk_harness_log_level': 'ERROR'}
  if runner == 'DirectRunner':
    defaults.update(direct_running_mode='multi_processing', direct_num_workers=num_workers)
  return beam_options.PipelineOptions(
      [f'--runner={runner}', *[f'--{k}={v}' for k, v in defaults.items() if k not in given],
       *options])


def _part_name(path: str) -> str:
  """The staging name of a file's part (one name per input path)."""
  return hashlib.sha1(os.fsencode(path)).hexdigest()[:24]


@dataclasses.dataclass(frozen=True)
class _Job:
  """What every step of the pipeline needs to know (pickled to the workers)."""
  output_dir: str
  config: prepare_tfrecords.PrepareConfig

  @property
  def parts_dir(self) -> str:
    return os.path.join(self.output_dir, prepare_tfrecords.BEAM_PARTS)

  def part(self, path: str, suffix: str) -> str:
    return os.path.join(self.parts_dir, _part_name(path) + suffix)


def _convert(item, job: _Job) -> dict:
  """Step 1: (input index, path) -> the file's outcome, its windows in a part file."""
  index, path = item
  outcome_path = job.part(path, '.json')
  try:
    status = os.stat(path)
    stamp = [status.st_size, status.st_mtime_ns]
  except OSError:
    stamp = None  # convert_file says why.
  if os.path.exists(outcome_path):  # Converted by a run that crashed later...
    with open(outcome_path) as f:
      outcome = json.load(f)
    if outcome.get('stamp') == stamp:  # ...from the file as it is now.
      return dict(outcome, index=index)
  try:
    converted = prepare_tfrecords.convert_file(path, job.config)
  except audio_io.AudioError as e:
    outcome = {'path': path, 'reason': str(e), 'stamp': stamp}
  else:
    with fileio.atomic_path(job.part(path, '.npy')) as temporary:
      with open(temporary, 'xb') as f:
        np.save(f, converted.stored)
    outcome = {'path': path, 'stamp': stamp, 'entry': prepare_tfrecords.file_entry(
        converted.info, len(converted.stored), converted.padded, -1, '', 0)}
  fileio.write_json_atomic(outcome_path, outcome)
  return dict(outcome, index=index)


def _plan(outcomes, job: _Job, file_id: int, index: int):
  """Step 2: every outcome -> one (shard name, [file entries]) per shard to write, the
  first with file id `file_id` in shard number `index`."""
  converted = sorted((o for o in outcomes if 'entry' in o), key=lambda o: o['index'])
  shard: list = []
  windows = 0
  for outcome in converted:
    name = prepare_tfrecords.shard_name(index, job.config.compression)
    shard.append(dict(outcome['entry'], file_id=file_id, shard=name, shard_offset=windows))
    file_id += 1
    windows += outcome['entry']['windows']
    if windows >= job.config.windows_per_shard or outcome is converted[-1]:
      yield name, shard
      index, shard, windows = index + 1, [], 0


def _write_shard(plan, job: _Job) -> dict:
  """Step 3: writes one planned shard; returns its manifest entry and its files'."""
  name, entries = plan
  path = os.path.join(job.output_dir, name)
  config = job.config
  with prepare_tfrecords.writing_shard(path), fileio.atomic_path(path) as temporary:
    writer = prepare_tfrecords.open_shard(temporary, config.compression)
    for entry in entries:
      stored = np.load(job.part(entry['path'], '.npy'))
      prepare_tfrecords.write_windows(writer, stored, entry['file_id'],
                                      config.transform.window_s)
    writer.close()
  return {'shard': {'path': name, 'windows': sum(e['windows'] for e in entries),
                    'files': [e['file_id'] for e in entries]},
          'files': entries}


def _finish(written, outcomes, job: _Job, manifest: dict) -> None:
  """Step 4: the manifest continued, written once from the results; then the parts
  go."""
  manifest = dict(manifest)
  written = sorted(written, key=lambda w: w['shard']['files'][0])
  manifest['shards'] = manifest['shards'] + [w['shard'] for w in written]
  manifest['files'] = manifest['files'] + [f for w in written for f in w['files']]
  skipped = {s['path']: s for s in manifest['skipped']}
  for outcome in outcomes:
    skipped.pop(outcome['path'], None)
    if 'reason' in outcome:
      skipped[outcome['path']] = {'path': outcome['path'], 'reason': outcome['reason']}
  manifest['skipped'] = sorted(skipped.values(), key=lambda s: s['path'])
  prepare_tfrecords.write_manifest(job.output_dir, manifest)
  shutil.rmtree(job.parts_dir, ignore_errors=True)


def build_pipeline(pipeline, todo, job: _Job, manifest: dict) -> None:
  """Adds the four steps for the files `todo` (in input order), continuing `manifest`,
  to `pipeline`."""
  beam = import_beam()
  outcomes = (pipeline
              | 'Files' >> beam.Create(list(enumerate(todo)))
              # Spreads the files over the workers (Create makes one bundle).
              | 'SpreadFiles' >> beam.Reshuffle()
              | 'Convert' >> beam.Map(_convert, job=job))
  every_outcome = outcomes | 'AllOutcomes' >> beam.combiners.ToList()
  written = (every_outcome
             | 'Plan' >> beam.FlatMap(_plan, job=job, file_id=len(manifest['files']),
                                      index=prepare_tfrecords.next_shard_index(manifest))
             | 'SpreadShards' >> beam.Reshuffle()
             | 'WriteShard' >> beam.Map(_write_shard, job=job))
  _ = (written
       | 'AllShards' >> beam.combiners.ToList()
       | 'Finish' >> beam.Map(_finish, outcomes=beam.pvalue.AsSingleton(every_outcome),
                              job=job, manifest=manifest))


def make_tfrecords(inputs, output_dir: str, config: prepare_tfrecords.PrepareConfig,
                   options, log=workers.log_to_stderr) -> prepare_tfrecords.RunSummary:
  """`prepare_tfrecords.make_tfrecords` as a Beam pipeline run with `options`
  (`pipeline_options`); this process holds the output folder's lock meanwhile.

  Raises:
    UsageError: Before any work, when the arguments make the run impossible.
    audio_io.InputError: Before any work, when an input names nothing.
  """
  start = time.monotonic()
  if '://' in output_dir:
    raise UsageError(f'--output_dir {output_dir}: --runner needs a folder path that '
                     'every worker mounts (e.g. NFS or a FUSE-mounted bucket)')
  beam = import_beam()
  with prepare_tfrecords.continuing(inputs, output_dir, config, log,
                                    keep_parts=True) as (manifest, todo, summary):
    if todo:
      os.makedirs(os.path.join(output_dir, prepare_tfrecords.BEAM_PARTS), exist_ok=True)
      job = _Job(output_dir=os.path.abspath(output_dir), config=config)
      log(f'running the conversion of {len(todo)} files on Beam '
          f'({options.get_all_options()["runner"]})')
      with beam.Pipeline(options=options) as pipeline:
        build_pipeline(pipeline, todo, job, manifest)
      final = records.read_manifest(output_dir)
      new_files = final['files'][len(manifest['files']):]
      todo_set = set(todo)
      for skip in final['skipped']:
        if skip['path'] in todo_set:
          log(f'skipping {audio_io.display_path(skip["path"])}: {skip["reason"]}')
          summary.skipped += 1
      summary.converted = len(new_files)
      summary.windows = sum(f['windows'] for f in new_files)
      summary.audio_s = sum(f['duration_s'] for f in new_files)
      summary.shards = len(final['shards']) - len(manifest['shards'])
  summary.wall_s = time.monotonic() - start
  return summary
