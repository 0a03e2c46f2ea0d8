"""Training the recurrent GAN (the library behind bin/train).

A `Trainer` owns the models, optimizers, distribution strategy, checkpoint and step
counter. Every training step takes a batch of sequences of consecutive spectrograms and
walks through time: at each time step one discriminator update (or `d_steps`) and one
generator update, each a `tf.function` (the loss-and-gradient part optionally compiled
with XLA). The LSTM states are carried from one time step to the next and reset at the
start of every batch; the real and the generated stream each keep their own
discriminator state. Gradients do not flow back through earlier time steps (truncated
back-propagation of one step, as in the seed): the incoming state is a constant.

Noise is a pure function of `(seed, step)` (`models.sample_latents`), so a resumed run
draws what an uninterrupted one would have, and a distributed run draws what a
single-device run draws.
"""

import dataclasses
import json
import math
import os
import time

import keras
import tensorflow as tf

from orca_gan import data
from orca_gan import losses
from orca_gan import models
from orca_gan import records

# Fields that define what is learned: a resumed run must not change them.
_FIXED_ON_RESUME = ('model', 'transform', 'loss')
_GRID_SEQUENCES = 4


class TrainingError(RuntimeError):
  """Training cannot start or go on; the message says why, on one line."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Flags of bin/train map 1:1 to these fields. Defaults fit a laptop CPU.

  The seed's GPU recipe: batch_size 256, seq_len 12, z_dim 128, g/d_lstm_units 256,
  gf_dim 256, df_dim 64 (see README).
  """
  tfrecords: str = 'tfrecords'
  logdir: str = 'runs/orca_gan'
  export_dir: str = ''            # '' -> <logdir>/export
  image_size: int = 0             # 0 -> the manifest's; otherwise must match it.
  steps: int = 2000
  batch_size: int = 16
  seq_len: int = 4
  z_dim: int = 64
  fast_z: int = -1                # -1 -> z_dim (all dims redrawn every step).
  g_lstm_units: int = 64
  d_lstm_units: int = 64
  gf_dim: int = 64
  df_dim: int = 16
  g_lr: float = 2e-4
  d_lr: float = 1e-4
  beta_1: float = 0.5
  loss: str = 'nonsaturating'
  d_steps: int = 1
  gp_weight: float = 10.0
  seed: int = 0
  jit_compile: str = 'auto'       # auto: XLA on GPU only (measured: 9x slower on CPU).
  strategy: str = 'default'       # default | mirrored
  mixed_precision: bool = False
  save_every: int = 200
  summary_every: int = 20
  image_every: int = 200
  profile_steps: str = ''         # 'START,STOP': trace steps START..STOP-1.
  keep_checkpoints: int = 3

  def __post_init__(self):
    if self.steps < 0:
      raise TrainingError(f'--steps must be at least 0, got {self.steps}')
    positive = ('batch_size', 'seq_len', 'd_steps', 'save_every', 'summary_every',
                'image_every', 'keep_checkpoints')
    for name in positive:
      if getattr(self, name) < 1:
        raise TrainingError(f'--{name} must be at least 1, got {getattr(self, name)}')
    for name in ('g_lr', 'd_lr'):
      if not getattr(self, name) > 0:
        raise TrainingError(f'--{name} must be positive, got {getattr(self, name)}')
    if self.loss not in losses.LOSSES:
      raise TrainingError(f'--loss must be one of {sorted(losses.LOSSES)}, got '
                          f'{self.loss!r}')
    if self.jit_compile not in ('auto', 'true', 'false'):
      raise TrainingError(f'--jit_compile must be auto, true or false, got '
                          f'{self.jit_compile!r}')
    if self.strategy not in ('default', 'mirrored'):
      raise TrainingError(f'--strategy must be default or mirrored, got '
                          f'{self.strategy!r}')
    self.profile_range()  # Validates.

  def profile_range(self):
    """(start, stop) steps of the profiler trace, or None."""
    if not self.profile_steps:
      return None
    try:
      start, stop = (int(v) for v in self.profile_steps.split(','))
    except ValueError:
      raise TrainingError(f'--profile_steps must be START,STOP (two step numbers), '
                          f'got {self.profile_steps!r}') from None
    if not 0 <= start < stop:
      raise TrainingError(f'--profile_steps needs 0 <= START < STOP, got '
                          f'{self.profile_steps!r}')
    return start, stop

  def model_config(self, image_size: int) -> models.ModelConfig:
    return models.ModelConfig(
        image_size=image_size, z_dim=self.z_dim,
        fast_z=self.z_dim if self.fast_z < 0 else self.fast_z,
        g_lstm_units=self.g_lstm_units, d_lstm_units=self.d_lstm_units,
        gf_dim=self.gf_dim, df_dim=self.df_dim)

  @property
  def resolved_export_dir(self) -> str:
    return self.export_dir or os.path.join(self.logdir, 'export')


