"""bin/probe: how well an exported discriminator's embedding sorts labelled audio,
next to spectrogram baselines and the same architecture untrained."""

from orca_gan.apps import common  # Sets TensorFlow's log level; import first.

from absl import flags

FLAGS = flags.FLAGS


def _define_flags():
  from orca_gan import probe_lib
  common.define_flags(probe_lib.ProbeConfig)


_define_flags()


def main(argv):
  common.start(argv, '; give files with --queries, --catalogue or --labels_csv')
  from orca_gan import probe_lib
  config = common.config_from_flags(probe_lib.ProbeConfig)
  report = probe_lib.run(config, log=lambda line: print(line, flush=True))
  print(probe_lib.table(report['features']), flush=True)
  print(f'probe: {report["files"]} files, {len(report["labels"])} labels, '
        f'{report["queries"]} queries against {report["catalogue"]} -> '
        f'{FLAGS.output_dir}/probe.json, {FLAGS.output_dir}/probe.png', flush=True)


def run():
  common.run(main)


if __name__ == '__main__':
  run()
