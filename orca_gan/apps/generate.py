"""bin/generate: sound and spectrogram plots from an exported generator."""

from orca_gan.apps import common  # Sets TensorFlow's log level; import first.

from absl import flags

FLAGS = flags.FLAGS


def _define_flags():
  from orca_gan import generate_lib
  common.define_flags(generate_lib.GenerateConfig)


_define_flags()


def main(argv):
  common.start(argv)
  from orca_gan import generate_lib
  config = common.config_from_flags(generate_lib.GenerateConfig)
  result = generate_lib.generate(config)
  line = (f'generate: wrote {config.num_sequences} sequences of {config.seq_len} '
          f'windows ({result.duration_s:g} s each) to {config.output_dir}')
  if config.interpolate:
    seed_a, seed_b = config.seed_pair()
    line += (f', and an interpolation of {config.interpolate_steps} points from '
             f'seed {seed_a} to seed {seed_b}')
  print(line, flush=True)


def run():
  common.run(main, interrupted=lambda: 'interrupted; files already in place are complete')


if __name__ == '__main__':
  run()
