"""bin/train: train the recurrent spectrogram GAN on make_tfrecords output."""

import contextlib
import os

from orca_gan.apps import common  # Sets TensorFlow's log level; import first.

from absl import flags

FLAGS = flags.FLAGS


def _define_flags():
  from orca_gan import trainers
  common.define_flags(trainers.TrainConfig)


_define_flags()


def main(argv):
  common.start(argv)
  from orca_gan import configs
  from orca_gan import export_lib
  from orca_gan import fileio
  from orca_gan import train_lib
  from orca_gan import trainers
  try:
    config = common.config_from_flags(trainers.TrainConfig)
  except trainers.TrainingError as e:
    raise configs.UsageError(str(e)) from None  # A bad flag value.
  task = trainers.worker_task(config.strategy)
  # Only the chief writes to --logdir; the other workers write to folders of their own.
  chief = task is None or task.is_chief
  with (fileio.lock_folder(config.logdir, '--logdir', 'train') if chief
        else contextlib.nullcontext()):
    trainer = trainers.GanTrainer(config)
    try:
      if chief:
        print(f'train: logs in {config.logdir}; watch with: tensorboard --logdir '
              f'{config.logdir}', flush=True)
      else:
        print(f'train: {task.type} {task.index} of {task.num_workers} workers; the chief '
              f'writes to {config.logdir}', flush=True)
      metrics = train_lib.train(trainer)
      generator = trainer.generator_to_export()
      paths = export_lib.export_models(
          generator, trainer.discriminator, trainer.model_config,
          trainer.transform, (config.resolved_export_dir if chief
                              else os.path.join(trainer.write_dir, 'export')),
          extra_metadata={'step': trainer.current_step,
                          # 0: the raw generator weights; else the decay of their average.
                          'generator_ema': (0.0 if generator is trainer.generator
                                            else config.g_ema)},
          discriminator_stddev=trainer.discriminator_stddev())
    finally:
      trainer.close()
  summary = ', '.join(f'{k} {metrics[k]:.4g}' for k in ('d_loss', 'g_loss', 'd_real',
                                                       'd_fake') if k in metrics)
  samples = os.path.join(config.logdir, 'samples.png')
  done = f'train: step {trainer.current_step}' + (f', {summary}' if summary else '')
  if chief:
    done += (f'; exported {paths["generator"]} and {paths["discriminator"]}' +
             (f'; samples in {samples}' if os.path.exists(samples) else ''))
  print(done, flush=True)


def run():
  common.run(main, interrupted=lambda: (
      'interrupted; rerun the same command to resume from the last checkpoint in '
      f'{FLAGS.logdir}'))


if __name__ == '__main__':
  run()
