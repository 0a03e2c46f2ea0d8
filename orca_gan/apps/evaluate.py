"""bin/evaluate: how close an exported generator's sound is to real recordings."""


from orca_gan.apps import common  # Sets TensorFlow's log level; import first.

from absl import flags

FLAGS = flags.FLAGS


def _define_flags():
  from orca_gan import evaluate_lib
  common.define_flags(evaluate_lib.EvaluateConfig)


_define_flags()


def main(argv):
  common.start(argv)
  from orca_gan import evaluate_lib
  config = common.config_from_flags(evaluate_lib.EvaluateConfig)
  result = evaluate_lib.evaluate(config, log=lambda line: print(line, flush=True))
  print(evaluate_lib.summary_line(result, config.output_dir), flush=True)


def run():
  common.run(main, interrupted=lambda: 'interrupted; nothing was written')


if __name__ == '__main__':
  run()
