"""bin/synthesize_scene: write synthetic hydrophone scenes (the demo's default audio)."""

from orca_gan.apps import common  # Sets TensorFlow's log level; import first.

from absl import flags

FLAGS = flags.FLAGS

flags.DEFINE_string('output_dir', 'demo/audio', 'Folder for scene_NNN.wav and events.tsv.')
flags.DEFINE_integer('num_files', 3, 'Scenes to write.')
flags.DEFINE_float('duration_s', 60.0, 'Length of each scene in seconds.')
flags.DEFINE_integer('sample_rate', 44100, 'Sample rate in Hz (at least 16000).')
flags.DEFINE_integer('seed', 0, 'Seed; the same seed writes the same scenes.')


def main(argv):
  common.start(argv)
  from orca_gan import synth
  try:
    paths = synth.make_demo_corpus(FLAGS.output_dir, num_files=FLAGS.num_files,
                                   duration_s=FLAGS.duration_s,
                                   sample_rate_hz=FLAGS.sample_rate, seed=FLAGS.seed)
  except (ValueError, OSError) as e:
    common.fail(str(e))
  except KeyboardInterrupt:
    common.fail('interrupted; scenes already written are complete', status=130)
  print(f'synthesize_scene: {len(paths)} scenes of {FLAGS.duration_s:g} s in '
        f'{FLAGS.output_dir} (ground truth in events.tsv)')


def run():
  common.run(main)


if __name__ == '__main__':
  run()
