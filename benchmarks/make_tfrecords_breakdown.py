"""Where the time of converting one file goes, in one process and one thread: start-up,
the mp3 frame-chain check, decoding, spectrograms, convert_file and shard writing, each
run REPEATS times (the least wall and CPU time kept). Prints one line
`INPROCESS_RESULT {json}`; benchmarks/make_tfrecords_bench.py runs it as row d.

  .venv/bin/python benchmarks/make_tfrecords_breakdown.py FILE REPEATS
"""

import json
import os
import shutil
import sys
import tempfile
import time

def _cpu_s() -> float:
  import resource
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def _measure(fn, repeats: int):
  """Runs fn `repeats` times; returns (least wall s, least process CPU s).

  Other work on the machine only ever adds to both, so the minima are the best
  estimates of the undisturbed cost (taken separately: the run with the least wall time
  need not be the one with the least CPU time).
  """
  walls, cpus = [], []
  for _ in range(repeats):
    wall, cpu = time.monotonic(), _cpu_s()
    fn()
    walls.append(time.monotonic() - wall)
    cpus.append(_cpu_s() - cpu)
  return min(walls), min(cpus)


def main(path: str, repeats_text: str) -> None:
  """Times the parts of converting one file in one thread; prints one JSON line.

  Every part is run `repeats` times; the least wall and the least process CPU time are
  kept (other processes on a shared machine only ever add to both).
  """
  repeats = int(repeats_text)
  t0 = time.monotonic()
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  import tensorflow as tf
  t_tf = time.monotonic() - t0
  t = time.monotonic()
  import tensorflow_io as tfio
  from tensorflow_io.python.ops import core_ops
  from orca_gan import audio_io, prepare_tfrecords, records, spectral
  t_tfio = time.monotonic() - t
  res = {'import_tf_s': t_tf, 'import_tfio_orca_s': t_tfio, 'repeats': repeats}

  config = prepare_tfrecords.PrepareConfig()
  transform = config.transform
  resource, info = audio_io.open_audio(path)
  res['audio_s'] = info.duration_s
  res['sample_rate_hz'] = info.sample_rate_hz
  geometry = spectral.frame_geometry(transform, info.sample_rate_hz)
  count = spectral.num_windows(info.num_samples, info.sample_rate_hz, transform.window_s)
  firsts = list(range(0, count, config.chunk_windows))
  sizes = [min(config.chunk_windows, count - f) for f in firsts]
  bounds = [spectral.segment_bounds(f, n, geometry) for f, n in zip(firsts, sizes)]
  offsets = [spectral.frame_offsets(f, n, transform, geometry)
             for f, n in zip(firsts, sizes)]
  res.update(frame_length=geometry.frame_length, fft_length=geometry.fft_length,
             num_bins=geometry.num_bins, chunks=len(bounds))

  def record(name, fn):
    res[name + '_s'], res[name + '_cpu_s'] = _measure(fn, repeats)

  record('mp3_check', lambda: audio_io.check_mp3_stream(path))
  record('open_audio', lambda: audio_io.open_audio(path))

  def decode_raw():
    # The readable resource read in the same chunks, eagerly, int16 out: the decoder.
    resource, info = audio_io.open_audio(path)
    for lo, hi in bounds:
      lo, hi = max(lo, 0), min(hi, info.num_samples)
      core_ops.io_audio_readable_read(resource, lo, hi, dtype=info.dtype).numpy()

  segments: list = []

  def decode_pipeline():
    # As convert_file does it: tf.data pipeline, float mono, padded segments.
    resource, info = audio_io.open_audio(path)
    segments[:] = list(audio_io.segment_dataset(resource, info, bounds, config.channel))

  record('decode_raw', decode_raw)
  record('decode_pipeline', decode_pipeline)

  fn = prepare_tfrecords._stored_spectrogram_fn(transform, info.sample_rate_hz,
                                                config.storage_dtype)
  t = time.monotonic()
  fn(segments[0], offsets[0])[0].numpy()
  res['spectrogram_trace_s'] = time.monotonic() - t

  def spectrogram():
    for segment, offset in zip(segments, offsets):
      fn(segment, offset)[0].numpy()

  record('spectrogram', spectrogram)

  frame_length, fft_length = geometry.frame_length, geometry.fft_length

  @tf.function(input_signature=[tf.TensorSpec([None], tf.float32),
                                tf.TensorSpec([None, transform.image_size], tf.int32)])
  def gather_rfft(segment, offs):
    index = offs[:, :, None] + tf.range(frame_length, dtype=tf.int32)
    spectrum = tf.signal.rfft(tf.gather(segment, index), fft_length=[fft_length])
    return tf.reduce_sum(tf.math.real(spectrum[..., :geometry.num_bins]))

  gather_rfft(segments[0], offsets[0])

  def gather_rfft_all():
    for segment, offset in zip(segments, offsets):
      gather_rfft(segment, offset).numpy()

  record('spectrogram_gather_rfft', gather_rfft_all)

  converted: list = []
  record('convert_file',
         lambda: converted.__setitem__(slice(None),
                                       [prepare_tfrecords.convert_file(path, config)]))
  stored = converted[0].stored
  res['windows'] = int(len(stored))

  shard = os.path.join(tempfile.mkdtemp(prefix='make_tfrecords_bench_shard_'),
                       'shard.tfrecord.gz')

  def write_gzip():
    # Shard writing (the main thread of bin/make_tfrecords): serialize + GZIP.
    options = tf.io.TFRecordOptions(compression_type='GZIP')
    with tf.io.TFRecordWriter(shard, options) as writer:
      for index, image in enumerate(stored):
        writer.write(records.serialize_window(image.tobytes(), 0, index, index * 3.0))

  record('write_gzip', write_gzip)
  shutil.rmtree(os.path.dirname(shard), ignore_errors=True)

  # For comparison: tfio's whole-file decode_mp3 (what the baseline uses).
  record('decode_mp3_whole',
         lambda: tfio.audio.decode_mp3(tf.io.read_file(path)).numpy())
  print('INPROCESS_RESULT ' + json.dumps(res), flush=True)



if __name__ == '__main__':
  main(*sys.argv[1:])
