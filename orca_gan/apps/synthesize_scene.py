"""bin/synthesize_scene: write synthetic hydrophone scenes (the demo's default audio)."""

import dataclasses

from orca_gan.apps import common  # Sets TensorFlow's log level; import first.

from absl import flags

from orca_gan import synth

FLAGS = flags.FLAGS

common.define_flags(synth.CorpusConfig)
flags.DEFINE_alias('sample_rate', 'sample_rate_hz')  # Its earlier name, kept.


def main(argv):
  common.start(argv)
  config = common.config_from_flags(synth.CorpusConfig)
  paths = synth.make_demo_corpus(**dataclasses.asdict(config))
  print(f'synthesize_scene: {len(paths)} scenes of {config.duration_s:g} s in '
        f'{config.output_dir} (ground truth in events.tsv)')


def run():
  common.run(main, interrupted=lambda: 'interrupted; scenes already written are complete')


if __name__ == '__main__':
  run()
