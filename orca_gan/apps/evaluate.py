"""bin/evaluate: how close an exported generator's sound is to real recordings."""


from orca_gan.apps import common  # Sets TensorFlow's log level; import first.

from absl import app
from absl import flags

FLAGS = flags.FLAGS

_HELP = {
    'model': 'Exported generator SavedModel folder (e.g. <logdir>/export/generator).',
    'tfrecords': 'Folder written by make_tfrecords, normally the training records; '
                 'its transform must match the model\'s.',
    'output_dir': 'Where metrics.json and report.png go (created at the end).',
    'num_sequences': 'Generated sequences.',
    'seq_len': 'Consecutive windows per generated sequence; at most the longest '
               'recording in --tfrecords.',
    'seed': 'Seed of the latents, the real-vs-real halves, subsamples and '
            'permutations.',
    'top_fraction': 'Fraction of the loudest pixels of a window that give its energy '
                    'centroid.',
    'num_permutations': 'Permutations for the p-value of the centroid test.',
}


def _define_flags():
  from orca_gan import evaluate_lib
  common.define_flags(evaluate_lib.EvaluateConfig, _HELP)


_define_flags()


def main(argv):
  common.start(argv)
  from orca_gan import evaluate_lib
  try:
    config = common.config_from_flags(evaluate_lib.EvaluateConfig)
    result = evaluate_lib.evaluate(config, log=lambda line: print(line, flush=True))
  except evaluate_lib.EvaluationError as e:
    common.fail(str(e))
  except KeyboardInterrupt:
    common.fail('interrupted; nothing was written', status=130)
  print(evaluate_lib.summary_line(result, config.output_dir), flush=True)


def run():
  app.run(main)


if __name__ == '__main__':
  run()
