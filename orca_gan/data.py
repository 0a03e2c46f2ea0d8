"""Reading spectrogram TFRecords back: single windows, and sequences for training.

All parameters (image size, storage dtype, compression, shards) come from the folder's
`manifest.json`.
"""

import tensorflow as tf

from orca_gan import records


def read_windows(tfrecord_dir: str, manifest: dict | None = None) -> tf.data.Dataset:
  """Every stored window, in file order.

  Returns:
    Dataset of dicts: 'image' float32 [H (freq), W (time)] in [-1, 1], 'file_id',
    'window_index' (int64) and 'start_s' (float32).
  """
  manifest = manifest or records.read_manifest(tfrecord_dir)
  parse = records.parse_fn(manifest)

  def decode(serialized):
    example = parse(serialized)
    example['image'] = records.dequantize(example['image'])
    return example

  return (tf.data.TFRecordDataset(records.shard_paths(tfrecord_dir, manifest),
                                  compression_type=records.compression_type(manifest))
          .map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True))


def max_sequence_length(manifest: dict) -> int:
  """The longest run of consecutive windows any file holds."""
  return max((f['windows'] for f in manifest['files']), default=0)


def sequence_span(seq_len: int, random_phase: bool = False) -> int:
  """Consecutive stored windows one sequence reads: `random_phase` cuts it from one
  more."""
  return seq_len + 1 if random_phase else seq_len


