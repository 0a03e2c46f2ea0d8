"""Training: learning on known structure, resume, faults, profiling, distribution."""

import dataclasses
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from orca_gan import data
from orca_gan import fileio
from orca_gan import models
from orca_gan import prepare_tfrecords
from orca_gan import records
from orca_gan import spectral
from orca_gan import train_lib
from orca_gan import trainers
from tests.helpers import REPO, damaged_records, limit_file_size, run_app, write_wav

# Every test here builds and traces a training step, or runs bin/train.
pytestmark = pytest.mark.slow

SAMPLE_RATE_HZ = 16000
IMAGE_SIZE = 32
BAND_ROWS = (8, 12)  # Rows 8..11 of 32 (1 - 1.5 kHz at 125 Hz per row).


def banded_recording(duration_s, seed):
  """Noise plus tones that always sit in BAND_ROWS: the structure to be learned."""
  rng = np.random.default_rng(seed)
  n = int(duration_s * SAMPLE_RATE_HZ)
  t = np.arange(n) / SAMPLE_RATE_HZ
  audio = rng.normal(0, 0.003, n)
  band_hz = SAMPLE_RATE_HZ / 2 / IMAGE_SIZE
  for _ in range(6):
    freq = rng.uniform(BAND_ROWS[0] * band_hz, BAND_ROWS[1] * band_hz)
    audio += 0.1 * np.sin(2 * np.pi * freq * t + rng.uniform(0, 6))
  return audio / np.abs(audio).max() * 0.8


@pytest.fixture(scope='module')
def record_dir(tmp_path_factory):
  folder = tmp_path_factory.mktemp('train')
  paths = [write_wav(folder / f'band{i}.wav', banded_recording(30, i), SAMPLE_RATE_HZ)
           for i in range(3)]
  out = str(folder / 'records')
  transform = spectral.SpectrogramConfig(image_size=IMAGE_SIZE)
  prepare_tfrecords.make_tfrecords(
      paths, out, prepare_tfrecords.PrepareConfig(transform=transform),
      log=lambda line: None)
  return out


# bin/train's model flags for a model small enough to train a step in a second.
_TINY_MODEL_FLAGS = ('--z_dim', '8', '--g_lstm_units', '16', '--d_lstm_units', '16',
                     '--gf_dim', '16', '--df_dim', '8')


def tiny_config(record_dir, logdir, **overrides):
  fields = dict(tfrecords=record_dir, logdir=str(logdir), steps=2, batch_size=4,
                seq_len=3, z_dim=8, g_lstm_units=16, d_lstm_units=16, gf_dim=32,
                df_dim=8, save_every=1, summary_every=1, image_every=1)
  fields.update(overrides)
  return trainers.TrainConfig(**fields)


def quiet_trainer(config):
  return trainers.GanTrainer(config, log=lambda line: None)


def weights(trainer):
  """Every variable of both models and both optimizers, by position."""
  objects = (trainer.generator.weights + trainer.discriminator.weights +
             trainer.g_optimizer.variables + trainer.d_optimizer.variables +
             ([] if trainer.generator_ema is None else trainer.generator_ema.weights))
  return [(v.path, v.numpy()) for v in objects]


def assert_same_weights(a, b, atol=0.0):
  assert len(a) == len(b)
  for (path, x), (_, y) in zip(a, b):
    np.testing.assert_allclose(x, y, rtol=0, atol=atol, err_msg=path)


def mean_row_profile(images):
  """[..., H, W, 1] -> mean value per frequency row, [H]."""
  images = np.asarray(images)
  return images.reshape(-1, IMAGE_SIZE, IMAGE_SIZE).mean(axis=(0, 2))


def test_generator_learns_where_the_energy_is(record_dir, tmp_path):
  config = tiny_config(record_dir, tmp_path, steps=120, batch_size=8, seq_len=2,
                       g_lr=1e-3, d_lr=5e-4, save_every=1000, summary_every=1000,
                       image_every=1000)
  trainer = quiet_trainer(config)
  real = np.concatenate([b for b in data.sequence_dataset(
      record_dir, 8, 2, seed=0, repeat=False).as_numpy_iterator()])
  real_profile = mean_row_profile(real)
  assert real_profile[slice(*BAND_ROWS)].mean() > real_profile.mean() + 0.3

  z = models.sample_latents(tf.constant([5, 5]), 32, 2, trainer.model_config)

  def generated_profile():
    images, _ = models.generate_sequence(trainer.generator, z)
    return mean_row_profile(images)

  untrained = np.corrcoef(generated_profile(), real_profile)[0, 1]
  train_lib.train(trainer)
  trained = np.corrcoef(generated_profile(), real_profile)[0, 1]
  assert trained > 0.8 and trained > untrained + 0.4, (untrained, trained)


def test_states_reset_at_every_batch(record_dir, tmp_path):
  trainer = quiet_trainer(tiny_config(record_dir, tmp_path))
  trainer.g_optimizer.learning_rate.assign(0.0)
  trainer.d_optimizer.learning_rate.assign(0.0)
  stored = (next(trainer.iterator),)
  noise = trainer._noise()
  step = tf.function(trainer._replica_step_fn)
  first = step(stored, noise)
  second = step(stored, noise)   # Nothing carried over from the first call.
  for name in ('d_loss', 'g_loss', 'd_real', 'd_fake'):
    assert float(first[name]) == pytest.approx(float(second[name]), rel=1e-6), name


def test_learned_start_state_is_trained_and_starts_every_sequence(record_dir, tmp_path):
  trainer = quiet_trainer(tiny_config(record_dir, tmp_path, steps=1, seq_len=2,
                                      g_start_state='latent'))
  start = trainer.generator.start
  before = [w.numpy() for w in start.weights]
  stored = (next(trainer.iterator),)
  noise = trainer._noise()
  step = tf.function(trainer._replica_step_fn)
  trainer.g_optimizer.learning_rate.assign(0.0)
  trainer.d_optimizer.learning_rate.assign(0.0)
  first = step(stored, noise)
  # A start state learned from the first latents, not the zero state: at one time
  # step, the generator's loss is the one its start state gives.
  for w in start.weights:
    w.assign(tf.zeros_like(w))
  from_zeros = step(stored, noise)
  assert abs(float(first['g_loss']) - float(from_zeros['g_loss'])) > 1e-4
  for w, value in zip(start.weights, before):
    w.assign(value)
  # The first step's update reaches it: it is on the generator's tape.
  trainer.g_optimizer.learning_rate.assign(1e-3)
  step(stored, noise)
  for w, value in zip(start.weights, before):
    assert np.abs(w.numpy() - value).max() > 1e-5, w.path


def straight_and_resumed(record_dir, tmp_path, config, stop_at):
  """Trainers of a run of config['steps'] steps in one go, and of one stopped after
  `stop_at` steps and resumed in a new trainer."""
  straight = quiet_trainer(tiny_config(record_dir, tmp_path / 'straight', **config))
  train_lib.train(straight)
  stopped = tmp_path / 'stopped'
  train_lib.train(quiet_trainer(tiny_config(record_dir, stopped, **dict(config,
                                                                        steps=stop_at))))
  resumed = quiet_trainer(tiny_config(record_dir, stopped, **config))
  train_lib.train(resumed)
  return straight, resumed


def resumed_after_three_steps_with(record_dir, logdir, config, **other_flags):
  """A trainer of `config` restored from a run of three steps made with `other_flags`
  in place of some of it, and the lines it logged."""
  train_lib.train(quiet_trainer(tiny_config(record_dir, logdir, **dict(
      config, steps=3, **other_flags))))
  lines: list = []
  trainer = trainers.GanTrainer(tiny_config(record_dir, logdir, **config), log=lines.append)
  trainer.restore()
  return trainer, lines


