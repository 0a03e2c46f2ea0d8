"""Audio files -> sharded spectrogram TFRecords (the library behind bin/make_tfrecords).

Work is split so both cores stay busy and nothing is done twice: `num_workers` threads
each take a whole file; for it a tf.data pipeline decodes the audio chunk by chunk
(`audio_io.segment_dataset`) while the spectrogram of the previous chunk is computed by a
`tf.function` on the default device (the GPU when there is one; tf.data functions always
run on the CPU). The main thread writes finished files, in input order, to shards.

Nothing half-written is ever visible: a shard is written under a temporary name and
renamed when complete, then the manifest (itself replaced atomically) is updated to list
it. A file counts as done once a listed shard holds it, so rerunning an interrupted
command converts only what is missing. A file's windows never straddle two shards.
"""

import contextlib
import dataclasses
import datetime
import functools
import os
import shutil
import tempfile
import threading
import time

import numpy as np
import tensorflow as tf

import orca_gan
from orca_gan import audio_io
from orca_gan import configs
from orca_gan import fileio
from orca_gan import records
from orca_gan import spectral
from orca_gan import workers

_SHARD_PREFIX = 'shard-'
# Where a Beam run (`beam_tfrecords`) stages converted files until the manifest lists them.
BEAM_PARTS = '.beam-parts'


UsageError = configs.UsageError  # The one usage error of every app.


@dataclasses.dataclass(frozen=True)
class PrepareConfig:
  """How audio becomes records; built from the flags of bin/make_tfrecords.

  Attributes:
    transform: The spectrogram transform.
    channel: 'mix' (mean of all channels) or a channel index ('0', '1', ...).
    pad_short: Keep recordings shorter than one window as one zero-padded window.
    storage_dtype: 'uint8' (2/255 steps, 0.39 dB at the default range) or 'float16'.
    compression: 'GZIP' or 'NONE'.
    windows_per_shard: A shard is closed once it holds at least this many windows.
    num_workers: Files converted at once.
    chunk_windows: Windows decoded and transformed per chunk (bounds memory).
  """
  transform: spectral.SpectrogramConfig = dataclasses.field(
      default_factory=spectral.SpectrogramConfig)
  channel: str = configs.flag('mix', "'mix' (mean of channels) or a channel index.")
  pad_short: bool = configs.flag(False,
      'Keep recordings shorter than one window as one zero-padded window instead of '
      'skipping them.')
  storage_dtype: str = configs.flag('uint8',
      'Stored value type (see tfrecords/README.md for the trade-off).',
      choices=records.STORAGE_DTYPES)
  compression: str = configs.flag('GZIP', 'Shard compression.',
                                  choices=records.COMPRESSIONS)
  windows_per_shard: int = configs.flag(1024,
      'Close a shard once it holds this many windows (a file is never split across '
      'shards).')
  num_workers: int = configs.flag(2, 'Files converted at once (one per core).')
  chunk_windows: int = configs.flag(16,
      'Windows decoded and transformed per chunk (bounds memory).')

  def __post_init__(self):
    if self.channel != 'mix' and not (self.channel.isdigit()):
      raise UsageError(f"--channel must be 'mix' or a channel index, got {self.channel!r}")
    configs.check(self, UsageError)
    for name in ('windows_per_shard', 'num_workers', 'chunk_windows'):
      if getattr(self, name) < 1:
        raise UsageError(f'--{name} must be at least 1, got {getattr(self, name)}')


@dataclasses.dataclass
class ConvertedFile:
  info: audio_io.AudioInfo
  stored: np.ndarray  # [windows, H, W] in the storage dtype.
  padded: bool


