"""bin/generate: sound and spectrogram plots from an exported generator."""


from orca_gan.apps import common  # Sets TensorFlow's log level; import first.

from absl import app
from absl import flags

FLAGS = flags.FLAGS

# Names and defaults match generate_lib.GenerateConfig, which validates them.
flags.DEFINE_string('model', '', 'Exported generator SavedModel folder, e.g. '
                    'demo/run/export/generator (required).')
flags.DEFINE_string('output_dir', '', 'Folder for sequences.png, sequence_NNN.wav '
                    'and, with --interpolate, interpolation.png, interpolation_NNN.wav. '
                    'Created once the model has loaded; files in it are replaced '
                    '(required).')
flags.DEFINE_integer('num_sequences', 4, 'Sequences to generate.')
flags.DEFINE_integer('seq_len', 4, 'Consecutive windows per sequence.')
flags.DEFINE_integer('seed', 0, 'Seed of the latents and of the Griffin-Lim phase.')
flags.DEFINE_integer('griffin_lim_iters', 32, 'Griffin-Lim iterations per sequence.')
flags.DEFINE_boolean('interpolate', False, 'Also write a latent walk (slerp) between '
                     'the first sequences of the two --interpolate_seeds.')
flags.DEFINE_string('interpolate_seeds', '0,1', 'A,B: the seeds the walk starts and '
                    'ends at (the first sequence of --seed A and of --seed B).')
flags.DEFINE_integer('interpolate_steps', 8, 'Points on the walk, both ends included.')


def main(argv):
  common.start(argv)
  from orca_gan import generate_lib
  try:
    config = common.config_from_flags(generate_lib.GenerateConfig)
    result = generate_lib.generate(config)
  except (generate_lib.GenerateError, OSError) as e:
    common.fail(str(e))
  except KeyboardInterrupt:
    common.fail('interrupted; files already in place are complete', status=130)
  line = (f'generate: wrote {config.num_sequences} sequences of {config.seq_len} '
          f'windows ({result.duration_s:g} s each) to {config.output_dir}')
  if config.interpolate:
    seed_a, seed_b = config.seed_pair()
    line += (f', and an interpolation of {config.interpolate_steps} points from '
             f'seed {seed_a} to seed {seed_b}')
  print(line, flush=True)


def run():
  app.run(main)


if __name__ == '__main__':
  run()
