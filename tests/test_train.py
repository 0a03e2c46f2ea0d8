"""Training: learning on known structure, resume, faults, profiling, distribution."""

import dataclasses
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from orca_gan import models
from orca_gan import prepare_tfrecords
from orca_gan import spectral
from orca_gan import train_lib
from tests.helpers import REPO, run_app, write_wav

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


def tiny_config(record_dir, logdir, **overrides):
  fields = dict(tfrecords=record_dir, logdir=str(logdir), steps=2, batch_size=4,
                seq_len=3, z_dim=8, g_lstm_units=16, d_lstm_units=16, gf_dim=32,
                df_dim=8, save_every=1, summary_every=1, image_every=1)
  fields.update(overrides)
  return train_lib.TrainConfig(**fields)


def quiet_trainer(config):
  return train_lib.Trainer(config, log=lambda line: None)


def mean_row_profile(images):
  """[..., H, W, 1] -> mean value per frequency row, [H]."""
  images = np.asarray(images)
  return images.reshape(-1, IMAGE_SIZE, IMAGE_SIZE).mean(axis=(0, 2))


def test_generator_learns_where_the_energy_is(record_dir, tmp_path):
  config = tiny_config(record_dir, tmp_path, steps=120, batch_size=8, seq_len=2,
                       g_lr=1e-3, d_lr=5e-4, save_every=1000, summary_every=1000,
                       image_every=1000)
  trainer = quiet_trainer(config)
  real = np.concatenate([b for b in train_lib.data.sequence_dataset(
      record_dir, 8, 2, seed=0, repeat=False).as_numpy_iterator()])
  real_profile = mean_row_profile(real)
  assert real_profile[slice(*BAND_ROWS)].mean() > real_profile.mean() + 0.3

  z = models.sample_latents(tf.constant([5, 5]), 32, 2, trainer.model_config)

  def generated_profile():
    images, _ = models.generate_sequence(trainer.generator, z)
    return mean_row_profile(images)

  untrained = np.corrcoef(generated_profile(), real_profile)[0, 1]
  trainer.train()
  trained = np.corrcoef(generated_profile(), real_profile)[0, 1]
  assert trained > 0.8 and trained > untrained + 0.4, (untrained, trained)


def test_states_reset_at_every_batch(record_dir, tmp_path):
  trainer = quiet_trainer(tiny_config(record_dir, tmp_path))
  trainer.g_optimizer.learning_rate.assign(0.0)
  trainer.d_optimizer.learning_rate.assign(0.0)
  batch = next(iter(train_lib.data.sequence_dataset(record_dir, 4, 3, seed=1)))
  first = trainer.train_step(batch)
  trainer.step.assign(0)  # Same latents again.
  second = trainer.train_step(batch)
  for name in ('d_loss', 'g_loss', 'd_real', 'd_fake'):
    assert first[name] == pytest.approx(second[name], rel=1e-5), name


def test_interrupted_run_saves_and_resumes(record_dir, tmp_path, monkeypatch):
  config = tiny_config(record_dir, tmp_path, steps=4, save_every=10)
  trainer = quiet_trainer(config)
  real_step = trainer.train_step

  def interrupted_after_three(batch):
    if trainer.current_step == 3:
      raise KeyboardInterrupt
    return real_step(batch)

  monkeypatch.setattr(trainer, 'train_step', interrupted_after_three)
  with pytest.raises(KeyboardInterrupt):
    trainer.train()
  saved = [v.numpy() for v in trainer.generator.weights]
  assert os.path.exists(tmp_path / 'checkpoints' / 'ckpt-3.index')

  lines = []
  resumed = train_lib.Trainer(config, log=lines.append)
  resumed.restore()
  assert resumed.current_step == 3 and any('resumed from' in l for l in lines)
  for weight, value in zip(resumed.generator.weights, saved, strict=True):
    np.testing.assert_array_equal(weight.numpy(), value)
  resumed.train()
  assert resumed.current_step == 4
  assert os.path.exists(tmp_path / 'checkpoints' / 'ckpt-4.index')