@dataclasses.dataclass
class RunSummary:
  output_dir: str
  converted: int = 0
  skipped: int = 0
  already_done: int = 0
  windows: int = 0
  audio_s: float = 0.0
  wall_s: float = 0.0
  shards: int = 0

  @property
  def realtime_factor(self) -> float:
    return self.audio_s / max(self.wall_s, 1e-9)

  def line(self) -> str:
    done = f', {self.already_done} already done' if self.already_done else ''
    return (f'make_tfrecords: converted {self.converted} files, skipped {self.skipped}'
            f'{done}, wrote {self.windows} windows in {self.shards} shards, '
            f'{self.audio_s / 3600:.3f} h of audio at {self.realtime_factor:.0f}x '
            f'realtime -> {self.output_dir}')


_FN_LOCK = threading.Lock()
# Files submitted ahead of the one being written: enough that a long file at the head
# of the queue does not leave the other workers idle (a converted 10-minute file is
# 3.3 MB of uint8 images, a 55-minute tape 18 MB).
_LOOKAHEAD_PER_WORKER = 4


def _stored_spectrogram_fn(config: spectral.SpectrogramConfig, input_rate_hz: int,
                           storage_dtype: str):
  """The cached tf.function for one input rate, built (and traced) by one thread only."""
  with _FN_LOCK:
    return _build_stored_spectrogram_fn(config, input_rate_hz, storage_dtype)


@functools.lru_cache(maxsize=16)
def _build_stored_spectrogram_fn(config: spectral.SpectrogramConfig,
                                 input_rate_hz: int, storage_dtype: str):
  """A tf.function: (segment [n], offsets [w, W]) -> (stored images [w, H, W], bool [w]:
  whether a window's image is not finite, i.e. it holds NaN or Inf samples)."""

  @tf.function(input_signature=[
      tf.TensorSpec([None], tf.float32),
      tf.TensorSpec([None, config.image_size], tf.int32)])
  def fn(segment, offsets):
    images = spectral.audio_to_images(segment, offsets, config, input_rate_hz)
    # Checked on the images, 8x smaller than the samples at 44.1 kHz: a NaN or Inf
    # sample makes its frames' band powers NaN or Inf.
    not_finite = tf.reduce_any(~tf.math.is_finite(images), axis=[1, 2])
    return records.quantize(images, storage_dtype), not_finite

  # Trace now, under the lock, rather than in two workers at once.
  fn.get_concrete_function()
  return fn


def convert_file(path: str, config: PrepareConfig) -> ConvertedFile:
  """Decodes one file and computes all its windows.

  Raises:
    audio_io.AudioError: The file cannot be converted; the message says why.
  """
  resource, info = audio_io.open_audio(path)
  transform = config.transform
  count = spectral.num_windows(info.num_samples, info.sample_rate_hz, transform.window_s,
                               config.pad_short)
  if count == 0:
    raise audio_io.AudioError(
        f'shorter than one window ({info.duration_s:.2f} s < {transform.window_s:g} s; '
        '--pad_short keeps such files)')
  geometry = spectral.frame_geometry(transform, info.sample_rate_hz)
  firsts = range(0, count, config.chunk_windows)
  sizes = [min(config.chunk_windows, count - first) for first in firsts]
  bounds = [spectral.segment_bounds(f, n, geometry) for f, n in zip(firsts, sizes)]
  segments = audio_io.segment_dataset(resource, info, bounds, config.channel)
  fn = _stored_spectrogram_fn(transform, info.sample_rate_hz, config.storage_dtype)
  chunks, reason = [], None
  iterator = iter(segments)
  try:
    for first, size in zip(firsts, sizes):
      offsets = spectral.frame_offsets(first, size, transform, geometry)
      stored, not_finite = fn(next(iterator), offsets)
      if np.any(not_finite):
        bad = first + int(np.argmax(not_finite))
        reason = (f'NaN or Inf samples (first in the window from '
                  f'{bad * transform.window_s:g} s)')
        break
      chunks.append(stored.numpy())
  except tf.errors.OpError as e:
    reason = audio_io.op_error_reason(e)
  # The iterator, and the read it may have in flight, must be gone before this thread
  # opens its next file on the same reader (`audio_io.open_audio`). Deleting the last
  # reference deletes the iterator at once, which waits for its prefetch thread; the
  # error (whose traceback holds the iterator) is gone with the except clause.
  del iterator
  if reason:
    raise audio_io.AudioError(reason)
  padded = info.num_samples < transform.window_s * info.sample_rate_hz
  return ConvertedFile(info=info, stored=np.concatenate(chunks), padded=padded)


