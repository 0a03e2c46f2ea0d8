"""bin/embed: audio or TFRecords -> per-window discriminator embeddings (+ a query)."""

from orca_gan.apps import common  # Sets TensorFlow's log level; import first.

from absl import flags

FLAGS = flags.FLAGS

flags.DEFINE_string('model', None, 'Exported discriminator SavedModel folder (e.g. '
                    '<logdir>/export/discriminator). Its metadata gives the transform.')
flags.DEFINE_multi_string(
    'input', None, 'Audio file, folder (searched recursively) or glob; repeatable. '
    'wav, flac, ogg and mp3 at any sample rate, mono or stereo.')
flags.DEFINE_string('tfrecords', None, 'A make_tfrecords folder made with the model\'s '
                    'transform; its windows are embedded too (before --input files).')
flags.DEFINE_string('output_dir', None, 'Where embeddings.npy, metadata.tsv, the '
                    'Projector files and query_ranking.tsv go (earlier ones replaced).')
flags.DEFINE_string('query', None, 'A clip to rank every corpus window against, by '
                    'cosine similarity of embeddings: padded if shorter than a window, '
                    'the mean over its windows if longer. Embedded like the corpus under '
                    '--context (with file context, as its own sequence from the zero '
                    'state).')


def _define_flags():
  from orca_gan import embed_lib
  common.define_flags(embed_lib.EmbedConfig)


_define_flags()


def main(argv):
  common.start(argv, '; give files with --input')
  for name in ('model', 'output_dir'):
    if not FLAGS[name].value:
      common.fail(f'--{name} is required')
  if not FLAGS.input and not FLAGS.tfrecords:
    common.fail('give audio with --input (a file, folder or glob; repeatable) and/or a '
                'make_tfrecords folder with --tfrecords')
  from orca_gan import embed_lib
  from orca_gan import export_lib
  from orca_gan import fileio
  try:
    config = common.config_from_flags(embed_lib.EmbedConfig)
    try:
      model = export_lib.load(FLAGS.model, 'discriminator')
    except ValueError as e:
      raise embed_lib.UsageError(f'--model {e}') from e
    summary = embed_lib.embed_corpus(
        model, FLAGS.output_dir, inputs=FLAGS.input or [], tfrecord_dir=FLAGS.tfrecords,
        query=FLAGS.query, config=config, model_path=FLAGS.model)
  except (embed_lib.NothingEmbeddedError, fileio.OutputError) as e:
    common.fail(str(e), status=1)
  except (ValueError, OSError) as e:
    common.fail(str(e))
  except KeyboardInterrupt:
    common.fail(f'interrupted; nothing was written to {FLAGS.output_dir}', status=130)
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
  common.run(main)


if __name__ == '__main__':
  run()