def test_resume_is_exact_after_a_crash_and_after_an_interrupt(record_dir, tmp_path,
                                                              monkeypatch):
  """Weights, optimizer slots, latents and input position all come back: a resumed
  run ends bit-equal to one that never stopped."""
  config = dict(steps=5, save_every=2, summary_every=5, image_every=5)
  # A crash after the checkpoint of step 4 (nothing after it saved): a new process.
  straight, resumed = straight_and_resumed(record_dir, tmp_path, config, stop_at=4)
  expected = weights(straight)
  assert_same_weights(weights(resumed), expected)

  # The same, with the records folder moved in between: the run keeps the shards'
  # names relative to it, and its input position.
  moved_run = tmp_path / 'moved'
  before = shutil.copytree(record_dir, tmp_path / 'records_before')
  train_lib.train(quiet_trainer(tiny_config(str(before), moved_run, **dict(config,
                                                                           steps=4))))
  after = shutil.move(before, tmp_path / 'records_after')
  resumed = quiet_trainer(tiny_config(str(after), moved_run, **config))
  train_lib.train(resumed)
  assert_same_weights(weights(resumed), expected)

  # SIGINT arriving in the middle of step 3: the step finishes, is saved, and the run
  # stops; the rerun goes on from there.
  interrupted = tmp_path / 'interrupted'
  trainer = quiet_trainer(tiny_config(record_dir, interrupted, **config))
  real_run = trainer.run
  calls = []

  def run_and_signal(num_steps):
    calls.append(num_steps)
    if len(calls) == 3:
      os.kill(os.getpid(), signal.SIGINT)
    real_run(num_steps)

  monkeypatch.setattr(trainer, 'run', run_and_signal)
  with pytest.raises(KeyboardInterrupt):
    train_lib.train(trainer)
  assert trainer.current_step == 3 and trainer.manager.latest_checkpoint.endswith('-3')
  resumed = quiet_trainer(tiny_config(record_dir, interrupted, **config))
  train_lib.train(resumed)
  assert_same_weights(weights(resumed), expected)


def test_random_phase_feeds_other_windows_and_resumes_exactly(record_dir, tmp_path):
  config = dict(steps=4, save_every=2, summary_every=4, image_every=4, random_phase=True)
  straight, resumed = straight_and_resumed(record_dir, tmp_path, config, stop_at=2)
  assert_same_weights(weights(resumed), weights(straight))
  aligned = quiet_trainer(tiny_config(record_dir, tmp_path / 'aligned',
                                      **dict(config, random_phase=False)))
  train_lib.train(aligned)
  assert any(np.abs(a[1] - b[1]).max() > 1e-4
             for a, b in zip(weights(aligned), weights(straight)))


def test_steps_per_loop_computes_the_same_steps(record_dir, tmp_path):
  one = quiet_trainer(tiny_config(record_dir, tmp_path / 'one', steps=5, save_every=10,
                                  summary_every=4, image_every=10))
  train_lib.train(one)
  many = quiet_trainer(tiny_config(record_dir, tmp_path / 'many', steps=5,
                                   save_every=10, summary_every=4, image_every=10,
                                   steps_per_loop=3))
  calls = []
  real_run = many.run
  many.run = lambda n: (calls.append(n), real_run(n))
  train_lib.train(many)
  assert calls == [3, 1, 1]   # Never past a summary (step 4) or the end (step 5).
  assert_same_weights(weights(many), weights(one))


def test_xla_compiled_step_matches_the_uncompiled_one(record_dir, tmp_path):
  """With the generator's noise inputs, whose hash XLA must compute exactly, its
  learned start state, chosen at the first step of the loop, and the discriminator's
  grouped batch statistic under R1, with LeCam's averages of its scores."""
  results = {}
  for jit in ('false', 'true'):
    trainer = quiet_trainer(tiny_config(record_dir, tmp_path / jit, steps=3,
                                        jit_compile=jit, summary_every=3, g_noise=True,
                                        g_start_state='latent', minibatch_stddev=True,
                                        minibatch_stddev_group=2, r1_weight=1.0,
                                        lecam_weight=0.5, save_every=10,
                                        image_every=10))
    assert trainer.jit == (jit == 'true')
    results[jit] = (train_lib.train(trainer), weights(trainer))
  for name in ('d_loss', 'g_loss', 'd_real', 'd_fake', 'd_grad_norm', 'g_grad_norm',
               'lecam_penalty'):
    assert results['true'][0][name] == pytest.approx(results['false'][0][name],
                                                     rel=1e-4), name
  assert_same_weights(results['true'][1], results['false'][1], atol=1e-5)


def test_extra_discriminator_updates_take_fresh_data_and_leave_g_statistics(
    record_dir, tmp_path):
  """--d_steps 3: each D update reads its own real batch; the generator's batch-norm
  averages move once per time step, so with D frozen G learns exactly as with 1."""
  results = {}
  for d_steps in (1, 3):
    trainer = quiet_trainer(tiny_config(record_dir, tmp_path / str(d_steps), steps=1,
                                        d_steps=d_steps, save_every=10))
    trainer.d_optimizer.learning_rate.assign(0.0)
    train_lib.train(trainer)
    results[d_steps] = trainer
  assert_same_weights([(v.path, v.numpy()) for v in results[3].generator.weights],
                      [(v.path, v.numpy()) for v in results[1].generator.weights])
  # Three batches were read for the one step: the next is the fresh pipeline's fourth.
  config = results[3].config
  fresh = iter(data.sequence_dataset(
      record_dir, config.batch_size, config.seq_len, seed=config.seed,
      shuffle_buffer=config.shuffle_buffer, cycle_length=config.interleave_cycle,
      dequantize=False))
  for _ in range(3):
    next(fresh)
  np.testing.assert_array_equal(next(results[3].iterator).numpy(), next(fresh).numpy())


def test_logged_discriminator_metrics_are_the_means_of_its_updates(record_dir, tmp_path,
                                                                    monkeypatch):
  """--d_steps 2: the discriminator's metrics of a time step average both updates
  (ADA's r_t and LeCam's averages read them), not the last one alone."""
  trainer = quiet_trainer(tiny_config(record_dir, tmp_path, steps=2, d_steps=2,
                                      save_every=10, summary_every=2))
  real_update = trainer._d_update
  calls = []

  def update(*args):
    """The real update, reporting loss 1 and norm 10 for the first update of a time
    step, 3 and 30 for the second."""
    metrics, _, applied, *states = real_update(*args)
    calls.append(args)
    first = len(calls) % 2
    return ({**metrics, 'd_loss': tf.constant(1.0 if first else 3.0)},
            tf.constant(10.0 if first else 30.0), applied, *states)

  monkeypatch.setattr(trainer, '_d_update', update)
  metrics = train_lib.train(trainer)
  assert calls and len(calls) % 2 == 0
  assert metrics['d_loss'] == pytest.approx(2.0)
  assert metrics['d_grad_norm'] == pytest.approx(20.0)


def test_mixed_precision_overflow_is_skipped_counted_and_survived(record_dir, tmp_path):
  config = tiny_config(record_dir, tmp_path, steps=2, mixed_precision=True,
                       save_every=10, summary_every=2)
  trainer = quiet_trainer(config)
  assert keras.mixed_precision.global_policy().name == 'float32'  # Not left behind.
  trainer.d_optimizer.dynamic_scale.assign(2.0**60)  # Every float16 gradient overflows.
  trainer.g_optimizer.dynamic_scale.assign(2.0**60)
  before = [v.numpy() for v in trainer.discriminator.trainable_weights]
  metrics = train_lib.train(trainer)
  updates = config.steps * config.seq_len     # Per optimizer.
  assert trainer.current_step == 2
  assert metrics['skipped_updates'] == 2 * updates
  assert metrics['d_loss_scale'] == metrics['g_loss_scale'] == 2.0**(60 - updates)
  assert np.isfinite(metrics['d_loss']) and np.isfinite(metrics['g_loss'])
  for v, value in zip(trainer.discriminator.trainable_weights, before, strict=True):
    np.testing.assert_array_equal(v.numpy(), value)   # Skipped: not applied.
  events = glob.glob(str(tmp_path / 'train' / 'events.out.tfevents.*'))
  tags = {v.tag for event in tf.compat.v1.train.summary_iterator(events[0])
          for v in event.summary.value}
  assert {'skipped_updates', 'd_loss_scale', 'g_loss_scale'} <= tags