def test_corrupt_latest_checkpoint_falls_back(record_dir, tmp_path):
  quiet_trainer(tiny_config(record_dir, tmp_path, steps=2)).train()
  data_file = glob.glob(str(tmp_path / 'checkpoints' / 'ckpt-2.data-*'))[0]
  with open(data_file, 'r+b') as f:
    f.truncate(100)
  lines = []
  trainer = train_lib.Trainer(tiny_config(record_dir, tmp_path, steps=3),
                              log=lines.append)
  trainer.restore()
  assert trainer.current_step == 1
  assert any('ckpt-2 is unreadable' in l for l in lines), lines


def test_nan_loss_stops_naming_the_step_and_keeps_last_good(record_dir, tmp_path):
  config = tiny_config(record_dir, tmp_path, steps=5)
  trainer = quiet_trainer(config)
  real_loss = trainer.generator_loss
  # NaN from the third training step on (the loss is traced once; `step` is read live).
  trainer.generator_loss = lambda logits: tf.where(
      trainer.step >= 2, tf.constant(np.nan), real_loss(logits))
  with pytest.raises(train_lib.TrainingError, match=r'step 3: \w+ is nan.*ckpt-2'):
    trainer.train()
  assert not os.path.exists(tmp_path / 'checkpoints' / 'ckpt-3.index')


def test_profiler_trace_and_summaries_are_written(record_dir, tmp_path):
  quiet_trainer(tiny_config(record_dir, tmp_path, steps=3, profile_steps='1,2')).train()
  assert glob.glob(str(tmp_path / 'train' / 'plugins' / 'profile' / '*' / '*.xplane.pb'))
  events = glob.glob(str(tmp_path / 'train' / 'events.out.tfevents.*'))
  tags = set()
  for event in tf.compat.v1.train.summary_iterator(events[0]):
    tags.update(v.tag for v in event.summary.value)
  assert {'d_loss', 'g_loss', 'd_real', 'd_fake', 'd_grad_norm', 'g_grad_norm',
          'steps_per_s', 'examples_per_s', 'generated_top_real_bottom'} <= tags
  png = tf.io.decode_png(tf.io.read_file(str(tmp_path / 'samples.png')))
  # 4 generated + 4 real sequences (batch 4), 3 time steps each.
  assert png.shape == (8 * IMAGE_SIZE, 3 * IMAGE_SIZE, 1)


def test_resume_with_other_model_flags_is_refused(record_dir, tmp_path):
  quiet_trainer(tiny_config(record_dir, tmp_path, steps=1)).train()
  with pytest.raises(train_lib.TrainingError, match='other model settings \\(gf_dim\\)'):
    quiet_trainer(tiny_config(record_dir, tmp_path, gf_dim=16))


@pytest.mark.parametrize('flags, message', [
    (['--tfrecords', '{missing}'], 'error: --tfrecords: {missing}: no such TFRecord'),
    (['--image_size', '64'], 'error: --image_size 64 does not match the records in '
     '{records} (32x32)'),
    (['--batch_size', '0'], 'error: --batch_size must be at least 1, got 0'),
    (['--seq_len', '11'], 'error: --seq_len 11 is longer than the longest recording '
     'in {records} (10 windows)'),
    (['--loss', 'wasserstein'], "error: --loss must be one of"),
    (['--profile_steps', '5'], 'error: --profile_steps must be START,STOP'),
])
def test_cli_bad_input_is_one_line_before_any_work(record_dir, tmp_path, flags,
                                                    message):
  names = {'missing': str(tmp_path / 'missing'), 'records': record_dir}
  flags = [f.format(**names) for f in flags]
  if '--tfrecords' not in flags:
    flags = ['--tfrecords', record_dir] + flags
  logdir = tmp_path / 'run'
  result = run_app('train', *flags, '--logdir', str(logdir))
  lines = result.stderr.strip().splitlines()
  assert result.returncode != 0
  assert len(lines) == 1 and lines[0].startswith(message.format(**names)), lines
  assert not logdir.exists()