def check_output_dir(output_dir: str) -> None:
  try:
    os.makedirs(output_dir, exist_ok=True)
    with tempfile.TemporaryFile(dir=output_dir):
      pass
  except OSError as e:
    raise UsageError(f'--output_dir {output_dir}: not writable ({e.strerror})') from e


def _new_manifest(config: PrepareConfig) -> dict:
  size = config.transform.image_size
  return {
      'format': records.FORMAT,
      'package_version': orca_gan.__version__,
      'transform': config.transform.to_dict(),
      'storage': {
          'dtype': config.storage_dtype,
          'compression': config.compression,
          'image_shape': [size, size],
          'layout': 'row-major [frequency low->high, time]',
          'values': ('float32 = uint8 / 127.5 - 1' if config.storage_dtype == 'uint8'
                     else 'float32 = float16'),
          'features': {records.SPECTROGRAM: 'bytes', records.FILE_ID: 'int64',
                       records.WINDOW_INDEX: 'int64', records.START_S: 'float'},
      },
      'channel': config.channel,
      'pad_short': config.pad_short,
      'shards': [],
      'files': [],
      'skipped': [],
  }


def load_or_start_manifest(output_dir: str, config: PrepareConfig) -> dict:
  """The manifest to continue, or a new one; refuses a folder made differently."""
  path = os.path.join(output_dir, records.MANIFEST)
  if not os.path.exists(path):
    return _new_manifest(config)
  try:
    manifest = records.read_manifest(output_dir)
  except records.ManifestError as e:
    raise UsageError(f'--output_dir {output_dir}: {e}; choose an empty folder') from e
  fresh = _new_manifest(config)
  for key in ('transform', 'storage', 'channel', 'pad_short'):
    if manifest.get(key) != fresh[key]:
      raise UsageError(
          f'--output_dir {output_dir} holds records made with other {key} '
          f'({manifest.get(key)} vs {fresh[key]}); choose another --output_dir')
  return manifest


def remove_leftovers(output_dir: str, manifest: dict, log, keep_parts: bool = False) -> None:
  """Deletes temporary files and shards an interrupted run wrote but never listed, and
  (unless `keep_parts`) the parts a crashed Beam run staged (`beam_tfrecords`)."""
  listed = {s['path'] for s in manifest['shards']}
  for name in sorted(os.listdir(output_dir)):
    leftover = name.endswith('.tmp') or (name.startswith(_SHARD_PREFIX)
                                         and name not in listed)
    if leftover and os.path.isfile(os.path.join(output_dir, name)):
      log(f'removing {name}: left by an interrupted run, not in the manifest')
      os.remove(os.path.join(output_dir, name))
  parts = os.path.join(output_dir, BEAM_PARTS)
  if not keep_parts and os.path.isdir(parts):
    log(f'removing {BEAM_PARTS}: converted files an interrupted Beam run left')
    shutil.rmtree(parts)


def next_shard_index(manifest: dict) -> int:
  """The number of the next new shard of a folder."""
  return 1 + max([int(s['path'][len(_SHARD_PREFIX):].split('.')[0])
                  for s in manifest['shards']], default=-1)


def shard_name(index: int, compression: str) -> str:
  suffix = '.tfrecord.gz' if compression == 'GZIP' else '.tfrecord'
  return f'{_SHARD_PREFIX}{index:05d}{suffix}'


def open_shard(path: str, compression: str) -> tf.io.TFRecordWriter:
  options = tf.io.TFRecordOptions(compression_type='GZIP' if compression == 'GZIP' else '')
  return tf.io.TFRecordWriter(path, options)