@pytest.mark.parametrize('damage, resumed_at', [
    ('truncated data', 1), ('empty index', 1), ('garbage checkpoint list', 2)])
def test_damaged_checkpoints_fall_back_to_the_newest_readable(record_dir, tmp_path,
                                                             damage, resumed_at):
  """Never back to step 0 while a readable checkpoint is on disk."""
  train_lib.train(quiet_trainer(tiny_config(record_dir, tmp_path, steps=2)))
  checkpoints = tmp_path / 'checkpoints'
  if damage == 'truncated data':
    os.truncate(glob.glob(str(checkpoints / 'ckpt-2.data-*'))[0], 100)
  elif damage == 'empty index':
    (checkpoints / 'ckpt-2.index').write_bytes(b'')
  else:  # The manager's list of checkpoints.
    (checkpoints / 'checkpoint').write_text('model_checkpoint_path: {{{\n')
  lines = []
  trainer = trainers.GanTrainer(tiny_config(record_dir, tmp_path, steps=3),
                                log=lines.append)
  trainer.restore()
  assert trainer.current_step == resumed_at
  if resumed_at == 1:
    assert any('ckpt-2 is unreadable' in line for line in lines), lines


def test_checkpoint_without_input_position_still_resumes(record_dir, tmp_path):
  """Runs saved before the input position was checkpointed keep their weights."""
  trainer = quiet_trainer(tiny_config(record_dir, tmp_path, steps=1))
  trainer.run(1)
  old_format = tf.train.Checkpoint(
      step=trainer.step, seed=trainer.seed, generator=trainer.generator,
      discriminator=trainer.discriminator, g_optimizer=trainer.g_optimizer,
      d_optimizer=trainer.d_optimizer)
  tf.train.CheckpointManager(old_format, str(tmp_path / 'checkpoints'),
                             max_to_keep=3).save(checkpoint_number=1)
  lines = []
  resumed = trainers.GanTrainer(tiny_config(record_dir, tmp_path, steps=2),
                                log=lines.append)
  resumed.restore()
  assert resumed.current_step == 1
  assert any('holds no input position' in line for line in lines), lines
  assert_same_weights(weights(resumed), weights(trainer))


@pytest.mark.parametrize('steps_per_loop, summary_every', [(1, 1), (5, 5)])
def test_nan_loss_stops_naming_the_step_and_keeps_last_good(record_dir, tmp_path,
                                                            steps_per_loop,
                                                            summary_every):
  config = tiny_config(record_dir, tmp_path, steps=5, steps_per_loop=steps_per_loop,
                       summary_every=summary_every, save_every=2)
  trainer = quiet_trainer(config)
  real_loss = trainer.generator_loss
  # NaN from the third training step on (the loss is traced once; `step` is read live).
  trainer.generator_loss = lambda logits: tf.where(
      trainer.step >= 2, tf.constant(np.nan), real_loss(logits))
  # Found at the next summary or save, whichever comes first; the step is exact.
  with pytest.raises(trainers.TrainingError, match=r'step 3: g_loss is nan.*ckpt-2'):
    train_lib.train(trainer)
  assert not glob.glob(str(tmp_path / 'checkpoints' / 'ckpt-[3-9].index'))


def test_profiler_trace_and_summaries_are_written(record_dir, tmp_path):
  train_lib.train(quiet_trainer(tiny_config(record_dir, tmp_path, steps=3,
                                            profile_steps='1,2')))
  assert glob.glob(str(tmp_path / 'train' / 'plugins' / 'profile' / '*' / '*.xplane.pb'))
  events = glob.glob(str(tmp_path / 'train' / 'events.out.tfevents.*'))
  tags = set()
  for event in tf.compat.v1.train.summary_iterator(events[0]):
    tags.update(v.tag for v in event.summary.value)
  assert {'d_loss', 'g_loss', 'd_real', 'd_fake', 'd_grad_norm', 'g_grad_norm',
          'skipped_updates', 'steps_per_s', 'examples_per_s',
          'generated_top_real_bottom'} <= tags
  png = tf.io.decode_png(tf.io.read_file(str(tmp_path / 'samples.png')))
  # 4 generated + 4 real sequences (batch 4), 3 time steps each.
  assert png.shape == (8 * IMAGE_SIZE, 3 * IMAGE_SIZE, 1)


def test_resume_with_other_model_or_data_flags_is_refused(record_dir, tmp_path):
  train_lib.train(quiet_trainer(tiny_config(record_dir, tmp_path, steps=1)))
  with pytest.raises(trainers.TrainingError, match='other model settings \\(gf_dim\\)'):
    quiet_trainer(tiny_config(record_dir, tmp_path, gf_dim=16))
  # A run from before a model field existed resumes; switching the field on does not.
  path = tmp_path / 'config.json'
  saved = json.loads(path.read_text())
  del saved['model']['noise_inputs']
  path.write_text(json.dumps(saved))
  quiet_trainer(tiny_config(record_dir, tmp_path))
  with pytest.raises(trainers.TrainingError, match='other model settings \\(noise_inputs'):
    quiet_trainer(tiny_config(record_dir, tmp_path, g_noise=True))
  # A run of a newer version, with a model setting this one does not know.
  saved['model']['wings'] = 2
  path.write_text(json.dumps(saved))
  with pytest.raises(trainers.TrainingError, match='other model settings \\(wings\\)'):
    quiet_trainer(tiny_config(record_dir, tmp_path))
  del saved['model']['wings']
  path.write_text(json.dumps(saved))
  # The data order is part of the run: another seed or batch would not resume it.
  with pytest.raises(trainers.TrainingError,
                     match='other data settings \\(batch_size, seed\\)'):
    quiet_trainer(tiny_config(record_dir, tmp_path, seed=1, batch_size=2))
  # The same for data fields: a run from before --random_phase resumes without it.
  del saved['data']['random_phase']
  path.write_text(json.dumps(saved))
  quiet_trainer(tiny_config(record_dir, tmp_path))
  with pytest.raises(trainers.TrainingError, match='other data settings \\(random_phase\\)'):
    quiet_trainer(tiny_config(record_dir, tmp_path, random_phase=True))


def test_noise_strength_starts_at_g_noise_init_and_a_resumed_run_keeps_its_own(
    record_dir, tmp_path):
  flags = dict(steps=2, g_noise=True, g_noise_rate=0.1, g_ema=0.9)
  trainer = quiet_trainer(tiny_config(record_dir, tmp_path, g_noise_init=0.06, **flags))
  for generator in (trainer.generator, trainer.generator_ema):
    assert float(generator.noise_strength.value) == pytest.approx(0.06)
  train_lib.train(trainer)
  trained = float(trainer.generator.noise_strength.value)
  # It learns from there, by at most about a tenth of --g_lr an update (Adam), and
  # a training step updates once per window.
  updates = trainer.config.steps * trainer.config.seq_len
  assert 1e-7 < abs(trained - 0.06) < updates * 0.1 * trainer.config.g_lr * 1.2
  trainer.run(1)  # TensorBoard shows where it is.
  assert trainer.pop_metrics()['g_noise_strength'] == pytest.approx(
      float(trainer.generator.noise_strength.value), abs=1e-7)
  resumed = quiet_trainer(tiny_config(record_dir, tmp_path, g_noise_init=0.5, **flags))
  resumed.restore()
  assert float(resumed.generator.noise_strength.value) == trained