_MIRRORED_CHILD = r'''
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices('CPU')[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from orca_gan import train_lib
config = train_lib.TrainConfig(**json.loads(sys.argv[1]))
trainer = train_lib.Trainer(config, log=lambda line: None)
print(json.dumps({'replicas': trainer.strategy.num_replicas_in_sync,
                  'metrics': trainer.train()}))
'''


def test_mirrored_strategy_matches_one_device(record_dir, tmp_path):
  results = {}
  for strategy in ('default', 'mirrored'):
    config = tiny_config(record_dir, tmp_path / strategy, steps=2, strategy=strategy)
    child = subprocess.run(
        [sys.executable, '-c', _MIRRORED_CHILD, json.dumps(dataclasses.asdict(config))],
        capture_output=True, text=True, cwd=REPO, timeout=600)
    assert child.returncode == 0, child.stderr[-3000:]
    results[strategy] = json.loads(child.stdout.strip().splitlines()[-1])
  assert results['default']['replicas'] == 1 and results['mirrored']['replicas'] == 2
  for name in ('d_loss', 'g_loss', 'd_real', 'd_fake', 'd_real_logit', 'd_fake_logit'):
    # Same data, latents and synchronized batch norm: only summation order differs.
    assert results['mirrored']['metrics'][name] == pytest.approx(
        results['default']['metrics'][name], rel=1e-3, abs=1e-5), name


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


@pytest.mark.parametrize('loss', ['hinge', 'wgan_gp'])
def test_other_losses_train(record_dir, tmp_path, loss):
  config = tiny_config(record_dir, tmp_path, steps=1, loss=loss, d_steps=2)
  metrics = quiet_trainer(config).train()
  assert all(np.isfinite(v) for v in metrics.values())
  assert (metrics['gradient_penalty'] > 0) == (loss == 'wgan_gp')


def test_cli_mixed_precision_runs(record_dir, tmp_path):
  result = run_app('train', '--tfrecords', record_dir, '--logdir', str(tmp_path),
                   '--steps', '1', '--batch_size', '2', '--seq_len', '2', '--z_dim',
                   '8', '--g_lstm_units', '16', '--d_lstm_units', '16', '--gf_dim',
                   '16', '--df_dim', '8', '--mixed_precision')
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip().splitlines()[-1].startswith('train: step 1, d_loss')


def test_steps_zero_exports_the_untrained_models(record_dir, tmp_path):
  from orca_gan import export_lib
  result = run_app('train', '--tfrecords', record_dir, '--logdir', str(tmp_path),
                   '--steps', '0', '--z_dim', '8', '--g_lstm_units', '16',
                   '--d_lstm_units', '16', '--gf_dim', '16', '--df_dim', '8')
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
       '--save_every', '100000', '--batch_size', '2', '--seq_len', '2', '--z_dim', '8',
       '--g_lstm_units', '16', '--d_lstm_units', '16', '--gf_dim', '16', '--df_dim',
       '8'], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
  try:
    for line in process.stdout:      # Wait until training is under way.
      if line.startswith('step 1:'):
        break
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
  finally:
    process.kill()
  assert process.returncode == 130, stderr[-2000:]
  assert stderr.strip().splitlines()[-1].startswith('error: interrupted; rerun the same command to resume')
  saved = glob.glob(str(logdir / 'checkpoints' / 'ckpt-*.index'))
  assert saved and all(int(p.split('ckpt-')[1].split('.')[0]) >= 1 for p in saved)


def test_resuming_past_the_profile_start_does_not_trace(record_dir, tmp_path):
  quiet_trainer(tiny_config(record_dir, tmp_path, steps=2)).train()
  quiet_trainer(tiny_config(record_dir, tmp_path, steps=4, profile_steps='1,3')).train()
  assert not (tmp_path / 'train' / 'plugins' / 'profile').exists()
