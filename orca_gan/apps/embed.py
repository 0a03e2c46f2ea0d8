"""bin/embed: audio or TFRecords -> per-window discriminator embeddings (+ a query)."""

from orca_gan.apps import common  # Sets TensorFlow's log level; import first.

from absl import flags

FLAGS = flags.FLAGS


def _define_flags():
  from orca_gan import embed_lib
  common.define_flags(embed_lib.EmbedPaths)
  common.define_flags(embed_lib.EmbedConfig)


_define_flags()


def main(argv):
  common.start(argv, '; give files with --input')
  from orca_gan import embed_lib
  from orca_gan import export_lib
  paths = common.config_from_flags(embed_lib.EmbedPaths)
  config = common.config_from_flags(embed_lib.EmbedConfig)
  try:
    model = export_lib.load(paths.model, 'discriminator')
  except ValueError as e:
    raise embed_lib.UsageError(f'--model {e}') from e
  summary = embed_lib.embed_corpus(
      model, paths.output_dir, inputs=paths.input, tfrecord_dir=paths.tfrecords,
      query=paths.query, config=config, model_path=paths.model)
  print(summary.line(), flush=True)
  if summary.query:
    shown = summary.ranking[:5]
    print(f'query {summary.query} ({summary.query_windows} window(s)): top '
          f'{len(shown)} of {summary.windows} windows (all {len(summary.ranking)} in '
          f'{FLAGS.output_dir}/query_ranking.tsv):', flush=True)
    for r in shown:
      print(f'  {r.rank:3d}  {r.score:.4f}  {r.file}  {r.start_s} s  {r.label}',
            flush=True)


def run():
  common.run(main, interrupted=lambda: (
      f'interrupted; nothing was written to {FLAGS.output_dir}'))


if __name__ == '__main__':
  run()