@pytest.mark.parametrize('flags, message, status', [
    (['--tfrecords', '{missing}'], 'error: --tfrecords: {missing}: no such TFRecord', 1),
    (['--image_size', '64'], 'error: --image_size 64 does not match the records in '
     '{records} (32x32)', 1),
    (['--batch_size', '0'], 'error: --batch_size must be at least 1, got 0', 2),
    (['--seq_len', '11'], 'error: --seq_len 11 is longer than the longest recording '
     'in {records} (10 windows)', 1),
    (['--seq_len', '10', '--random_phase'], 'error: --seq_len 10 is longer than the '
     'longest recording in {records} (10 windows, less the one more that '
     '--random_phase reads)', 1),
    (['--loss', 'wasserstein'], "error: flag --loss=wasserstein: value should be one of "
     "<nonsaturating|hinge|wgan_gp>", 2),
    (['--profile_steps', '5'], 'error: --profile_steps must be START,STOP', 2),
    (['--g_noise_init', '0.1'], 'error: --g_noise_init is the starting strength of '
     '--g_noise, which is off', 2),
    (['--g_noise_rate', '0.1'], 'error: --g_noise_rate is how fast the strength of '
     '--g_noise learns, which is off', 2),
    (['--g_noise', '--g_noise_rate', '0'], 'error: --g_noise_rate must be positive, '
     'got 0.0', 2),
    (['--g_noise', '--g_noise_init', '-0.1'], 'error: --g_noise_init must be at least 0, '
     'got -0.1', 2),
    (['--steps_per_loop', '0'], 'error: --steps_per_loop must be at least 1, got 0', 2),
    (['--shuffle_buffer', '-1'], 'error: --shuffle_buffer must be at least 1, got -1',
     2),
    (['--interleave_cycle', '0'], 'error: --interleave_cycle must be at least 1, '
     'got 0', 2),
    (['--batch_size', '1000000000'], 'error: --batch_size 1000000000, --seq_len 4 and '
     '--shuffle_buffer 256 need about 717,163.9 GiB of memory; this machine has', 1),
])
def test_cli_bad_input_is_one_line_before_any_work(record_dir, tmp_path, flags,
                                                    message, status):
  """Bad flag values are usage errors (exit 2); records that do not fit exit 1."""
  names = {'missing': str(tmp_path / 'missing'), 'records': record_dir}
  flags = [f.format(**names) for f in flags]
  if '--tfrecords' not in flags:
    flags = ['--tfrecords', record_dir] + flags
  logdir = tmp_path / 'run'
  result = run_app('train', *flags, '--logdir', str(logdir))
  lines = result.stderr.strip().splitlines()
  assert result.returncode == status
  assert len(lines) == 1 and lines[0].startswith(message.format(**names)), lines
  assert not logdir.exists()


_MIRRORED_CHILD = r'''
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices('CPU')[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from orca_gan import train_lib, trainers


class SgdTrainer(trainers.GanTrainer):
  # Plain SGD moves weights in proportion to the gradient, so a wrong division by the
  # number of replicas shows (Adam would hide it: it is almost scale-invariant).

  def _optimizer(self, learning_rate):
    optimizer = keras.optimizers.SGD(learning_rate * 100)
    if self.config.mixed_precision:
      optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


config = trainers.TrainConfig(**json.loads(sys.argv[1]))
trainer = SgdTrainer(config, log=lambda line: None)
if config.mixed_precision:
  trainer.d_optimizer.dynamic_scale.assign(2.0**60)
  trainer.g_optimizer.dynamic_scale.assign(2.0**60)
metrics = train_lib.train(trainer)
variables = trainer.generator.weights + trainer.discriminator.weights
if trainer.generator_ema is not None:
  variables += trainer.generator_ema.weights
# Every replica's copy must hold the same value.
copies = {v.path: getattr(v.value, 'values', (v.value,)) for v in variables}
assert trainer.strategy.num_replicas_in_sync == 1 or all(
    len(c) == 2 for c in copies.values())
diverged = [p for p, c in copies.items()
            if any(not np.array_equal(x.numpy(), c[0].numpy()) for x in c)]
np.save(sys.argv[2], np.concatenate([v.numpy().ravel() for v in variables]))
print(json.dumps({'replicas': trainer.strategy.num_replicas_in_sync,
                  'metrics': metrics, 'diverged': diverged}))
'''


def _train_child(config, weights_path):
  child = subprocess.run(
      [sys.executable, '-c', _MIRRORED_CHILD, json.dumps(dataclasses.asdict(config)),
       str(weights_path)], capture_output=True, text=True, cwd=REPO, timeout=600)
  assert child.returncode == 0, child.stderr[-3000:]
  return json.loads(child.stdout.strip().splitlines()[-1]), np.load(weights_path)


def test_mirrored_strategy_matches_one_device(record_dir, tmp_path):
  results = {}
  for strategy in ('default', 'mirrored'):
    # Three steps: the chance of --augment_target moves 0.002 each way, and an odd
    # number of moves cannot bring it back to where it started.
    config = tiny_config(record_dir, tmp_path / strategy, steps=3, strategy=strategy,
                         summary_every=3, g_ema=0.5, g_noise=True, g_noise_init=0.06,
                         g_start_state='latent', minibatch_stddev=True,
                         minibatch_stddev_group=2, r1_weight=1.0, augment=True,
                         augment_p=0.5, augment_target=0.1, lecam_weight=0.5)
    results[strategy] = _train_child(config, tmp_path / f'{strategy}.npy')
  (one, one_weights), (two, two_weights) = results['default'], results['mirrored']
  assert one['replicas'] == 1 and two['replicas'] == 2 and not two['diverged']
  assert one['metrics']['augment_p'] != 0.5
  for name in ('d_loss', 'g_loss', 'd_real', 'd_fake', 'd_real_logit', 'd_fake_logit',
               'd_real_sign', 'augment_p', 'lecam_penalty'):
    # Same data, latents and synchronized batch norm: only summation order differs.
    assert two['metrics'][name] == pytest.approx(one['metrics'][name], rel=1e-4,
                                                 abs=1e-6), name
  # SGD at lr 0.01-0.02 moves weights by about 1e-2 per update: a gradient doubled or
  # halved on two replicas could not stay within 1e-5.
  np.testing.assert_allclose(two_weights, one_weights, rtol=0, atol=1e-5)


def test_mirrored_mixed_precision_skips_overflow_on_every_replica(record_dir, tmp_path):
  config = tiny_config(record_dir, tmp_path / 'run', steps=1, strategy='mirrored',
                       mixed_precision=True)
  result, _ = _train_child(config, tmp_path / 'weights.npy')
  assert result['replicas'] == 2 and not result['diverged']
  assert result['metrics']['skipped_updates'] == 2 * config.seq_len
  assert result['metrics']['d_loss_scale'] == 2.0**(60 - config.seq_len)