def use_xla(setting: str) -> bool:
  """--jit_compile: 'auto' compiles with XLA only when a GPU is present.

  Measured on the 2-core CPU (benchmarks/train_bench.py): XLA makes the step slower
  there; on GPUs it usually helps.
  """
  if setting == 'auto':
    return bool(tf.config.list_physical_devices('GPU'))
  return setting == 'true'


def image_grid(generated, real) -> tf.Tensor:
  """Sequences side by side: one row per sequence, time left to right.

  Args:
    generated: [n, T, H, W, 1] in [-1, 1].
    real: [n, T, H, W, 1] in [-1, 1].

  Returns:
    uint8 [1, 2 n H, T W, 1]: generated rows on top, real rows below, low
    frequencies at the bottom of each image.
  """
  both = tf.concat([generated, real], axis=0)[:, :, ::-1]     # freq high -> low
  n, t, h, w = both.shape[0], both.shape[1], both.shape[2], both.shape[3]
  rows = tf.reshape(tf.transpose(both, [0, 2, 1, 3, 4]), [n * h, t * w, 1])
  return tf.cast(tf.round((rows + 1.0) * 127.5), tf.uint8)[None]


class Trainer:
  """Owns everything a training run needs; `train()` runs it."""

  def __init__(self, config: TrainConfig, log=print):
    self.config = config
    self.log = log
    try:
      self.manifest = records.read_manifest(config.tfrecords)
    except records.ManifestError as e:
      raise TrainingError(f'--tfrecords: {e}') from e
    if not self.manifest['files']:
      raise TrainingError(f'--tfrecords {config.tfrecords}: holds no windows')
    self.transform = records.manifest_config(self.manifest)
    image_size = self.transform.image_size
    if config.image_size and config.image_size != image_size:
      raise TrainingError(
          f'--image_size {config.image_size} does not match the records in '
          f'{config.tfrecords} ({image_size}x{image_size})')
    longest = data.max_sequence_length(self.manifest)
    if config.seq_len > longest:
      raise TrainingError(
          f'--seq_len {config.seq_len} is longer than the longest recording in '
          f'{config.tfrecords} ({longest} windows)')
    try:
      self.model_config = config.model_config(image_size)
    except ValueError as e:
      raise TrainingError(str(e)) from e
    self._check_run_config()

    if config.mixed_precision:
      keras.mixed_precision.set_global_policy('mixed_float16')
    self.strategy = (tf.distribute.MirroredStrategy() if config.strategy == 'mirrored'
                     else tf.distribute.get_strategy())
    replicas = self.strategy.num_replicas_in_sync
    if config.batch_size % replicas:
      raise TrainingError(f'--batch_size {config.batch_size} must be a multiple of the '
                          f'{replicas} replicas')
    self.jit = use_xla(config.jit_compile)
    if self.jit and replicas > 1:
      if config.jit_compile == 'true':
        raise TrainingError(
            '--jit_compile=true does not work with --strategy=mirrored on several '
            'devices: the synchronized batch norm all-reduces inside the step, which '
            'TensorFlow cannot do in a nested (XLA) function; use --jit_compile=false')
      self.jit = False
    self.generator_loss, self.discriminator_loss = losses.LOSSES[config.loss]

    with self.strategy.scope():
      keras.utils.set_random_seed(config.seed)  # Reproducible initial weights.
      self.generator = models.Generator(self.model_config)
      self.discriminator = models.Discriminator(self.model_config)
      # Build the variables with one call before anything restores into them.
      mc = self.model_config
      self.generator(tf.zeros([1, mc.z_dim]), self.generator.initial_state(1))
      self.discriminator(tf.zeros([1, image_size, image_size, 1]),
                         self.discriminator.initial_state(1))
      self.g_optimizer = self._optimizer(config.g_lr)
      self.d_optimizer = self._optimizer(config.d_lr)
      # Built inside the scope before the first distributed step: otherwise TF 2.17
      # fails under MirroredStrategy ("You must feed a value for placeholder tensor").
      self.g_optimizer.build(self.generator.trainable_variables)
      self.d_optimizer.build(self.discriminator.trainable_variables)
      # Two optimizers: their `iterations` do not count training steps; this does.
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
      self.seed = tf.Variable(config.seed, dtype=tf.int64, trainable=False, name='seed')
    self.checkpoint = tf.train.Checkpoint(
        step=self.step, seed=self.seed, generator=self.generator,
        discriminator=self.discriminator, g_optimizer=self.g_optimizer,
        d_optimizer=self.d_optimizer)
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, os.path.join(config.logdir, 'checkpoints'),
        max_to_keep=config.keep_checkpoints)
    if replicas == 1:
      # The loss-and-gradient halves as their own tf.functions, XLA-compiled on request.
      self._d_grads = tf.function(self._d_loss_and_grads, jit_compile=self.jit)
      self._g_grads = tf.function(self._g_loss_and_grads, jit_compile=self.jit)
    else:
      # Traced inline: synchronized batch norm calls merge_call, which TensorFlow does
      # not allow inside a nested tf.function.
      self._d_grads, self._g_grads = self._d_loss_and_grads, self._g_loss_and_grads

  @property
  def current_step(self) -> int:
    return int(self.step.numpy())

  def _optimizer(self, learning_rate):
    optimizer = keras.optimizers.Adam(learning_rate, beta_1=self.config.beta_1)
    if self.config.mixed_precision:
      optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer

  # ---------------------------------------------------------------- run config

  def _run_description(self) -> dict:
    return {
        'train': dataclasses.asdict(self.config),
        'model': dataclasses.asdict(self.model_config),
        'transform': self.manifest['transform'],
        'loss': self.config.loss,
    }

  def _check_run_config(self) -> None:
    """Refuses to resume a run with flags that change what is learned."""
    path = os.path.join(self.config.logdir, 'config.json')
    if not os.path.exists(path):
      return
    try:
      with open(path) as f:
        saved = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
      raise TrainingError(f'{path}: unreadable ({e}); use a new --logdir') from e
    current = self._run_description()
    for key in _FIXED_ON_RESUME:
      if saved.get(key) != current[key]:
        changed = sorted(k for k in current[key]
                         if saved.get(key, {}).get(k) != current[key][k]
                         ) if isinstance(current[key], dict) else [key]
        raise TrainingError(
            f'--logdir {self.config.logdir} holds a run with other {key} settings '
            f'({", ".join(changed)}); use the same flags or a new --logdir')

  def _save_run_config(self) -> None:
    os.makedirs(self.config.logdir, exist_ok=True)
    records.write_json_atomic(os.path.join(self.config.logdir, 'config.json'),
                              self._run_description())

  # ---------------------------------------------------------------- the step

  def _d_loss_and_grads(self, real, z, g_state, d_real_state, d_fake_state, gp_seed):
    """Discriminator loss and gradients for one time step, plus the advanced states."""
    with tf.GradientTape() as tape:
      fake, _ = self.generator(z, g_state, training=True)
      fake = tf.stop_gradient(fake)
      real_logits, _, new_real_state = self.discriminator(real, d_real_state,
                                                          training=True)
      fake_logits, _, new_fake_state = self.discriminator(fake, d_fake_state,
                                                          training=True)
      loss = self.discriminator_loss(real_logits, fake_logits)
      penalty = tf.constant(0.0)
      if self.config.loss == 'wgan_gp':
        weights = tf.random.stateless_uniform([tf.shape(real)[0], 1, 1, 1], gp_seed)
        # The interpolates are judged in the context of the real stream.
        penalty = losses.gradient_penalty(
            lambda x: self.discriminator(x, d_real_state, training=True)[0],
            real, fake, weights)
        loss += self.config.gp_weight * penalty
      scaled = loss / self.strategy.num_replicas_in_sync
      if self.config.mixed_precision:
        scaled = self.d_optimizer.scale_loss(scaled)
    grads = tape.gradient(scaled, self.discriminator.trainable_variables)
    metrics = {
        'd_loss': loss, 'gradient_penalty': penalty,
        'd_real': tf.reduce_mean(tf.sigmoid(real_logits)),
        'd_fake': tf.reduce_mean(tf.sigmoid(fake_logits)),
        'd_real_logit': tf.reduce_mean(real_logits),
        'd_fake_logit': tf.reduce_mean(fake_logits),
    }
    return grads, metrics, new_real_state, new_fake_state

  def _g_loss_and_grads(self, z, g_state, d_fake_state):
    """Generator loss and gradients for one time step, plus its advanced state."""
    with tf.GradientTape() as tape:
      fake, new_g_state = self.generator(z, g_state, training=True)
      fake_logits, _, _ = self.discriminator(fake, d_fake_state, training=True)
      loss = self.generator_loss(fake_logits)
      scaled = loss / self.strategy.num_replicas_in_sync
      if self.config.mixed_precision:
        scaled = self.g_optimizer.scale_loss(scaled)
    grads = tape.gradient(scaled, self.generator.trainable_variables)
    return grads, {'g_loss': loss}, new_g_state

  def _latents(self, local_batch, step):
    """This replica's slice of the global batch's latents, [b, seq_len, z_dim]."""
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync
    z = models.sample_latents(tf.stack([self.seed, step]), local_batch * replicas,
                              self.config.seq_len, self.model_config)
    first = tf.cast(context.replica_id_in_sync_group, tf.int32) * local_batch
    return z[first:first + local_batch]

  def _replica_time_step(self, real_seq, t, step, states):
    g_state, d_real_state, d_fake_state = states
    local_batch = tf.shape(real_seq)[0]
    real = real_seq[:, t]                                   # [b, h, w, 1]
    z = self._latents(local_batch, step)[:, t]              # [b, z_dim]
    for d_step in range(self.config.d_steps):
      gp_seed = tf.stack([self.seed + 1,
                          (step * self.config.seq_len + tf.cast(t, tf.int64)) *
                          self.config.d_steps + d_step])
      d_grads, d_metrics, new_real, new_fake = self._d_grads(
          real, z, g_state, d_real_state, d_fake_state, gp_seed)
      self.d_optimizer.apply_gradients(
          zip(d_grads, self.discriminator.trainable_variables))
    g_grads, g_metrics, new_g_state = self._g_grads(z, g_state, d_fake_state)
    self.g_optimizer.apply_gradients(zip(g_grads, self.generator.trainable_variables))
    metrics = dict(d_metrics, **g_metrics)
    metrics['d_grad_norm'] = self._grad_norm(d_grads, self.d_optimizer)
    metrics['g_grad_norm'] = self._grad_norm(g_grads, self.g_optimizer)
    return (new_g_state, new_real, new_fake), metrics

  def _grad_norm(self, grads, optimizer):
    """Norm of the gradient of this replica's (unscaled) loss on its share of the batch.

    Averaged over replicas by `_time_step`; on one device it is the gradient norm. The
    norm of the all-reduced gradient would cost a second all-reduce every update.
    """
    norm = tf.linalg.global_norm(grads) * float(self.strategy.num_replicas_in_sync)
    if self.config.mixed_precision:
      norm /= tf.cast(optimizer.dynamic_scale, norm.dtype)
    return norm

  @tf.function
  def _time_step(self, real_seq, t, states):
    """One D and G update at time step t, on every replica."""
    new_states, metrics = self.strategy.run(
        self._replica_time_step, args=(real_seq, t, self.step, states))
    metrics = {k: self.strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
               for k, v in metrics.items()}
    return new_states, metrics

  @tf.function
  def _initial_states(self, real_seq):
    def initial(real_seq):
      b = tf.shape(real_seq)[0]
      return (self.generator.initial_state(b), self.discriminator.initial_state(b),
              self.discriminator.initial_state(b))
    return self.strategy.run(initial, args=(real_seq,))

  def train_step(self, real_seq) -> dict:
    """One training step over a (distributed) batch of sequences.

    Args:
      real_seq: [batch, seq_len, H, W, 1] (per replica under a strategy).

    Returns:
      Named float metrics, averaged over the time steps.
    """
    states = self._initial_states(real_seq)      # A new batch: every LSTM starts at 0.
    totals = {}
    for t in range(self.config.seq_len):
      states, metrics = self._time_step(real_seq, tf.constant(t), states)
      for name, value in metrics.items():
        totals[name] = totals.get(name, 0.0) + value
    self.step.assign_add(1)
    return {k: float(v) / self.config.seq_len for k, v in totals.items()}

  # ---------------------------------------------------------------- checkpoints

  def restore(self) -> None:
    """Resumes from the newest readable checkpoint, falling back to older ones."""
    candidates = list(reversed(self.manager.checkpoints))
    for path in candidates:
      try:
        self.checkpoint.restore(path).assert_existing_objects_matched()
      # A damaged checkpoint surfaces as many exception types (DataLossError,
      # IndexError "Read less bytes than requested", AssertionError, ...).
      except Exception as e:  # pylint: disable=broad-except
        reason = ' '.join(str(e).split())[:200]
        self.log(f'checkpoint {path} is unreadable ({reason}); trying an older one')
        continue
      self.log(f'resumed from {path} at step {self.current_step}')
      return
    if candidates:
      raise TrainingError(f'no readable checkpoint in {self.manager.directory}; move '
                          'them away to start afresh')

  def save(self) -> str:
    return self.manager.save(checkpoint_number=self.current_step)

  # ---------------------------------------------------------------- the loop

  def sample_images(self, real_seq, num_sequences=_GRID_SEQUENCES):
    """Generated sequences from fixed latents, beside the first real ones."""
    n = min(num_sequences, int(real_seq.shape[0]))
    z = models.sample_latents(tf.constant([self.config.seed, -1], tf.int64), n,
                              self.config.seq_len, self.model_config)
    generated, _ = models.generate_sequence(self.generator, z)
    return image_grid(generated, real_seq[:n])

  def _local(self, batch):
    """The full batch as one tensor, whatever the strategy."""
    values = self.strategy.experimental_local_results(batch)
    return tf.concat(values, axis=0) if len(values) > 1 else values[0]

  def train(self) -> dict:
    """Trains up to `config.steps`; returns the last metrics.

    Raises:
      TrainingError: A loss became NaN or Inf (nothing is saved for that step), or
        no checkpoint in the logdir is readable.
      KeyboardInterrupt: After saving a checkpoint (Ctrl-C or SIGTERM).
    """
    config = self.config
    self.restore()
    self._save_run_config()
    dataset = data.sequence_dataset(config.tfrecords, config.batch_size, config.seq_len,
                                    seed=config.seed, manifest=self.manifest)
    iterator = iter(self.strategy.experimental_distribute_dataset(dataset))
    writer = tf.summary.create_file_writer(os.path.join(config.logdir, 'train'))
    profile = config.profile_range()
    profiling = False  # Only a trace that was started is stopped (resumes skip it).
    metrics, batch = {}, None
    window_start, window_steps, wait_s = time.monotonic(), 0, 0.0
    last_saved = self.current_step
    try:
      while self.current_step < config.steps:
        step = self.current_step
        if profile and step == profile[0]:
          tf.profiler.experimental.start(os.path.join(config.logdir, 'train'))
          profiling = True
        fetch_start = time.monotonic()
        batch = next(iterator)
        wait_s += time.monotonic() - fetch_start
        metrics = self.train_step(batch)
        for name, value in metrics.items():
          if not math.isfinite(value):
            raise TrainingError(
                f'step {step + 1}: {name} is {value}; stopped without saving it. The '
                f'last good checkpoint is {self.manager.latest_checkpoint}')
        window_steps += 1
        step += 1
        if profiling and step == profile[1]:
          tf.profiler.experimental.stop()
          profiling = False
          self.log(f'profiler trace of steps {profile[0]}..{profile[1] - 1} written to '
                   f'{os.path.join(config.logdir, "train", "plugins", "profile")}')
        if step % config.summary_every == 0 or step == config.steps:
          elapsed = time.monotonic() - window_start
          metrics['steps_per_s'] = window_steps / elapsed
          metrics['examples_per_s'] = (window_steps * config.batch_size *
                                       config.seq_len / elapsed)
          metrics['input_wait_fraction'] = wait_s / elapsed
          with writer.as_default(step=step):
            for name, value in metrics.items():
              tf.summary.scalar(name, value)
          self.log(f'step {step}: ' + ', '.join(
              f'{k} {v:.4g}' for k, v in sorted(metrics.items())))
          window_start, window_steps, wait_s = time.monotonic(), 0, 0.0
        if step % config.image_every == 0 or step == config.steps:
          with writer.as_default(step=step):
            tf.summary.image('generated_top_real_bottom',
                             self.sample_images(self._local(batch)))
        if step % config.save_every == 0:
          self.save()
          last_saved = step
    except KeyboardInterrupt:
      if self.current_step > last_saved:
        self.log(f'interrupted: saved {self.save()}')
      raise
    finally:
      if profiling:
        tf.profiler.experimental.stop()
      writer.flush()
    if self.current_step > last_saved:
      self.save()
    if batch is not None:
      png = os.path.join(config.logdir, 'samples.png')
      tf.io.write_file(png, tf.io.encode_png(self.sample_images(self._local(batch))[0]))
    return metrics
