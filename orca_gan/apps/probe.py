"""bin/probe: how well an exported discriminator's embedding sorts labelled audio,
next to spectrogram baselines and the same architecture untrained."""

from orca_gan.apps import common  # Sets TensorFlow's log level; import first.

from absl import app
from absl import flags

FLAGS = flags.FLAGS

flags.DEFINE_string('model', None, 'Exported discriminator SavedModel folder (e.g. '
                    '<logdir>/export/discriminator).')
flags.DEFINE_string('untrained_model', '', 'The same architecture untrained (bin/train '
                    '--steps 0); default: built here from --model\'s config and --seed.')
flags.DEFINE_multi_string('queries', [], 'Query audio files or globs (labels from the '
                          'file names, e.g. S_1.wav -> S1); repeatable.')
flags.DEFINE_multi_string('catalogue', [], 'Audio files or globs each query is ranked '
                          'against; repeatable.')
flags.DEFINE_string('labels_csv', '', 'A CSV with the header path,label (paths '
                    'relative to it): more labelled files for the k-NN, AUC and linear '
                    'scores, or labels for files named without one.')
flags.DEFINE_string('output_dir', 'probe', 'Where probe.json and probe.png go.')
flags.DEFINE_integer('k', 5, 'Neighbours voting in the leave-one-file-out k-NN.')
flags.DEFINE_integer('folds', 5, 'Cross-validation folds (by file) of the linear probe.')
flags.DEFINE_float('l2', 1e-2, 'L2 weight of the linear probe.')
flags.DEFINE_integer('top_units', 5, 'Most predictive embedding units listed per label.')
flags.DEFINE_integer('seed', 0, 'Seed of the untrained baseline and the folds.')
flags.DEFINE_enum('short_clip', 'tile', ['zeros', 'tile', 'noise_floor'],
                  'How a file shorter than one window fills the rest of it (as '
                  'bin/embed --short_clip).')


def main(argv):
  common.start(argv, '; give files with --queries, --catalogue or --labels_csv')
  from orca_gan import probe_lib
  try:
    config = probe_lib.ProbeConfig(
        model=FLAGS.model or '', untrained_model=FLAGS.untrained_model,
        queries=tuple(FLAGS.queries), catalogue=tuple(FLAGS.catalogue),
        labels_csv=FLAGS.labels_csv, output_dir=FLAGS.output_dir, k=FLAGS.k,
        folds=FLAGS.folds, l2=FLAGS.l2, top_units=FLAGS.top_units, seed=FLAGS.seed,
        short_clip=FLAGS.short_clip)
    report = probe_lib.run(config, log=lambda line: print(line, flush=True))
  except probe_lib.UsageError as e:
    common.fail(str(e))
  except OSError as e:
    common.fail(str(e), status=1)
  except KeyboardInterrupt:
    common.fail('interrupted', status=130)
  print(probe_lib.table(report['features']), flush=True)
  print(f'probe: {report["files"]} files, {len(report["labels"])} labels, '
        f'{report["queries"]} queries against {report["catalogue"]} -> '
        f'{FLAGS.output_dir}/probe.json, {FLAGS.output_dir}/probe.png', flush=True)


def run():
  app.run(main)


if __name__ == '__main__':
  run()