def sequence_dataset(tfrecord_dir: str, batch_size: int, seq_len: int, seed: int | None = None,
                     repeat: bool = True, shuffle_buffer: int = 256,
                     cycle_length: int = 16, manifest: dict | None = None,
                     dequantize: bool = True, random_phase: bool = False
                     ) -> tf.data.Dataset:
  """Batches of sequences of consecutive windows, shuffled across files.

  Each pass over a shard cuts its files into non-overlapping runs of `seq_len`
  consecutive windows starting at a random offset drawn afresh for every pass, so over
  epochs every start position is used, and puts the runs in a random order. Shards are
  read `cycle_length` at a time, one sequence from each in turn, so `cycle_length`
  consecutive sequences come from as many shards (a shard is about one tape of an
  archive: make_tfrecords closes it at 1024 windows, 51 minutes); a shuffle buffer then
  mixes neighbours further.

  With `random_phase`, every sequence starts a random number of spectrogram columns
  into its first window: it is cut from the image of `seq_len + 1` stored windows laid
  end to end, at an offset drawn per sequence in [0, W). make_tfrecords puts the
  columns of all windows of a file on one frame grid, so the cut is the image of the
  windows that start that much later in the recording (up to a storage step of
  rounding on a few pixels; tests/test_data.py checks it): W times as many
  distinct real windows from the same records (for small corpora), each still
  followed by the one after it.

  Memory: `cycle_length` shards are held whole (1024 windows of 16 KiB at 128x128
  uint8: 16 MiB each), plus `shuffle_buffer * seq_len` windows in the buffer. The
  buffer is also part of every training checkpoint (the input position is saved).

  The pipeline is deterministic for a given seed, and its iterator can be saved in a
  `tf.train.Checkpoint`, so training resumes exactly where it stopped.

  Args:
    tfrecord_dir: Folder written by make_tfrecords.
    batch_size: Sequences per batch (batches are always full).
    seq_len: Consecutive windows per sequence.
    seed: Makes shuffling and offsets reproducible.
    repeat: Loop forever (training) or make one pass.
    shuffle_buffer: Sequences in the shuffle buffer (1: none).
    cycle_length: Shards read at once.
    manifest: The folder's manifest, if already loaded.
    dequantize: Yield float32 images with a channel axis; False yields the stored
      values (uint8 or float16, [batch, seq_len, H, W]), a quarter of the bytes to move
      to an accelerator, for `to_model_input` on the device.
    random_phase: Start sequences anywhere, not only at stored window boundaries
      (needs files of `seq_len + 1` windows).

  Returns:
    Dataset of float32 [batch_size, seq_len, H, W, 1] in [-1, 1] (see `dequantize`).

  Raises:
    records.ManifestError: The folder is unusable, or no file is `seq_len` long.
    ValueError: batch_size, seq_len, shuffle_buffer or cycle_length below 1.
  """
  if min(batch_size, seq_len, shuffle_buffer, cycle_length) < 1:
    raise ValueError(f'batch_size, seq_len, shuffle_buffer and cycle_length must be at '
                     f'least 1, got {batch_size}, {seq_len}, {shuffle_buffer}, '
                     f'{cycle_length}')
  manifest = manifest or records.read_manifest(tfrecord_dir)
  longest = max_sequence_length(manifest)
  span = sequence_span(seq_len, random_phase)
  if span > longest:
    raise records.ManifestError(
        f'{tfrecord_dir}: seq_len {seq_len} is longer than the longest recording '
        f'({longest} windows)' + (' less the one more that random_phase reads'
                                  if random_phase else ''))
  parse = records.parse_fn(manifest)
  compression = records.compression_type(manifest)
  paths = records.shard_paths(tfrecord_dir, manifest)
  sizes = [s['windows'] for s in manifest['shards']]

  def shard_sequences(shard, offset_seed):
    # A shard is small (about windows_per_shard images in the storage dtype): load it
    # whole as one batch, then pick valid sequence starts with vector ops. Dataset ops
    # only (no get_single_element), so the iterator's position can be saved.
    path, num_windows = shard

    def sequences(parsed):
      images, file_id, index = (parsed['image'], parsed[records.FILE_ID],
                                parsed[records.WINDOW_INDEX])
      count = tf.maximum(tf.shape(images)[0] - span + 1, 0)  # Shards may be short.
      last = tf.range(count) + span - 1
      start_index = index[:count]
      same_run = tf.logical_and(
          tf.equal(tf.gather(file_id, last), file_id[:count]),
          tf.equal(tf.gather(index, last) - start_index, span - 1))
      phase = tf.math.floormod(offset_seed, seq_len)
      aligned = tf.equal(tf.math.floormod(start_index - phase, seq_len), 0)
      starts = tf.cast(tf.where(tf.logical_and(same_run, aligned))[:, 0], tf.int32)
      starts = tf.random.experimental.stateless_shuffle(
          starts, tf.stack([offset_seed, tf.constant(1, tf.int64)]))
      windows = tf.gather(images, starts[:, None] + tf.range(span)[None, :])
      if random_phase:
        windows = _cut_at_random_columns(
            windows, seq_len, tf.stack([offset_seed, tf.constant(2, tf.int64)]))
      return tf.data.Dataset.from_tensor_slices(windows)   # [n, seq_len, H, W]

    return (tf.data.TFRecordDataset(path, compression_type=compression)
            .map(parse).batch(num_windows).take(1).flat_map(sequences))

  shards = tf.data.Dataset.from_tensor_slices((paths, tf.constant(sizes, tf.int64)))
  shards = shards.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
  if repeat:
    shards = shards.repeat()
  # Each visit of a shard gets its own random offset.
  shards = tf.data.Dataset.zip(shards, tf.data.Dataset.random(seed=seed))
  sequences = shards.interleave(
      shard_sequences, cycle_length=min(cycle_length, len(paths)), block_length=1,
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=seed is not None)
  if shuffle_buffer > 1:
    sequences = sequences.shuffle(shuffle_buffer, seed=seed)
  batches = sequences.batch(batch_size, drop_remainder=True)
  if dequantize:
    batches = batches.map(to_model_input, num_parallel_calls=tf.data.AUTOTUNE)
  return batches.prefetch(tf.data.AUTOTUNE)


def _cut_at_random_columns(windows: tf.Tensor, seq_len: int, seed: tf.Tensor
                           ) -> tf.Tensor:
  """[n, seq_len + 1, H, W] consecutive windows -> [n, seq_len, H, W], each row's
  windows laid end to end in time and cut from a random column in [0, W)."""
  n, height, width = tf.shape(windows)[0], tf.shape(windows)[2], tf.shape(windows)[3]
  strip = tf.reshape(tf.transpose(windows, [0, 2, 1, 3]), [n, height, -1])
  first = tf.random.stateless_uniform([n], seed, maxval=width, dtype=tf.int32)
  columns = first[:, None] + tf.range(seq_len * width)[None, :]
  cut = tf.gather(strip, columns, axis=2, batch_dims=1)   # [n, H, seq_len * W]
  return tf.transpose(tf.reshape(cut, [n, height, seq_len, width]), [0, 2, 1, 3])


def to_model_input(stored) -> tf.Tensor:
  """Stored (or float) windows [..., H, W], a tensor or an array -> float32 model input
  [..., H, W, 1] in [-1, 1]."""
  return records.dequantize(tf.convert_to_tensor(stored))[..., None]
