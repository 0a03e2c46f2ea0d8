"""bin/make_tfrecords: audio files -> sharded spectrogram TFRecords + manifest.json."""

import logging

from orca_gan.apps import common  # Sets TensorFlow's log level; import first.

from absl import flags

FLAGS = flags.FLAGS

flags.DEFINE_multi_string(
    'input', None, 'Audio file, folder (searched recursively) or glob; repeatable. '
    'wav, flac, ogg and mp3 at any sample rate, mono or stereo.')
flags.DEFINE_string('output_dir', 'tfrecords', 'Where shards and manifest.json go. A '
                    'rerun with the same flags continues an interrupted run.')


def _define_flags():
  from orca_gan import beam_tfrecords
  from orca_gan import prepare_tfrecords
  from orca_gan import spectral
  flags.DEFINE_enum('runner', None, beam_tfrecords.RUNNERS,
                    'Run the conversion as an Apache Beam pipeline on this runner (needs '
                    "pip install -e '.[beam]'); without it, this machine converts.")
  flags.DEFINE_list('pipeline_options', [],
                    'Beam pipeline options for --runner, comma-separated (e.g. '
                    '--direct_num_workers=4 or --project=...,--region=...).')
  common.define_flags(spectral.SpectrogramConfig)
  common.define_flags(prepare_tfrecords.PrepareConfig, exclude=('transform',))
  flags.DEFINE_alias('sample_rate', 'sample_rate_hz')  # Its earlier name, kept.


_define_flags()


def main(argv):
  common.start(argv, '; give files with --input')
  if not FLAGS.input:
    common.fail('--input is required (a file, folder or glob; repeatable)')
  from orca_gan import beam_tfrecords
  from orca_gan import prepare_tfrecords
  from orca_gan import spectral
  transform = common.config_from_flags(spectral.SpectrogramConfig)
  config = common.config_from_flags(prepare_tfrecords.PrepareConfig, transform=transform)
  if FLAGS.runner:
    if not FLAGS['verbosity'].present:
      # Beam's own and its workers' forwarded warnings (missing GCP clients, ignored
      # options) would bury the report; --verbosity 0 shows them.
      logging.getLogger('apache_beam').setLevel(logging.ERROR)
    options = beam_tfrecords.pipeline_options(FLAGS.runner, FLAGS.pipeline_options,
                                              config.num_workers)
    summary = beam_tfrecords.make_tfrecords(FLAGS.input, FLAGS.output_dir, config,
                                            options)
  elif FLAGS.pipeline_options:
    common.fail('--pipeline_options needs --runner')
  else:
    summary = prepare_tfrecords.make_tfrecords(FLAGS.input, FLAGS.output_dir, config)
  print(summary.line(), flush=True)
  if summary.converted + summary.already_done == 0:
    common.fail('no file was converted (see the reasons above)', status=1)


def run():
  common.run(main, interrupted=lambda: (
      f'interrupted; finished files are kept in {FLAGS.output_dir}, rerun the same '
      'command to convert the rest'))


if __name__ == '__main__':
  run()
