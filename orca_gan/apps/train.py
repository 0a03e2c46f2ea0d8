"""bin/train: train the recurrent spectrogram GAN on make_tfrecords output."""

import os

from orca_gan.apps import common  # Sets TensorFlow's log level; import first.

from absl import app
from absl import flags

FLAGS = flags.FLAGS

_HELP = {
    'tfrecords': 'Folder written by make_tfrecords.',
    'logdir': 'Checkpoints, TensorBoard summaries, config.json and samples.png go '
              'here; rerunning with the same --logdir resumes.',
    'export_dir': 'Where the SavedModels go at the end (default <logdir>/export).',
    'image_size': 'Expected image size; 0 takes it from the manifest.',
    'steps': 'Train until this step (counting earlier runs in --logdir); 0 exports '
             'the untrained models (a baseline for bin/evaluate).',
    'batch_size': 'Sequences per step (global, across devices).',
    'seq_len': 'Consecutive windows (window_s each, from the manifest) per sequence; '
               'one GAN update per window.',
    'z_dim': 'Latent size.',
    'fast_z': 'Latent dims redrawn every time step; the rest are held per sequence. '
              '-1: all.',
    'g_lstm_units': 'Generator LSTM units.',
    'd_lstm_units': 'Discriminator LSTM units (the embedding size).',
    'gf_dim': 'Generator width.',
    'df_dim': 'Discriminator width.',
    'minibatch_stddev': 'Give the discriminator the batch standard deviation of its '
                        'last features (against generator collapse; per replica under '
                        '--strategy mirrored; not with --loss wgan_gp).',
    'g_lr': 'Generator Adam learning rate.',
    'd_lr': 'Discriminator Adam learning rate.',
    'beta_1': 'Adam beta_1 for both.',
    'loss': 'nonsaturating, hinge or wgan_gp.',
    'd_steps': 'Discriminator updates per generator update.',
    'gp_weight': 'Gradient-penalty weight (wgan_gp).',
    'seed': 'Seed of latents, data order and initial weights.',
    'augment': 'Differentiable augmentation (DiffAugment): every window the '
               'discriminator sees, real or generated, is rolled in time by a random '
               'amount and made up to 5 dB louder or quieter (for small corpora).',
    'shuffle_buffer': 'Sequences in the shuffle buffer (memory: this x seq_len windows, '
                      'also saved in every checkpoint).',
    'interleave_cycle': 'Shards (about one tape each) read at once; consecutive '
                        'sequences come from this many shards (memory: 16 MiB each).',
    'jit_compile': 'XLA for the whole training step: auto (on GPU only), true or '
                   'false.',
    'strategy': 'default (one device) or mirrored (all local GPUs).',
    'mixed_precision': 'float16 compute (for GPUs); overflowing updates are skipped '
                       'and counted (skipped_updates).',
    'steps_per_loop': 'Training steps per call into TensorFlow (fewer Python round '
                      'trips; summaries and saves still happen on their steps).',
    'save_every': 'Steps between checkpoints.',
    'summary_every': 'Steps between scalar summaries and log lines.',
    'image_every': 'Steps between image summaries.',
    'profile_steps': 'START,STOP: profiler trace of these steps for TensorBoard.',
    'keep_checkpoints': 'Checkpoints kept.',
}


def _define_flags():
  from orca_gan import trainers
  common.define_flags(trainers.TrainConfig, _HELP)


_define_flags()


def main(argv):
  common.start(argv)
  from orca_gan import export_lib
  from orca_gan import fileio
  from orca_gan import train_lib
  from orca_gan import trainers
  try:
    config = common.config_from_flags(trainers.TrainConfig)
  except trainers.TrainingError as e:
    common.fail(str(e))  # A bad flag value: a usage error.
  try:
    with fileio.lock_folder(config.logdir, '--logdir', 'train'):
      trainer = trainers.GanTrainer(config)
      print(f'train: logs in {config.logdir}; watch with: tensorboard --logdir '
            f'{config.logdir}', flush=True)
      metrics = train_lib.train(trainer)
      paths = export_lib.export_models(
          trainer.generator, trainer.discriminator, trainer.model_config,
          trainer.transform, config.resolved_export_dir,
          extra_metadata={'step': trainer.current_step})
  except trainers.TrainingError as e:
    common.fail(str(e), status=1)
  except (ValueError, OSError) as e:
    common.fail(str(e), status=1)
  except KeyboardInterrupt:
    common.fail(f'interrupted; rerun the same command to resume from the last checkpoint '
                f'in {config.logdir}', status=130)
  summary = ', '.join(f'{k} {metrics[k]:.4g}' for k in ('d_loss', 'g_loss', 'd_real',
                                                       'd_fake') if k in metrics)
  samples = os.path.join(config.logdir, 'samples.png')
  print(f'train: step {trainer.current_step}' + (f', {summary}' if summary else '') +
        f'; exported {paths["generator"]} and {paths["discriminator"]}' +
        (f'; samples in {samples}' if os.path.exists(samples) else ''), flush=True)


def run():
  app.run(main)


if __name__ == '__main__':
  run()