def _free_ports(count):
  """Ports free now on localhost (the OS picks them)."""
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(('localhost', 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def _step_losses(stdout):
  """{step: (d_loss, g_loss)} from the log lines of bin/train."""
  losses = {}
  for line in stdout.splitlines():
    match = re.match(r'step (\d+): (.*)', line)
    if match:
      values = dict(item.split(' ') for item in match.group(2).split(', '))
      losses[int(match.group(1))] = (float(values['d_loss']), float(values['g_loss']))
  return losses


def _start_workers(flags, tmp_path):
  """bin/train --strategy multi_worker started in two processes on localhost."""
  ports = _free_ports(2)
  cluster = {'worker': [f'localhost:{port}' for port in ports]}
  processes = []
  for index in range(2):
    env = dict(os.environ, TMPDIR=str(tmp_path / 'tmp'),
               TF_CONFIG=json.dumps({'cluster': cluster,
                                     'task': {'type': 'worker', 'index': index}}))
    processes.append(subprocess.Popen(
        [sys.executable, os.path.join(REPO, 'bin', 'train'), *flags, '--strategy',
         'multi_worker'], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env, cwd=REPO))
  return processes


def _wait_for_step(process, step):
  """Reads a running bin/train's stdout up to its log line of `step` (or its end)."""
  for line in process.stdout:
    if line.startswith(f'step {step}:'):
      return


def _train_workers(flags, tmp_path):
  """bin/train --strategy multi_worker in two processes on localhost; their outputs."""
  processes = _start_workers(flags, tmp_path)
  try:
    outputs = [p.communicate(timeout=300) for p in processes]
  finally:
    for p in processes:
      p.kill()
  for p, (_, stderr) in zip(processes, outputs):
    assert p.returncode == 0, stderr[-3000:]
  return [stdout for stdout, _ in outputs]


def test_two_workers_compute_what_one_process_computes_and_resume(record_dir, tmp_path):
  (tmp_path / 'tmp').mkdir()
  logdir = tmp_path / 'workers'
  flags = ['--tfrecords', record_dir, '--batch_size', '4', '--seq_len', '2',
           *_TINY_MODEL_FLAGS, '--save_every', '2', '--summary_every', '1',
           '--image_every', '2', '--g_ema', '0.5']
  first = _train_workers([*flags, '--logdir', str(logdir), '--steps', '2'], tmp_path)
  assert 'worker 1 of 2 workers' in first[1]
  # Both restarted: they resume from the chief's checkpoint.
  second = _train_workers([*flags, '--logdir', str(logdir), '--steps', '4'], tmp_path)
  assert f'resumed from {logdir}/checkpoints/ckpt-2' in second[0]
  assert f'resumed from {logdir}/checkpoints/ckpt-2' in second[1]
  one = run_app('train', *flags, '--logdir', str(tmp_path / 'one'), '--steps', '4')
  assert one.returncode == 0, one.stderr[-3000:]
  expected = _step_losses(one.stdout)
  assert sorted(expected) == [1, 2, 3, 4]
  for worker in range(2):
    # The same global batch, latents and synchronized batch norm: only the summation
    # order of the all-reduce differs.
    got = {**_step_losses(first[worker]), **_step_losses(second[worker])}
    assert sorted(got) == [1, 2, 3, 4]
    for step, losses in expected.items():
      assert got[step] == pytest.approx(losses, rel=1e-3), (worker, step)
  # Every weight and optimizer slot of the last checkpoint, too (the log shows four
  # digits).
  mine = tf.train.load_checkpoint(str(logdir / 'checkpoints' / 'ckpt-4'))
  reference = tf.train.load_checkpoint(str(tmp_path / 'one' / 'checkpoints' / 'ckpt-4'))
  shapes = reference.get_variable_to_dtype_map()
  assert mine.get_variable_to_dtype_map() == shapes
  floats = [k for k, dtype in shapes.items() if dtype.is_floating]
  assert len(floats) > 50
  for key in floats:
    np.testing.assert_allclose(mine.get_tensor(key), reference.get_tensor(key), rtol=0,
                               atol=1e-5, err_msg=key)
  # The chief's files, once; the other worker's temporary folder is gone.
  assert sorted(os.listdir(logdir / 'checkpoints')) == sorted(
      os.listdir(tmp_path / 'one' / 'checkpoints'))
  assert sorted(os.listdir(logdir / 'export')) == ['discriminator', 'generator']
  assert (logdir / 'samples.png').exists() and (logdir / 'config.json').exists()
  assert os.listdir(tmp_path / 'tmp') == []


def test_sigterm_to_one_worker_stops_both_at_one_saved_step(record_dir, tmp_path):
  """A preempted worker: both save the same step, exit as interrupted, and resume."""
  (tmp_path / 'tmp').mkdir()
  logdir = tmp_path / 'workers'
  flags = ['--tfrecords', record_dir, '--logdir', str(logdir), '--batch_size', '4',
           '--seq_len', '2', *_TINY_MODEL_FLAGS, '--summary_every', '1',
           '--save_every', '100000', '--image_every', '100000']
  processes = _start_workers([*flags, '--steps', '100000'], tmp_path)
  try:
    _wait_for_step(processes[1], 2)
    processes[1].send_signal(signal.SIGTERM)
    outputs = [p.communicate(timeout=120) for p in processes]
  finally:
    for p in processes:
      p.kill()
  saved = []
  for p, (stdout, stderr), how in zip(processes, outputs,
                                      ('interrupted on another worker', 'interrupted')):
    assert p.returncode == 130, stderr[-3000:]
    # gRPC may still log the peer's closed channel after it, from its own threads.
    assert any(line.startswith('error: interrupted; rerun the same command to resume')
               for line in stderr.strip().splitlines()[-12:]), stderr[-3000:]
    match = re.search(f'^{how}: saved step (\\d+)$', stdout, re.MULTILINE)
    assert match, stdout[-1000:]
    saved.append(int(match.group(1)))
  step = saved[0]
  assert saved == [step, step] and step >= 2
  assert (logdir / 'checkpoints' / f'ckpt-{step}.index').exists()
  resumed = _train_workers([*flags, '--steps', str(step + 1)], tmp_path)
  for stdout in resumed:
    assert f'resumed from {logdir}/checkpoints/ckpt-{step}' in stdout

  # Killed without a signal, a worker saves nothing: the chief says so on one line.
  processes = _start_workers([*flags, '--steps', '100000'], tmp_path)
  try:
    _wait_for_step(processes[1], step + 2)
    processes[1].kill()
    _, stderr = processes[0].communicate(timeout=120)
  finally:
    for p in processes:
      p.kill()
  lines = stderr.strip().splitlines()
  assert processes[0].returncode == 1, stderr[-3000:]
  assert lines[-1] == ('error: /job:worker/replica:0/task:1 stopped without saving; '
                       'restart every worker to resume from the last checkpoint in '
                       f'{logdir}'), stderr[-3000:]


@pytest.mark.parametrize('tf_config, message', [
    (None, 'error: --strategy multi_worker needs the TF_CONFIG environment variable'),
    ('{"cluster": ', 'error: TF_CONFIG is not JSON ('),
    ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 1}}',
     'error: TF_CONFIG: task index 1 is not in 0..0 of "worker"'),
    ('{"cluster": {"worker": ["localhost:1"], "ps": ["localhost:2"]}, "task": {}}',
     "error: TF_CONFIG: cluster jobs ['ps'] are not used by orca_gan"),
])
def test_cli_bad_tf_config_is_one_line_before_any_work(tf_config, message, record_dir,
                                                      tmp_path, monkeypatch):
  if tf_config is None:
    monkeypatch.delenv('TF_CONFIG', raising=False)
  else:
    monkeypatch.setenv('TF_CONFIG', tf_config)
  result = run_app('train', '--tfrecords', record_dir, '--logdir', str(tmp_path / 'run'),
                   '--strategy', 'multi_worker')
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith(message), (
      result.stderr)
  assert not (tmp_path / 'run').exists()


def test_cli_trains_exports_and_resumes(record_dir, tmp_path):
  from orca_gan import export_lib
  logdir = tmp_path / 'run'
  flags = ['--tfrecords', record_dir, '--logdir', str(logdir), '--batch_size', '4',
           '--seq_len', '2', '--z_dim', '8', '--g_lstm_units', '16', '--d_lstm_units',
           '16', '--gf_dim', '32', '--df_dim', '8', '--save_every', '1']
  result = run_app('train', *flags, '--steps', '2')
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip().splitlines()[-1].startswith('train: step 2, d_loss')
  metadata = export_lib.read_metadata(str(logdir / 'export' / 'generator'))
  assert metadata['kind'] == 'generator' and metadata['step'] == 2
  assert metadata['transform']['image_size'] == IMAGE_SIZE
  assert (logdir / 'samples.png').exists()
  # The resumed run reads its flags from a --flagfile.
  flagfile = tmp_path / 'run.flags'
  flagfile.write_text('\n'.join(f'{k}={v}' for k, v in zip(flags[::2], flags[1::2])) +
                      '\n--steps=3\n')
  again = run_app('train', '--flagfile', str(flagfile))
  assert again.returncode == 0, again.stderr[-2000:]
  assert 'resumed from' in again.stdout + again.stderr
  assert export_lib.read_metadata(str(logdir / 'export' / 'generator'))['step'] == 3


def test_cli_minibatch_stddev_exports_a_discriminator_that_scores_windows_alone(
    record_dir, tmp_path):
  """The export uses the statistic of real batches in place of the batch's: a window's
  embedding is the same alone as among others (bin/embed batches windows freely)."""
  from orca_gan import export_lib
  result = run_app('train', '--tfrecords', record_dir, '--logdir', str(tmp_path),
                   '--steps', '2', '--batch_size', '4', '--seq_len', '2',
                   '--minibatch_stddev', '--minibatch_stddev_group', '2',
                   *_TINY_MODEL_FLAGS)
  assert result.returncode == 0, result.stderr[-2000:]
  path = str(tmp_path / 'export' / 'discriminator')
  assert export_lib.read_metadata(path)['discriminator_stddev'] > 0
  serve = export_lib.load(path, 'discriminator').signatures['serving_default']
  images = tf.random.stateless_uniform([3, 2, IMAGE_SIZE, IMAGE_SIZE, 1], [7, 8], -1.0,
                                       1.0)
  together = serve(images=images)
  for row in range(3):
    alone = serve(images=images[row:row + 1])
    for name in ('embeddings', 'logits'):
      np.testing.assert_allclose(alone[name][0], together[name][row], rtol=1e-5,
                                 atol=1e-6)


