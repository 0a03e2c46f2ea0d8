"""bin/make_tfrecords: audio files -> sharded spectrogram TFRecords + manifest.json."""

from orca_gan.apps import common  # Sets TensorFlow's log level; import first.

from absl import flags

FLAGS = flags.FLAGS

flags.DEFINE_multi_string(
    'input', None, 'Audio file, folder (searched recursively) or glob; repeatable. '
    'wav, flac, ogg and mp3 at any sample rate, mono or stereo.')
flags.DEFINE_string('output_dir', 'tfrecords', 'Where shards and manifest.json go. A '
                    'rerun with the same flags continues an interrupted run.')
flags.DEFINE_string('channel', 'mix', "'mix' (mean of channels) or a channel index.")
flags.DEFINE_float('window_s', 3.0, 'Window (one image) length in seconds.')
flags.DEFINE_integer('sample_rate', 16000, 'Analysis rate in Hz: images span 0 .. '
                     'sample_rate / 2. Input is never resampled.')
flags.DEFINE_integer('image_size', 128, 'Image height (frequency) and width (time).')
flags.DEFINE_float('db_min', -100.0, 'Band power in dB (re full-scale) mapped to -1.')
flags.DEFINE_float('db_max', 0.0, 'Band power in dB (re full-scale) mapped to +1.')
flags.DEFINE_boolean('pad_short', False, 'Keep recordings shorter than one window as '
                     'one zero-padded window instead of skipping them.')
flags.DEFINE_enum('storage_dtype', 'uint8', ['uint8', 'float16'],
                  'Stored value type (see tfrecords/README.md for the trade-off).')
flags.DEFINE_enum('compression', 'GZIP', ['GZIP', 'NONE'], 'Shard compression.')
flags.DEFINE_integer('windows_per_shard', 1024, 'Close a shard once it holds this many '
                     'windows (a file is never split across shards).')
flags.DEFINE_integer('num_workers', 2, 'Files converted at once (one per core).')


def main(argv):
  common.start(argv, '; give files with --input')
  if not FLAGS.input:
    common.fail('--input is required (a file, folder or glob; repeatable)')
  from orca_gan import fileio
  from orca_gan import prepare_tfrecords
  from orca_gan import spectral
  try:
    transform = spectral.SpectrogramConfig(
        sample_rate_hz=FLAGS.sample_rate, window_s=FLAGS.window_s,
        image_size=FLAGS.image_size, db_min=FLAGS.db_min, db_max=FLAGS.db_max)
    config = prepare_tfrecords.PrepareConfig(
        transform=transform, channel=FLAGS.channel, pad_short=FLAGS.pad_short,
        storage_dtype=FLAGS.storage_dtype, compression=FLAGS.compression,
        windows_per_shard=FLAGS.windows_per_shard, num_workers=FLAGS.num_workers)
    summary = prepare_tfrecords.make_tfrecords(FLAGS.input, FLAGS.output_dir, config)
  except fileio.OutputError as e:
    common.fail(str(e), status=1)
  except (ValueError, OSError) as e:
    common.fail(str(e))
  except KeyboardInterrupt:
    common.fail(f'interrupted; finished files are kept in {FLAGS.output_dir}, rerun the '
                'same command to convert the rest', status=130)
  print(summary.line(), flush=True)
  if summary.converted + summary.already_done == 0:
    common.fail('no file was converted (see the reasons above)', status=1)


def run():
  common.run(main)


if __name__ == '__main__':
  run()