@contextlib.contextmanager
def writing_shard(path: str):
  """Turns a failed write into one `fileio.OutputError` naming the shard."""
  try:
    yield
  except (OSError, tf.errors.OpError) as e:
    raise fileio.OutputError(f'{path}: cannot write ({fileio.os_reason(e)})') from None


def write_windows(writer: tf.io.TFRecordWriter, stored: np.ndarray, file_id: int,
                  window_s: float) -> None:
  """Appends a file's windows ([windows, H, W] stored values) to a shard."""
  for index, image in enumerate(stored):
    writer.write(records.serialize_window(image.tobytes(), file_id, index,
                                          index * window_s))


def file_entry(info: audio_io.AudioInfo, windows: int, padded: bool, file_id: int,
               shard: str, shard_offset: int) -> dict:
  """A file's entry in manifest['files']."""
  return {
      'file_id': file_id,
      'path': info.path,
      'format': info.format,
      'bytes': os.path.getsize(info.path),
      'duration_s': info.duration_s,
      'sample_rate_hz': info.sample_rate_hz,
      'channels': info.channels,
      'windows': windows,
      'padded': padded,
      **({'note': info.note} if info.note else {}),
      'shard': shard,
      'shard_offset': shard_offset,
  }


class _ShardWriter:
  """Appends converted files to shards; commits a shard by rename + manifest update."""

  def __init__(self, output_dir: str, manifest: dict, config: PrepareConfig):
    self._dir = output_dir
    self._manifest = manifest
    self._config = config
    self._writer: tf.io.TFRecordWriter | None = None
    self._tmp = ''
    self._name = ''
    self._pending: list[dict] = []
    self._windows = 0
    self.committed = 0

  def _open(self):
    self._name = shard_name(next_shard_index(self._manifest), self._config.compression)
    self._tmp = fileio.temporary_name(os.path.join(self._dir, self._name))
    self._writer = open_shard(self._tmp, self._config.compression)

  def _writing(self):
    return writing_shard(os.path.join(self._dir, self._name))

  def add(self, converted: ConvertedFile) -> None:
    if self._writer is None:
      self._open()
    file_id = len(self._manifest['files']) + len(self._pending)
    writer = self._writer
    assert writer is not None
    with self._writing():
      write_windows(writer, converted.stored, file_id, self._config.transform.window_s)
    self._pending.append(file_entry(converted.info, len(converted.stored),
                                    converted.padded, file_id, self._name, self._windows))
    self._windows += len(converted.stored)
    if self._windows >= self._config.windows_per_shard:
      self.commit()

  def commit(self) -> None:
    """Makes the open shard visible: close, rename, list it in the manifest."""
    if self._writer is None:
      return
    with self._writing():
      self._writer.close()
    os.replace(self._tmp, os.path.join(self._dir, self._name))
    self._manifest['shards'].append({
        'path': self._name, 'windows': self._windows,
        'files': [f['file_id'] for f in self._pending]})
    self._manifest['files'].extend(self._pending)
    write_manifest(self._dir, self._manifest)
    self.committed += 1
    self._writer, self._pending, self._windows = None, [], 0

  def abort(self) -> None:
    """Drops the open shard; its files will be converted again by a rerun."""
    if self._writer is not None:
      with contextlib.suppress(OSError, tf.errors.OpError):
        self._writer.close()
      os.remove(self._tmp)
      self._writer, self._pending, self._windows = None, [], 0


def write_manifest(output_dir: str, manifest: dict) -> None:
  files = manifest['files']
  manifest['updated'] = datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec='seconds')
  manifest['package_version'] = orca_gan.__version__
  manifest['totals'] = {
      'files': len(files),
      'windows': sum(f['windows'] for f in files),
      'audio_hours': sum(f['duration_s'] for f in files) / 3600,
      'skipped': len(manifest['skipped']),
  }
  fileio.write_json_atomic(os.path.join(output_dir, records.MANIFEST), manifest)