def test_discriminator_stddev_reads_its_own_batches(record_dir, tmp_path):
  """The statistic for the export leaves the training input where it was."""
  assert quiet_trainer(tiny_config(record_dir, tmp_path / 'off')).discriminator_stddev() \
      is None
  config = tiny_config(record_dir, tmp_path / 'on', minibatch_stddev=True)
  trainer = quiet_trainer(config)
  assert trainer.discriminator_stddev() > 0
  fresh = iter(data.sequence_dataset(
      config.tfrecords, config.batch_size, config.seq_len, seed=config.seed,
      shuffle_buffer=config.shuffle_buffer, cycle_length=config.interleave_cycle,
      dequantize=False))
  np.testing.assert_array_equal(next(trainer.iterator), next(fresh))


@pytest.mark.parametrize('loss', ['hinge', 'wgan_gp'])
def test_other_losses_train(record_dir, tmp_path, loss):
  config = tiny_config(record_dir, tmp_path, steps=1, loss=loss, d_steps=2)
  metrics = train_lib.train(quiet_trainer(config))
  assert all(np.isfinite(v) for v in metrics.values())
  assert (metrics['gradient_penalty'] > 0) == (loss == 'wgan_gp')


def test_cli_recommended_cpu_flagfile_trains(record_dir, tmp_path):
  result = run_app('train', '--flagfile', os.path.join(REPO, 'configs', 'cpu.flags'),
                   '--tfrecords', record_dir, '--logdir', str(tmp_path), '--steps', '1',
                   '--batch_size', '2', '--seq_len', '2', *_TINY_MODEL_FLAGS)
  assert result.returncode == 0, result.stderr[-2000:]
  saved = json.loads((tmp_path / 'config.json').read_text())
  assert saved['train']['d_lr'] == 4e-4 and saved['train']['r1_weight'] == 1.0
  assert saved['train']['g_ema'] == 0.995 and saved['train']['augment_p'] == 0.5
  assert saved['train']['g_noise_init'] == 0.06
  assert saved['model']['noise_inputs'] is True and saved['model']['gf_min'] == 16


def test_cli_mixed_precision_runs(record_dir, tmp_path):
  result = run_app('train', '--tfrecords', record_dir, '--logdir', str(tmp_path),
                   '--steps', '1', '--batch_size', '2', '--seq_len', '2',
                   *_TINY_MODEL_FLAGS, '--mixed_precision')
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip().splitlines()[-1].startswith('train: step 1, d_loss')


def test_steps_zero_exports_the_untrained_models(record_dir, tmp_path):
  from orca_gan import export_lib
  result = run_app('train', '--tfrecords', record_dir, '--logdir', str(tmp_path),
                   '--steps', '0', *_TINY_MODEL_FLAGS)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip().splitlines()[-1].startswith('train: step 0; exported')
  assert export_lib.read_metadata(str(tmp_path / 'export' / 'generator'))['step'] == 0
  assert not (tmp_path / 'checkpoints').exists()


