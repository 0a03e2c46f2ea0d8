"""The TFRecord format: one tf.train.Example per window, plus `manifest.json`.

See tfrecords/README.md for the format as a reader outside this package sees it.
Everything a reader needs (transform, storage dtype, compression, shards, files) comes from
the manifest; nothing is taken from defaults in code.
"""

import contextlib
import json
import os

import tensorflow as tf

from orca_gan import fileio
from orca_gan import spectral

FORMAT = 'orca_gan.tfrecords/1'
MANIFEST = 'manifest.json'
STORAGE_DTYPES = ('uint8', 'float16')
COMPRESSIONS = ('GZIP', 'NONE')

# Feature keys of each Example.
SPECTROGRAM = 'spectrogram'  # bytes: [H (freq, low->high), W (time)] row-major.
FILE_ID = 'file_id'          # int64: index into manifest['files'].
WINDOW_INDEX = 'window_index'  # int64: window number within its file.
START_S = 'start_s'          # float: window start in seconds from the file's start.


class ManifestError(ValueError):
  """A TFRecord folder or its manifest cannot be used; the message says why."""


class CorruptShardError(OSError):
  """A shard is corrupt, truncated, or holds another number of windows than listed;
  the message names it."""


def quantize(images: tf.Tensor, dtype: str) -> tf.Tensor:
  """Images in [-1, 1] -> stored values (uint8 steps of 2/255, or float16)."""
  if dtype == 'uint8':
    q = tf.round((tf.clip_by_value(images, -1.0, 1.0) + 1.0) * 127.5)
    return tf.cast(q, tf.uint8)
  if dtype == 'float16':
    return tf.cast(images, tf.float16)
  raise ValueError(f'storage dtype must be one of {STORAGE_DTYPES}, got {dtype!r}')


def dequantize(stored: tf.Tensor) -> tf.Tensor:
  """Stored values -> float32 images in [-1, 1]."""
  if stored.dtype == tf.uint8:
    return tf.cast(stored, tf.float32) / 127.5 - 1.0
  return tf.cast(stored, tf.float32)


def serialize_window(image_bytes: bytes, file_id: int, window_index: int,
                     start_s: float) -> bytes:
  feature = {
      SPECTROGRAM: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_bytes])),
      FILE_ID: tf.train.Feature(int64_list=tf.train.Int64List(value=[file_id])),
      WINDOW_INDEX: tf.train.Feature(int64_list=tf.train.Int64List(value=[window_index])),
      START_S: tf.train.Feature(float_list=tf.train.FloatList(value=[start_s])),
  }
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def parse_fn(manifest: dict):
  """Returns a function: serialized Example -> dict of stored image [H, W] and indices."""
  size = manifest['transform']['image_size']
  dtype = tf.as_dtype(manifest['storage']['dtype'])
  spec = {
      SPECTROGRAM: tf.io.FixedLenFeature([], tf.string),
      FILE_ID: tf.io.FixedLenFeature([], tf.int64),
      WINDOW_INDEX: tf.io.FixedLenFeature([], tf.int64),
      START_S: tf.io.FixedLenFeature([], tf.float32),
  }

  def parse(serialized):
    example = tf.io.parse_single_example(serialized, spec)
    image = tf.reshape(tf.io.decode_raw(example[SPECTROGRAM], dtype), [size, size])
    return {'image': image, FILE_ID: example[FILE_ID],
            WINDOW_INDEX: example[WINDOW_INDEX], START_S: example[START_S]}

  return parse


def compression_type(manifest: dict) -> str:
  return '' if manifest['storage']['compression'] == 'NONE' else 'GZIP'


def shard_paths(tfrecord_dir: str, manifest: dict) -> list:
  return [os.path.join(tfrecord_dir, s['path']) for s in manifest['shards']]


def read_manifest(tfrecord_dir: str) -> dict:
  """Loads and checks `manifest.json` of a TFRecord folder.

  Raises:
    ManifestError: The folder, the manifest or a shard it lists is missing or unusable.
  """
  if not os.path.isdir(tfrecord_dir):
    raise ManifestError(f'{tfrecord_dir}: no such TFRecord folder')
  path = os.path.join(tfrecord_dir, MANIFEST)
  if not os.path.exists(path):
    raise ManifestError(f'{path}: no manifest (run make_tfrecords first)')
  try:
    with open(path) as f:
      manifest = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise ManifestError(f'{path}: unreadable manifest ({e})') from e
  if not isinstance(manifest, dict) or manifest.get('format') != FORMAT:
    raise ManifestError(f'{path}: not an {FORMAT} manifest')
  try:
    spectral.SpectrogramConfig.from_dict(manifest['transform'])  # Validates.
    shards = shard_paths(tfrecord_dir, manifest)
    missing = [key for key in ('files', 'skipped', 'storage') if key not in manifest]
    if missing:
      raise KeyError(', '.join(missing))
  except (KeyError, TypeError, ValueError) as e:
    raise ManifestError(f'{path}: invalid manifest ({type(e).__name__}: {e})') from e
  for shard in shards:
    if not os.path.exists(shard):
      raise ManifestError(f'{path}: lists shard {shard}, which is missing')
  return manifest


def manifest_config(manifest: dict) -> spectral.SpectrogramConfig:
  return spectral.SpectrogramConfig.from_dict(manifest['transform'])


def check_shards(tfrecord_dir: str, manifest: dict) -> None:
  """Reads every listed shard to its end, one at a time.

  Raises:
    CorruptShardError: Naming the first shard that is corrupt, truncated, or holds
      another number of windows than the manifest lists.
  """
  for shard in manifest['shards']:
    path = os.path.join(tfrecord_dir, shard['path'])
    count = 0
    try:
      for batch in tf.data.TFRecordDataset(path, compression_type(manifest)).batch(1024):
        count += int(batch.shape[0])
    except tf.errors.OpError as e:
      raise CorruptShardError(
          f'{path}: corrupt or truncated shard ({fileio.os_reason(e)}, after {count} of '
          f'its {shard["windows"]} windows); make the records again') from None
    if count != shard['windows']:
      raise CorruptShardError(f'{path}: holds {count} windows, the manifest lists '
                              f'{shard["windows"]}; make the records again')


@contextlib.contextmanager
def naming_bad_shards(tfrecord_dir: str, manifest: dict | None = None):
  """Turns a data-loss error from reading the records into a CorruptShardError that
  names the shard (found by `check_shards`, which runs only then)."""
  try:
    yield
  except tf.errors.DataLossError as e:
    check_shards(tfrecord_dir, manifest or read_manifest(tfrecord_dir))
    raise CorruptShardError(f'{tfrecord_dir}: unreadable records ({fileio.os_reason(e)})') from None