def make_tfrecords(inputs, output_dir: str, config: PrepareConfig | None = None,
                   log=workers.log_to_stderr,
                   progress_every_s: float = 5.0) -> RunSummary:
  """Converts audio files to spectrogram TFRecords in `output_dir`.

  Args:
    inputs: Files, folders (searched recursively) or glob patterns.
    output_dir: Where shards and manifest.json go; an earlier run's output is continued.
    config: How to convert (default: `PrepareConfig()`).
    log: Called with each progress or report line.
    progress_every_s: Minimum time between progress lines.

  Returns:
    What was done.

  Raises:
    UsageError: Before any work, when the arguments make the run impossible.
    audio_io.InputError: Before any work, when an input names nothing.
  """
  start = time.monotonic()
  config = config or PrepareConfig()
  with continuing(inputs, output_dir, config, log) as (manifest, todo, summary):
    _convert(todo, output_dir, manifest, summary, config, log, progress_every_s)
  summary.wall_s = time.monotonic() - start
  return summary


@contextlib.contextmanager
def continuing(inputs, output_dir: str, config: PrepareConfig, log,
               keep_parts: bool = False):
  """What every converter (this one, `beam_tfrecords`) does before converting.

  Resolves the inputs, checks and locks `output_dir`, loads the manifest to continue
  (or starts one) and removes what an interrupted run left (`remove_leftovers`), then
  yields `(manifest, todo, summary)`: the files not yet converted, in input order, and
  the run's summary so far. The folder stays locked until the block ends.

  Raises:
    UsageError: When the arguments make the run impossible (before any work).
    audio_io.InputError: When an input names nothing.
  """
  paths = audio_io.expand_inputs(inputs)
  if not paths:
    raise UsageError('--input: no audio files (.wav, .flac, .ogg, .mp3) found')
  check_output_dir(output_dir)
  with fileio.lock_folder(output_dir, '--output_dir', 'make_tfrecords'):
    manifest = load_or_start_manifest(output_dir, config)
    remove_leftovers(output_dir, manifest, log, keep_parts)
    done = {f['path'] for f in manifest['files']}
    todo = [p for p in paths if p not in done]
    summary = RunSummary(output_dir=output_dir, already_done=len(paths) - len(todo))
    if summary.already_done:
      log(f'{summary.already_done} of {len(paths)} files already converted in '
          f'{output_dir}; continuing with the other {len(todo)}')
    yield manifest, todo, summary


def _convert(todo, output_dir: str, manifest: dict, summary: RunSummary,
             config: PrepareConfig, log, progress_every_s: float) -> None:
  """Converts the files `todo` into `manifest`'s folder, once it is locked."""
  skipped = {s['path']: s for s in manifest['skipped']}
  progress = workers.Progress(len(todo), sum(workers.file_size(p) for p in todo), log,
                              progress_every_s)
  writer = _ShardWriter(output_dir, manifest, config)
  # Results are taken in input order; files submitted ahead keep every worker busy.
  converted_files = workers.ordered_map(
      lambda path: convert_file(path, config), todo, config.num_workers,
      ahead=config.num_workers * _LOOKAHEAD_PER_WORKER, errors=audio_io.AudioError)
  try:
    for path, converted in converted_files:
      if isinstance(converted, audio_io.AudioError):
        log(f'skipping {audio_io.display_path(path)}: {converted}')
        skipped[path] = {'path': path, 'reason': str(converted)}
        summary.skipped += 1
        progress.update(path, 0.0)
        continue
      skipped.pop(path, None)
      if converted.info.note:
        log(f'{audio_io.display_path(path)}: {converted.info.note}')
      writer.add(converted)
      summary.converted += 1
      summary.windows += len(converted.stored)
      summary.audio_s += converted.info.duration_s
      progress.update(path, converted.info.duration_s)
    writer.commit()
  except BaseException:
    converted_files.close()  # Cancels the files not yet started.
    writer.abort()
    raise
  finally:
    manifest['skipped'] = sorted(skipped.values(), key=lambda s: s['path'])
    write_manifest(output_dir, manifest)
  summary.shards = writer.committed
  if todo:
    progress.report()