def test_sigterm_saves_a_checkpoint_and_exits(record_dir, tmp_path):
  import signal
  logdir = tmp_path / 'run'
  process = subprocess.Popen(
      [sys.executable, os.path.join(REPO, 'bin', 'train'), '--tfrecords', record_dir,
       '--logdir', str(logdir), '--steps', '100000', '--summary_every', '1',
       '--save_every', '100000', '--batch_size', '2', '--seq_len', '2',
       *_TINY_MODEL_FLAGS], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
  try:
    _wait_for_step(process, 1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
  finally:
    process.kill()
  assert process.returncode == 130, stderr[-2000:]
  assert stderr.strip().splitlines()[-1].startswith(
      'error: interrupted; rerun the same command to resume')
  saved = glob.glob(str(logdir / 'checkpoints' / 'ckpt-*.index'))
  assert saved and all(int(p.split('ckpt-')[1].split('.')[0]) >= 1 for p in saved)


def test_resuming_past_the_profile_start_does_not_trace(record_dir, tmp_path):
  train_lib.train(quiet_trainer(tiny_config(record_dir, tmp_path, steps=2)))
  train_lib.train(quiet_trainer(tiny_config(record_dir, tmp_path, steps=4,
                                            profile_steps='1,3')))
  assert not (tmp_path / 'train' / 'plugins' / 'profile').exists()


def test_augment_rolls_time_shifts_gain_and_passes_gradients():
  images = tf.reshape(tf.range(2 * 2 * 4, dtype=tf.float32) / 20.0 - 0.5, [2, 2, 4, 1])
  shift, gain = tf.constant([1, 3]), tf.constant([0.0, 0.9])
  with tf.GradientTape() as tape:
    tape.watch(images)
    out = trainers.augment(images, shift, gain)
  np.testing.assert_allclose(out[0, :, :, 0], np.roll(images[0, :, :, 0], -1, axis=1))
  np.testing.assert_allclose(out[1, :, :, 0], np.minimum(
      np.roll(images[1, :, :, 0], -3, axis=1) + 0.9, 1.0), rtol=1e-6)
  # A negative shift (--augment_shift below 1) rolls the other way.
  back = trainers.augment(images, tf.constant([-1, -3]), tf.constant([0.0, 0.0]))
  np.testing.assert_allclose(back[1, :, :, 0], np.roll(images[1, :, :, 0], 3, axis=1))
  grads = tape.gradient(out, images).numpy()
  assert grads[0].min() == 1.0                      # Every pixel reaches D.
  assert grads[1].max() == 1.0 and grads[1].min() == 0.0   # Clipped ones do not.


def test_augmented_training_runs_and_differs(record_dir, tmp_path):
  results = {}
  for flag in (False, True):
    trainer = quiet_trainer(tiny_config(record_dir, tmp_path / str(flag), steps=2,
                                        augment=flag, save_every=10))
    results[flag] = train_lib.train(trainer)
  assert all(np.isfinite(v) for v in results[True].values())
  assert results[True]['d_real'] != results[False]['d_real']


def test_augment_p_leaves_that_share_of_windows_as_they_are(record_dir, tmp_path):
  kept = {}
  for p in (1.0, 0.3):
    trainer = quiet_trainer(tiny_config(record_dir, tmp_path / str(p), steps=1,
                                        batch_size=50, augment=True, augment_p=p))
    noise = trainer._noise()
    gain, shift = noise['gain'].numpy(), noise['shift'].numpy()
    assert np.all(shift[gain == 0] == 0)       # Nor is a window left as it is shifted.
    kept[p] = (gain == 0).mean()
  assert kept[1.0] == 0.0
  assert kept[0.3] == pytest.approx(0.7, abs=0.05)      # Of 600 windows.
  for p, flags in ((0.0, dict(augment=True)), (1.5, dict(augment=True)),
                   (0.5, dict(augment=False))):
    with pytest.raises(trainers.TrainingError, match='--augment_p'):
      tiny_config(record_dir, tmp_path / 'bad', augment_p=p, **flags)


def test_augment_shift_bounds_the_roll_either_way(record_dir, tmp_path):
  shifts = {}
  for share in (1.0, 0.25):
    trainer = quiet_trainer(tiny_config(record_dir, tmp_path / str(share), steps=1,
                                        batch_size=50, augment=True, augment_shift=share))
    shifts[share] = trainer._noise()['shift'].numpy()     # 600 windows, 32 columns.
  assert shifts[1.0].min() == 0 and shifts[1.0].max() == IMAGE_SIZE - 1
  assert shifts[0.25].min() == -8 and shifts[0.25].max() == 8
  for share, flags in ((0.0, dict(augment=True)), (1.5, dict(augment=True)),
                       (0.5, dict(augment=False))):
    with pytest.raises(trainers.TrainingError, match='--augment_shift'):
      tiny_config(record_dir, tmp_path / 'bad', augment_shift=share, **flags)


def test_augment_target_steers_the_chance_by_the_real_windows_scores(record_dir,
                                                                     tmp_path):
  """ADA: from --augment_p (0, as in ADA), while the discriminator scores every real
  window as real (r_t = 1, above the target) the chance climbs 1/500 a step up to
  --augment_p_max; while it scores them as fake, it falls to 0; the step's draws use
  the chance as it is."""
  trainer = quiet_trainer(tiny_config(record_dir, tmp_path, steps=1, batch_size=50,
                                      augment=True, augment_p=0.0, augment_p_max=0.005,
                                      augment_target=0.6))
  assert float(trainer.augment_p.numpy()) == 0.0
  trainer.d_optimizer.learning_rate.assign(0.0)
  bias = trainer.discriminator.to_logit.bias
  chances = {}
  for sign in (1.0, -1.0):
    bias.assign([100.0 * sign])
    for _ in range(3):
      trainer.run(1)
      metrics = trainer.pop_metrics()
      assert metrics['d_real_sign'] == sign
      assert metrics['augment_p'] == float(trainer.augment_p.numpy())
      chances.setdefault(sign, []).append(metrics['augment_p'])
  assert chances[1.0] == pytest.approx([0.002, 0.004, 0.005])
  assert chances[-1.0] == pytest.approx([0.003, 0.001, 0.0])
  kept = {}
  for p in (0.0, 0.5):
    trainer.augment_p.assign(p)
    gain = trainer._noise()['gain'].numpy()
    kept[p] = (gain == 0).mean()
  assert kept[0.0] == 1.0 and kept[0.5] == pytest.approx(0.5, abs=0.05)
  for target, flags in ((1.0, dict(augment=True)), (-0.5, dict(augment=True)),
                        (0.6, dict(augment=False))):
    with pytest.raises(trainers.TrainingError, match='--augment_target'):
      tiny_config(record_dir, tmp_path / 'bad', augment_target=target, **flags)
  for flags in (dict(augment_p_max=0.5), dict(augment_target=0.6, augment_p_max=0.4),
                dict(augment_target=0.6, augment_p_max=1.5)):
    with pytest.raises(trainers.TrainingError, match='--augment_p_max'):
      tiny_config(record_dir, tmp_path / 'bad', augment=True, augment_p=0.5, **flags)
  # The default --augment_p (1) is above the default bound: the error names the fix.
  with pytest.raises(trainers.TrainingError, match='pass --augment_p=0'):
    tiny_config(record_dir, tmp_path / 'bad', augment=True, augment_target=0.6)
  # 0 is a start for the adapted chance only; a fixed chance of 0 is no augmentation.
  with pytest.raises(trainers.TrainingError, match=r'--augment_p must be in \(0, 1\]'):
    tiny_config(record_dir, tmp_path / 'bad', augment=True, augment_p=0.0)


def test_lecam_adds_its_weight_times_the_penalty_against_the_scores_history(
    record_dir, tmp_path):
  """--lecam_weight: no history at the first step, so no penalty; the averages are
  then the first step's mean logits; at the second step, with the same weights and
  windows, the discriminator loss differs from a run without by weight x penalty."""
  config = dict(steps=1, seq_len=1, save_every=10, summary_every=1, image_every=10)
  runs = {weight: quiet_trainer(tiny_config(record_dir, tmp_path / str(weight),
                                            lecam_weight=weight, **config))
          for weight in (0.0, 0.5)}
  with_lecam, without = runs[0.5], runs[0.0]
  first = {}
  for weight, trainer in runs.items():
    trainer.run(1)
    first[weight] = trainer.pop_metrics()
  assert first[0.5]['lecam_penalty'] == 0.0 and 'lecam_penalty' not in first[0.0]
  assert first[0.5]['d_loss'] == first[0.0]['d_loss']
  assert_same_weights(weights(with_lecam), weights(without))
  np.testing.assert_allclose(
      with_lecam._lecam_anchors().numpy(),
      [first[0.5]['d_real_logit'], first[0.5]['d_fake_logit'], 1 - 0.99], rtol=1e-5)
  second = {}
  for weight, trainer in runs.items():
    trainer.run(1)
    second[weight] = trainer.pop_metrics()
  assert second[0.5]['lecam_penalty'] > 1e-3
  assert second[0.5]['d_loss'] - second[0.0]['d_loss'] == pytest.approx(
      0.5 * second[0.5]['lecam_penalty'], rel=1e-4)
  with pytest.raises(trainers.TrainingError, match='--lecam_weight must be at least 0'):
    tiny_config(record_dir, tmp_path / 'bad', lecam_weight=-0.1)


def test_lecam_history_resumes_exactly(record_dir, tmp_path):
  """The averages are in the checkpoint: a run stopped at step 3 and resumed ends as
  one that never stopped. A run begun without the flag resumes with it, the history
  starting afresh."""
  config = dict(steps=6, lecam_weight=0.5, save_every=3, summary_every=6, image_every=6)
  straight, resumed = straight_and_resumed(record_dir, tmp_path, config, stop_at=3)
  np.testing.assert_array_equal(resumed.lecam_history.numpy(),
                                straight.lecam_history.numpy())
  assert_same_weights(weights(resumed), weights(straight))

  added, lines = resumed_after_three_steps_with(record_dir, tmp_path / 'without', config,
                                                lecam_weight=0.0)
  assert added.current_step == 3 and not added.lecam_history.numpy().any()
  assert any('holds no history of discriminator scores' in line for line in lines), lines


def test_adaptive_augmentation_resumes_exactly(record_dir, tmp_path):
  """The adapted chance is in the checkpoint: a run stopped at step 3 and resumed ends
  as one that never stopped, chance included."""
  config = dict(steps=6, augment=True, augment_p=0.5, augment_target=0.1,
                save_every=3, summary_every=6, image_every=6)
  straight, resumed = straight_and_resumed(record_dir, tmp_path, config, stop_at=3)
  chance = float(straight.augment_p.numpy())
  assert chance != 0.5
  assert float(resumed.augment_p.numpy()) == chance
  assert_same_weights(weights(resumed), weights(straight))

  # A run begun with a fixed chance resumes with an adapted one, from --augment_p.
  adapted, lines = resumed_after_three_steps_with(record_dir, tmp_path / 'fixed', config,
                                                  augment_target=0.0)
  assert adapted.current_step == 3 and float(adapted.augment_p.numpy()) == 0.5
  assert any('holds no adapted chance' in line for line in lines), lines


def test_generator_average_steps_resumes_and_is_the_one_used(record_dir, tmp_path,
                                                            monkeypatch):
  config = dict(steps=1, g_ema=0.25, save_every=1, summary_every=1, image_every=1)
  trainer = quiet_trainer(tiny_config(record_dir, tmp_path / 'run', **config))
  before = [w.numpy() for w in trainer.generator.weights]
  train_lib.train(trainer)
  after = [w.numpy() for w in trainer.generator.weights]
  for average, old, new in zip(trainer.generator_ema.weights, before, after):
    np.testing.assert_allclose(average.numpy(), 0.25 * old + 0.75 * new, rtol=1e-6,
                               atol=1e-7, err_msg=average.path)
  assert not np.allclose(before[0], after[0])
  # What samples is a copy of the average, normalising with statistics of its own;
  # making it leaves the average (and so the checkpoint) as it was.
  average = [w.numpy() for w in trainer.generator_ema.weights]
  used = trainer.generator_for_use()
  assert used is not trainer.generator_ema
  for w, value in zip(used.weights, average):
    if 'moving_' in w.path:
      assert not np.allclose(w.numpy(), value), w.path
    else:
      np.testing.assert_array_equal(w.numpy(), value, err_msg=w.path)
  for w, value in zip(trainer.generator_ema.weights, average):
    np.testing.assert_array_equal(w.numpy(), value, err_msg=w.path)
  # Its statistics are computed once per step: again only after a restore or a step.
  passes = []
  real_pass = models.standing_statistics
  monkeypatch.setattr(models, 'standing_statistics',
                      lambda *args: (passes.append(1), real_pass(*args)))
  assert trainer.generator_for_use() is used and not passes
  trainer.restore()
  trainer.generator_for_use()
  assert len(passes) == 1

  # Resumed from step 1 to 3, the average is bit-equal to an uninterrupted run's.
  resumed = quiet_trainer(tiny_config(record_dir, tmp_path / 'run', **dict(config,
                                                                           steps=3)))
  train_lib.train(resumed)
  straight = quiet_trainer(tiny_config(record_dir, tmp_path / 'straight',
                                       **dict(config, steps=3)))
  train_lib.train(straight)
  assert_same_weights(weights(resumed), weights(straight))

  # Switched on when resuming a run without it: it starts at the restored generator.
  plain = tmp_path / 'plain'
  train_lib.train(quiet_trainer(tiny_config(record_dir, plain, steps=1)))
  lines = []
  later = trainers.GanTrainer(tiny_config(record_dir, plain, steps=2, g_ema=0.5),
                              log=lines.append)
  later.restore()
  assert any("holds no generator average" in line for line in lines), lines
  for average, value in zip(later.generator_ema.weights, later.generator.weights):
    np.testing.assert_array_equal(average.numpy(), value.numpy())
  for bad in (-0.1, 1.0):
    with pytest.raises(trainers.TrainingError, match='--g_ema'):
      tiny_config(record_dir, tmp_path / 'bad', g_ema=bad)


def test_cli_exports_the_generator_average_or_the_raw_weights(record_dir, tmp_path):
  from orca_gan import export_lib
  flags = ['--tfrecords', record_dir, '--logdir', str(tmp_path), '--steps', '2',
           '--batch_size', '4', '--seq_len', '3', '--z_dim', '8', '--g_lstm_units', '16',
           '--d_lstm_units', '16', '--gf_dim', '32', '--df_dim', '8', '--g_ema', '0.5']
  result = run_app('train', *flags)
  assert result.returncode == 0, result.stderr[-2000:]
  # The finished run again, at its own step: it trains nothing and exports the raw
  # weights beside the average.
  result = run_app('train', *flags, '--export_generator', 'raw', '--export_dir',
                   str(tmp_path / 'export_raw'))
  assert result.returncode == 0, result.stderr[-2000:]
  trainer = quiet_trainer(tiny_config(record_dir, tmp_path, g_ema=0.5))
  trainer.restore()
  assert trainer.current_step == 2
  z = models.sample_latents(tf.constant([3, 4]), 2, 3, trainer.model_config)
  # The average with its own batch-norm statistics, as samples.png draws it.
  average, _ = models.generate_sequence(trainer.generator_for_use(), z)
  raw, _ = models.generate_sequence(trainer.generator, z)
  assert np.abs(average.numpy() - raw.numpy()).max() > 1e-3
  for export, expected, decay in (('export', average, 0.5), ('export_raw', raw, 0.0)):
    path = str(tmp_path / export / 'generator')
    got = export_lib.load(path, 'generator').signatures['serving_default'](z=z)
    np.testing.assert_allclose(got['images'].numpy(), expected.numpy(), atol=1e-5)
    assert export_lib.read_metadata(path)['generator_ema'] == decay


@pytest.mark.parametrize('stddev', [{}, dict(minibatch_stddev=True, minibatch_stddev_group=2)])
def test_r1_adds_half_its_weight_times_the_penalty_to_the_discriminator_loss(record_dir,
                                                                            tmp_path,
                                                                            stddev):
  # One step of one time step: both runs judge the same windows with the same weights,
  # so their discriminator losses differ by the penalty term alone; with the batch
  # statistic of --minibatch_stddev too (its gradients couple the windows of a group).
  results = {}
  for weight in (0.0, 30.0):
    trainer = quiet_trainer(tiny_config(record_dir, tmp_path / str(weight), steps=1,
                                        seq_len=1, r1_weight=weight, save_every=10,
                                        **stddev))
    results[weight] = train_lib.train(trainer)
  without, with_r1 = results[0.0], results[30.0]
  assert without['gradient_penalty'] == 0.0 and with_r1['gradient_penalty'] > 1e-4
  assert with_r1['d_loss'] - without['d_loss'] == pytest.approx(
      15.0 * with_r1['gradient_penalty'], rel=1e-4)
  with pytest.raises(trainers.TrainingError, match='--r1_weight with --loss wgan_gp'):
    tiny_config(record_dir, tmp_path / 'bad', r1_weight=1.0, loss='wgan_gp')


def test_minibatch_stddev_group_must_divide_the_batch(record_dir, tmp_path):
  with pytest.raises(trainers.TrainingError,
                     match=r'^--minibatch_stddev_group 3 must divide the batch of each '
                           r'replica \(4\)$'):
    trainers.GanTrainer(tiny_config(record_dir, tmp_path / 'run', minibatch_stddev=True,
                                    minibatch_stddev_group=3))
  with pytest.raises(trainers.TrainingError, match='--minibatch_stddev, which is off'):
    tiny_config(record_dir, tmp_path / 'run', minibatch_stddev_group=4)


@pytest.mark.parametrize('how', ['flip', 'truncate'])
def test_damaged_shard_is_named(record_dir, tmp_path, how):
  shard = damaged_records(record_dir, str(tmp_path / 'records'), how)
  trainer = quiet_trainer(tiny_config(str(tmp_path / 'records'), tmp_path / 'run'))
  with pytest.raises(records.CorruptShardError,
                     match=f'^{re.escape(shard)}: corrupt or truncated shard'):
    train_lib.train(trainer)


def test_disk_full_while_saving_names_the_path_and_keeps_the_last_checkpoint(
    record_dir, tmp_path):
  logdir = tmp_path / 'run'
  flags = ['--tfrecords', record_dir, '--logdir', str(logdir), '--batch_size', '4',
           '--seq_len', '2', '--z_dim', '8', '--g_lstm_units', '16', '--d_lstm_units',
           '16', '--gf_dim', '32', '--df_dim', '8', '--save_every', '2']
  assert run_app('train', *flags, '--steps', '2').returncode == 0
  checkpoints = logdir / 'checkpoints'
  before = sorted(os.listdir(checkpoints))
  data_size = os.path.getsize(glob.glob(str(checkpoints / 'ckpt-2.data-*'))[0])
  # A file-size limit below a checkpoint's size: its write fails with EFBIG, as on a
  # full disk; the small event and config files still fit.
  result = run_app('train', *flags, '--steps', '4',
                   preexec_fn=limit_file_size(data_size // 2))
  assert result.returncode == 1
  lines = result.stderr.strip().splitlines()
  assert lines[-1].startswith(f'error: {checkpoints}/ckpt-4: cannot write the '
                              'checkpoint ('), lines
  assert sorted(os.listdir(checkpoints)) == before  # Nothing of ckpt-4 left.
  export_size = sum(os.path.getsize(p) for p in glob.glob(
      str(logdir / 'export' / 'generator' / 'variables' / '*')))
  result = run_app('train', *flags, '--steps', '2',
                   preexec_fn=limit_file_size(export_size // 2))
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1].startswith(
      f'error: {logdir}/export/generator: cannot write the SavedModel ('), result.stderr
  assert sorted(os.listdir(logdir / 'export')) == ['discriminator', 'generator']
  again = run_app('train', *flags, '--steps', '4')
  assert again.returncode == 0, again.stderr[-2000:]
  assert f'resumed from {checkpoints}/ckpt-2' in again.stdout + again.stderr


def test_a_second_run_in_the_same_logdir_is_refused(record_dir, tmp_path):
  logdir = tmp_path / 'run'
  with fileio.lock_folder(str(logdir), '--logdir', 'train'):
    result = run_app('train', '--tfrecords', record_dir, '--logdir', str(logdir),
                     '--steps', '1')
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f'error: --logdir {logdir} is in use by another process (train, pid '
        f'{os.getpid()}); wait for it to finish or choose another folder']
    assert os.listdir(logdir) == [fileio.LOCK_FILE]
