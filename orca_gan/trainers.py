"""The GAN trainer: models, optimizers, input position, checkpoint and the compiled step.

As in ddsp (`ddsp/training/trainers.py` beside `train_util.train`), the trainer owns
what a training run is made of and the step that changes it; `train_lib.train` is the
loop around it.

A training step takes a batch of sequences of consecutive spectrograms and walks
through time: at each time step one discriminator update (or `d_steps`) and one
generator update. The LSTM states are carried from one time step to the next and reset
at the start of every batch; the real and the generated stream each keep their own
discriminator state. Gradients do not flow back through earlier time steps (truncated
back-propagation of one step, as in the seed): the incoming state is a constant.

The whole step (every time step, both updates and their optimizer updates, the state
hand-over) is one `tf.function`; `run(n)` runs `n` steps in one call, reading the batch
inside it, so Python is entered once per `n` steps. With XLA the per-replica step is
compiled whole. Metrics are summed on the device and reach Python only when
`pop_metrics` is called.

Everything that decides what is learned next is in the checkpoint: weights, optimizer
slots, the loss scale, the step (latents are a pure function of `(seed, step)`, see
`models.sample_latents`) and the input pipeline's position. A resumed run therefore
computes what an uninterrupted one would have.
"""

import contextlib
import dataclasses
import glob
import json
import os
import shutil
import tempfile

import keras
import tensorflow as tf

from orca_gan import configs
from orca_gan import data
from orca_gan import fileio
from orca_gan import losses
from orca_gan import models
from orca_gan import records

# Fields that define what is learned and in which order: a resumed run must keep them.
_FIXED_ON_RESUME = ('model', 'transform', 'loss', 'data')
_DATA_FIELDS = ('batch_size', 'seq_len', 'd_steps', 'seed', 'shuffle_buffer',
                'interleave_cycle', 'augment', 'random_phase')
# Losses whose non-finite value stops a run. Gradients are left out: under mixed
# precision an overflowing gradient is the loss-scale optimizer's to handle.
_CHECKED = ('d_loss', 'g_loss')
# Checkpointed objects that only a flag adds: a run begun without the flag resumes
# with it, the object starting afresh as this says.
_STARTS_AFRESH = {
    'generator_ema': 'generator average (--g_ema was off): it starts from the '
                     'restored generator',
    'augment_p': 'adapted chance of augmentation (--augment_target was off): it starts '
                 'from --augment_p',
    'lecam_history': 'history of discriminator scores (--lecam_weight was 0): the '
                     'regularization starts after one step',
}
# Seed streams folded into (seed, step) besides the generator's latents.
_PENALTY_STREAM = 1
_AUGMENT_STREAM = 2
_EXTRA_LATENTS_STREAM = 3
# --augment: gains are uniform in +-this many image units (0.1 = 5 dB at the default
# -100..0 dB range).
_AUGMENT_GAIN = 0.1
# --augment_target: the chance of augmentation moves by at most 1 / this a step, so it
# can cross 0..1 in this many steps (32,000 real windows at the default batch; ADA
# takes 500,000 images, about 2 % of its runs: ours are shorter).
_AUGMENT_P_STEPS = 500
# --lecam_weight: the decay of the moving averages of the discriminator's mean logits,
# per time step (Tseng et al. 2021: per discriminator update).
_LECAM_DECAY = 0.99
# Sequences (of --seq_len windows) whose batch statistics the exports use: with --g_ema
# the average generator's batch norm (`GanTrainer.generator_for_use`), with
# --minibatch_stddev the discriminator's (`GanTrainer.discriminator_stddev`).
STANDING_SEQUENCES = 256


def augment(images, shift, gain):
  """Differentiable augmentation of what the discriminator sees (DiffAugment, Zhao et
  al. 2020): each window rolled in time and made louder or quieter.

  Args:
    images: [b, H, W, 1] in [-1, 1].
    shift: int32 [b], columns to roll each window by (circularly, along time; a
      negative shift rolls the other way).
    gain: float32 [b], added to each window's values, then clipped to [-1, 1].

  Returns:
    [b, H, W, 1], differentiable w.r.t. `images`.
  """
  width = images.shape[2]
  columns = tf.math.floormod(tf.range(width)[None, :] + shift[:, None], width)
  rolled = tf.gather(images, columns, axis=2, batch_dims=1)
  return tf.clip_by_value(rolled + tf.cast(gain, images.dtype)[:, None, None, None],
                          -1.0, 1.0)


class TrainingError(RuntimeError):
  """Training cannot start or go on; the message says why, on one line."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Flags of bin/train map 1:1 to these fields. Defaults fit a laptop CPU.

  scrygan's GPU recipe: batch_size 256, seq_len 12, z_dim 128, g/d_lstm_units 256,
  gf_dim 256, df_dim 64 (see README).
  """
  tfrecords: str = configs.flag('tfrecords', 'Folder written by make_tfrecords.')
  logdir: str = configs.flag('runs/orca_gan',
      'Checkpoints, TensorBoard summaries, config.json and samples.png go here; '
      'rerunning with the same --logdir resumes.')
  export_dir: str = configs.flag('',
      'Where the SavedModels go at the end (default <logdir>/export).')
  image_size: int = configs.flag(0,
      'Expected image size; 0 takes it from the manifest.')
  steps: int = configs.flag(2000,
      'Train until this step (counting earlier runs in --logdir); 0 exports the '
      'untrained models (a baseline for bin/evaluate).')
  batch_size: int = configs.flag(16, 'Sequences per step (global, across devices).')
  seq_len: int = configs.flag(4,
      'Consecutive windows (window_s each, from the manifest) per sequence; one GAN '
      'update per window.')
  z_dim: int = configs.flag(64, 'Latent size.')
  fast_z: int = configs.flag(-1,
      'Latent dims redrawn every time step; the rest are held per sequence. -1: all.')
  g_lstm_units: int = configs.flag(64, 'Generator LSTM units.')
  d_lstm_units: int = configs.flag(64, 'Discriminator LSTM units (the embedding size).')
  gf_dim: int = configs.flag(64, 'Generator width.')
  gf_min: int = configs.flag(1,
      'Fewest channels of a generator feature map (gf_dim halves at every upsampling '
      'down to this floor); 1 = DCGAN, which leaves 4 channels at 64x64 with gf_dim 64.')
  g_upsample: str = configs.flag('transpose',
      'How the generator doubles its maps: transpose (stride-2 transposed convolutions, '
      'DCGAN) or resize (nearest-neighbour upsampling, then a 3x3 convolution; Odena et '
      'al. 2016). Transposed convolutions paint a fixed pattern on an 8-pixel lattice '
      'into every window (benchmarks/README.md).', choices=models.UPSAMPLING)
  g_start_state: str = configs.flag('zeros',
      'Where the generator\'s LSTM starts each sequence: zeros (the seed\'s) or latent '
      '(a learned function of the first latent vector; exports carry it, and their '
      '`generate` signature starts there).', choices=models.START_STATES)
  df_dim: int = configs.flag(16, 'Discriminator width.')
  minibatch_stddev: bool = configs.flag(False,
      'Give the discriminator the batch standard deviation of its last features '
      '(against generator collapse; per replica under --strategy mirrored; not with --loss '
      'wgan_gp).')
  minibatch_stddev_group: int = configs.flag(0,
      'With --minibatch_stddev: windows share the statistic in groups of this many (4 '
      'in StyleGAN), so each window\'s score depends on few others; a multiple of it '
      'must make each replica\'s batch. 0 = one group of the whole batch.')
  g_noise: bool = configs.flag(False,
      'Add per-pixel noise, scaled by a learned strength, to the generated image before '
      'its tanh: a source for the speckle of real spectrograms. The noise is a function '
      'of the latents, so exports stay deterministic.')
  g_noise_init: float = configs.flag(0.0,
      'With --g_noise: the strength a new run starts from (a resumed run keeps its '
      'own); training moves it from there. 0.06 (3 dB) is about the pixel-scale noise '
      'of real windows: a pixel against its 3x3 neighbourhood.')
  g_noise_rate: float = configs.flag(1.0,
      'With --g_noise: how fast its strength learns against the generator\'s other '
      'weights. Adam moves a weight by up to its learning rate a step whatever its '
      'gradient, so at 1 a slight preference of the discriminator takes 0.06 to 0 in '
      'a few hundred steps; 0.1 moves the strength at most --g_lr / 10 a step '
      '(benchmarks/README.md).')
  g_lr: float = configs.flag(2e-4, 'Generator Adam learning rate.')
  d_lr: float = configs.flag(1e-4, 'Discriminator Adam learning rate.')
  beta_1: float = configs.flag(0.5, 'Adam beta_1 for both.')
  loss: str = configs.flag('nonsaturating', 'The GAN loss (orca_gan/losses.py).',
                           choices=tuple(losses.LOSSES))
  d_steps: int = configs.flag(1,
      'Discriminator updates per generator update (its logged metrics are their means).')
  gp_weight: float = configs.flag(10.0, 'Gradient-penalty weight (wgan_gp).')
  r1_weight: float = configs.flag(0.0,
      'Zero-centred gradient penalty on real windows (R1, Mescheder et al. 2018): the '
      'discriminator loss gains r1_weight / 2 x the mean squared norm of its gradient at '
      'the real windows it sees; 0 = off. With --minibatch_stddev the gradients are '
      'those of the summed scores, which couple the windows of a group (as StyleGAN 2).')
  lecam_weight: float = configs.flag(0.0,
      'LeCam regularization (Tseng et al. 2021), for small corpora: the discriminator '
      'loss gains lecam_weight x (mean(relu(D(x) - a_fake)^2) + mean(relu(a_real - '
      'D(G(z)))^2)), where a_real and a_fake are moving averages (decay 0.99 a time step) '
      'of its mean logits of the real and generated windows it sees; 0 = off.')
  g_ema: float = configs.flag(0.0,
      'Decay of an exponential moving average of the generator weights, updated every '
      'step (e.g. 0.995 as configs/cpu.flags; Karras et al. 2018); samples.png and the '
      'export use the average, with batch-norm statistics of its own activations '
      '(standing statistics), and training goes on from the raw weights. 0 = off.')
  export_generator: str = configs.flag('average',
      'With --g_ema, the generator the export holds: average (as samples.png) or raw '
      '(the weights training goes on from). The average draws smoother windows: it '
      'blurs the pixel-scale texture the raw weights paint (benchmarks/README.md). '
      'Rerun a finished run with its --steps and another --export_dir to export the '
      'other one.', choices=('average', 'raw'))
  seed: int = configs.flag(0, 'Seed of latents, data order and initial weights.')
  augment: bool = configs.flag(False,
      'Differentiable augmentation (DiffAugment): every window the discriminator sees, '
      'real or generated, is rolled in time by a random amount and made up to 5 dB '
      'louder or quieter (for small corpora).')
  augment_p: float = configs.flag(1.0,
      'With --augment: the chance that a window is augmented, drawn per window. Below '
      'about 0.8 the generator cannot leave to the augmentation what it should vary '
      'itself, such as where in the window a call sits (Karras et al. 2020). With '
      '--augment_target: the chance a new run starts from (0 allowed there: ADA '
      'starts from no augmentation).')
  augment_shift: float = configs.flag(1.0,
      'With --augment: the farthest a window is rolled in time, as a share of its '
      'width, either way: 1 rolls it anywhere (its position tells nothing), 0.125 is '
      'DiffAugment\'s translation (Zhao et al. 2020).')
  augment_target: float = configs.flag(0.0,
      'With --augment: adapt the chance of augmentation as training goes (ADA, Karras '
      'et al. 2020): every step it moves up while the mean sign of the '
      'discriminator\'s scores of real windows (its overfitting, r_t) is above this '
      'target and down while below, from --augment_p, within 0..--augment_p_max. 0.6 '
      'in ADA; 0 = a fixed chance of --augment_p.')
  augment_p_max: float = configs.flag(0.8,
      'With --augment_target: the most the adapted chance may reach.')
  random_phase: bool = configs.flag(False,
      'Start every training sequence a random number of spectrogram columns into a '
      'stored window instead of at its first column (the windows of a file share one '
      'frame grid, so this is what a window starting that much later holds): W times '
      'as many distinct real windows from the same records, for small corpora. Needs '
      'recordings of --seq_len + 1 windows.')
  shuffle_buffer: int = configs.flag(256,
      'Sequences in the shuffle buffer (memory: this x seq_len windows, also saved in '
      'every checkpoint).')
  interleave_cycle: int = configs.flag(16,
      'Shards (about one tape each) read at once; consecutive sequences come from this '
      'many shards (memory: 16 MiB each).')
  jit_compile: str = configs.flag('auto',
      'XLA for the whole training step (auto: on a GPU only).',
      choices=('auto', 'true', 'false'))
  strategy: str = configs.flag('default',
      'default: one device; mirrored: all local GPUs; multi_worker: all GPUs (or the '
      'CPU) of every worker listed in the TF_CONFIG environment variable.',
      choices=('default', 'mirrored', 'multi_worker'))
  mixed_precision: bool = configs.flag(False,
      'float16 compute (for GPUs); overflowing updates are skipped and counted '
      '(skipped_updates).')
  steps_per_loop: int = configs.flag(1,
      'Training steps per call into TensorFlow (fewer Python round trips; summaries and '
      'saves still happen on their steps).')
  save_every: int = configs.flag(200, 'Steps between checkpoints.')
  summary_every: int = configs.flag(20, 'Steps between scalar summaries and log lines.')
  image_every: int = configs.flag(200, 'Steps between image summaries.')
  profile_steps: str = configs.flag('',
      'START,STOP: profiler trace of these steps for TensorBoard.')
  keep_checkpoints: int = configs.flag(3, 'Checkpoints kept.')

  def __post_init__(self):
    for name in ('steps', 'r1_weight', 'lecam_weight', 'g_noise_init',
                 'minibatch_stddev_group', 'augment_target'):
      if getattr(self, name) < 0:
        raise TrainingError(f'--{name} must be at least 0, got {getattr(self, name)}')
    positive = ('batch_size', 'seq_len', 'd_steps', 'shuffle_buffer', 'interleave_cycle',
                'steps_per_loop', 'save_every', 'summary_every', 'image_every',
                'keep_checkpoints')
    for name in positive:
      if getattr(self, name) < 1:
        raise TrainingError(f'--{name} must be at least 1, got {getattr(self, name)}')
    for name in ('g_lr', 'd_lr', 'g_noise_rate'):
      if not getattr(self, name) > 0:
        raise TrainingError(f'--{name} must be positive, got {getattr(self, name)}')
    configs.check(self, TrainingError)
    if self.augment_target:
      if not 0.0 <= self.augment_p <= 1.0:
        raise TrainingError(f'--augment_p, the chance --augment_target starts from, must '
                            f'be in [0, 1], got {self.augment_p}')
    elif not 0.0 < self.augment_p <= 1.0:
      raise TrainingError(f'--augment_p must be in (0, 1], got {self.augment_p}')
    if not 0.0 <= self.g_ema < 1.0:
      raise TrainingError(f'--g_ema must be in [0, 1), got {self.g_ema}')
    if self.augment_p != 1.0 and not self.augment:
      raise TrainingError('--augment_p is the chance of --augment, which is off')
    if not self.augment_target < 1.0:
      raise TrainingError(f'--augment_target is a mean sign below 1, got '
                          f'{self.augment_target}')
    if not 0.0 < self.augment_shift <= 1.0:
      raise TrainingError(f'--augment_shift must be in (0, 1], got {self.augment_shift}')
    if self.augment_shift != 1.0 and not self.augment:
      raise TrainingError('--augment_shift is how far --augment rolls, which is off')
    if self.augment_target and not self.augment:
      raise TrainingError('--augment_target adapts the chance of --augment, which is off')
    if self.augment_p_max != 0.8 and not self.augment_target:
      raise TrainingError('--augment_p_max bounds the chance --augment_target adapts, '
                          'which is off')
    if self.augment_target and not 0.0 < self.augment_p_max <= 1.0:
      raise TrainingError(f'--augment_p_max must be in (0, 1], got {self.augment_p_max}')
    if self.augment_target and self.augment_p > self.augment_p_max:
      raise TrainingError(f'--augment_target would start the chance at --augment_p '
                          f'({self.augment_p}), above --augment_p_max '
                          f'({self.augment_p_max}): pass --augment_p=0 to start from no '
                          f'augmentation, as ADA does, or raise --augment_p_max')
    if self.r1_weight and self.loss == 'wgan_gp':
      raise TrainingError('--r1_weight with --loss wgan_gp: the critic has its gradient '
                          'penalty already (--gp_weight)')
    if self.minibatch_stddev_group and not self.minibatch_stddev:
      raise TrainingError('--minibatch_stddev_group is the group size of '
                          '--minibatch_stddev, which is off')
    if self.g_noise_init and not self.g_noise:
      raise TrainingError('--g_noise_init is the starting strength of --g_noise, which '
                          'is off')
    if self.g_noise_rate != 1.0 and not self.g_noise:
      raise TrainingError('--g_noise_rate is how fast the strength of --g_noise learns, '
                          'which is off')
    if self.g_noise and self.fast_z == 0:
      raise TrainingError('--g_noise draws its noise from the latents redrawn every '
                          'step, and --fast_z 0 redraws none; use --fast_z above 0')
    if self.minibatch_stddev and self.loss == 'wgan_gp':
      raise TrainingError('--minibatch_stddev couples the rows of a batch, which the '
                          "gradient penalty of --loss wgan_gp must not; use another loss")
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
        gf_dim=self.gf_dim, gf_min=self.gf_min, df_dim=self.df_dim,
        minibatch_stddev=self.minibatch_stddev,
        stddev_group=self.minibatch_stddev_group, noise_inputs=self.g_noise,
        noise_rate=self.g_noise_rate, upsample=self.g_upsample,
        start_state=self.g_start_state)

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


@contextlib.contextmanager
def _dtype_policy(name: str):
  """Keras reads the global dtype policy when a layer is built: set it for that only."""
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy(name)
  try:
    yield
  finally:
    keras.mixed_precision.set_global_policy(previous)


@dataclasses.dataclass(frozen=True)
class WorkerTask:
  """This process's place in a multi-worker cluster (TF_CONFIG)."""
  type: str   # 'chief' or 'worker'.
  index: int
  num_workers: int  # Chief included.
  has_chief: bool

  @property
  def is_chief(self) -> bool:
    """The chief writes checkpoints, summaries, samples and the export: the task
    'chief', or worker 0 of a cluster without one."""
    return self.type == 'chief' or (self.index == 0 and not self.has_chief)


def worker_task(strategy: str) -> WorkerTask | None:
  """This process's task under --strategy multi_worker (None for the other strategies).

  Raises:
    configs.UsageError: TF_CONFIG is missing or does not describe this process's task
      in a cluster of chief and workers; the message says what is wrong.
  """
  if strategy != 'multi_worker':
    return None
  fail = configs.UsageError
  text = os.environ.get('TF_CONFIG')
  if not text:
    raise fail('--strategy multi_worker needs the TF_CONFIG environment variable: '
               '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", '
               '"index": N}}')
  try:
    spec = json.loads(text)
  except json.JSONDecodeError as e:
    raise fail(f'TF_CONFIG is not JSON ({e})') from None
  cluster = spec.get('cluster') if isinstance(spec, dict) else None
  task = spec.get('task') if isinstance(spec, dict) else None
  if not isinstance(cluster, dict) or not isinstance(task, dict):
    raise fail('TF_CONFIG needs a "cluster" and a "task" object')
  others = sorted(set(cluster) - {'chief', 'worker'})
  if others:
    raise fail(f'TF_CONFIG: cluster jobs {others} are not used by orca_gan (only chief '
               'and worker)')
  for job, addresses in cluster.items():
    if (not isinstance(addresses, list) or not addresses
        or not all(isinstance(a, str) and ':' in a for a in addresses)):
      raise fail(f'TF_CONFIG: cluster "{job}" must be a list of "host:port" addresses')
  kind, index = task.get('type'), task.get('index', 0)
  if kind not in cluster:
    raise fail(f'TF_CONFIG: task type {kind!r} is not a job of the cluster '
               f'({", ".join(sorted(cluster))})')
  if not isinstance(index, int) or not 0 <= index < len(cluster[kind]):
    raise fail(f'TF_CONFIG: task index {index!r} is not in 0..{len(cluster[kind]) - 1} '
               f'of "{kind}"')
  return WorkerTask(type=str(kind), index=index,
                    num_workers=sum(len(a) for a in cluster.values()),
                    has_chief='chief' in cluster)


def _make_strategy(name: str):
  if name == 'mirrored':
    return tf.distribute.MirroredStrategy()
  if name == 'multi_worker':
    return tf.distribute.MultiWorkerMirroredStrategy()
  return tf.distribute.get_strategy()


class GanTrainer:
  """Owns everything a training run is made of; `run(n)` trains `n` steps.

  Under --strategy multi_worker every worker runs the same steps on its slice of the
  global batch. The chief writes to --logdir; every other worker writes the same files
  (saving may take part in collective operations) to a temporary folder of its own,
  `write_dir`, which `close` removes. Every worker restores from the chief's
  checkpoints.
  """

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
    if data.sequence_span(config.seq_len, config.random_phase) > longest:
      raise TrainingError(
          f'--seq_len {config.seq_len} is longer than the longest recording in '
          f'{config.tfrecords} ({longest} windows'
          + (', less the one more that --random_phase reads)' if config.random_phase
             else ')'))
    try:
      self.model_config = config.model_config(image_size)
    except ValueError as e:
      raise TrainingError(str(e)) from e
    self._check_run_config()
    _check_memory(config, self.model_config)

    self.task = worker_task(config.strategy)
    self.is_chief = self.task is None or self.task.is_chief
    self.strategy = _make_strategy(config.strategy)
    self.replicas = self.strategy.num_replicas_in_sync
    if config.batch_size % self.replicas:
      raise TrainingError(f'--batch_size {config.batch_size} must be a multiple of the '
                          f'{self.replicas} replicas')
    group = config.minibatch_stddev_group
    if group and (config.batch_size // self.replicas) % group:
      raise TrainingError(f'--minibatch_stddev_group {group} must divide the batch of '
                          f'each replica ({config.batch_size // self.replicas})')
    self.jit = self._choose_xla()
    self.generator_loss, self.discriminator_loss = losses.LOSSES[config.loss]
    self.metric_names = ('d_loss', 'g_loss', 'gradient_penalty', 'd_real', 'd_fake',
                         'd_real_logit', 'd_fake_logit', 'd_real_sign', 'd_grad_norm',
                         'g_grad_norm', 'skipped_updates'
                         ) + (('lecam_penalty',) if config.lecam_weight else ())

    policy = 'mixed_float16' if config.mixed_precision else 'float32'
    with self.strategy.scope(), _dtype_policy(policy):
      keras.utils.set_random_seed(config.seed)  # Reproducible initial weights.
      self.generator = models.Generator(self.model_config)
      self.discriminator = models.Discriminator(self.model_config)
      # Build the variables with one call before anything restores into them.
      mc = self.model_config
      z = tf.zeros([1, mc.z_dim])
      self.generator(z, self.generator.start_state(z))
      self.discriminator(tf.zeros([1, image_size, image_size, 1]),
                         self.discriminator.initial_state(1))
      if self.generator.noise_strength is not None:  # --g_noise
        self.generator.noise_strength.assign(config.g_noise_init)
      self.g_optimizer = self._optimizer(config.g_lr)
      self.d_optimizer = self._optimizer(config.d_lr)
      # Built inside the scope before the first distributed step: otherwise TF 2.17
      # fails under MirroredStrategy ("You must feed a value for placeholder tensor").
      self.g_optimizer.build(self.generator.trainable_variables)
      self.d_optimizer.build(self.discriminator.trainable_variables)
      # Two optimizers: their `iterations` do not count training steps; this does.
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
      self.seed = tf.Variable(config.seed, dtype=tf.int64, trainable=False, name='seed')
      self.skipped_updates = tf.Variable(0, dtype=tf.int64, trainable=False,
                                         name='skipped_updates')
      # The chance that --augment augments a window: adapted with --augment_target.
      self.augment_p = tf.Variable(config.augment_p, trainable=False, name='augment_p')
      # --lecam_weight: moving averages of the mean real and generated logits, and of
      # 1 (their weight so far, which removes the bias of starting at 0).
      self.lecam_history = tf.Variable(tf.zeros([3]), trainable=False,
                                       name='lecam_history')
      # On-device metric sums since the last `pop_metrics`, and the first step whose
      # losses were not finite (-1: none) with their values.
      self._sums = tf.Variable(tf.zeros([len(self.metric_names)]), trainable=False)
      self._count = tf.Variable(0.0, trainable=False)
      self._bad_step = tf.Variable(-1, dtype=tf.int64, trainable=False)
      self._bad_values = tf.Variable(tf.zeros([len(_CHECKED)]), trainable=False)
      # Built last: the other models' initial weights do not depend on it.
      self.generator_ema = None
      if config.g_ema:
        self.generator_ema = models.Generator(self.model_config, name='generator_ema')
        self.generator_ema(z, self.generator_ema.start_state(z))
        self._reset_generator_ema()
    # generator_for_use(): the copy, and the step whose average it holds.
    self._generator_average: models.Generator | None = None
    self._generator_average_step: int | None = None

    # The global batch, read on the host inside the step; each replica takes its
    # slice. A plain iterator (unlike a distributed one) can be checkpointed.
    self.dataset = self._real_batches(dequantize=False)
    self.iterator = iter(self.dataset)
    self._checkpointed = dict(
        step=self.step, seed=self.seed, skipped_updates=self.skipped_updates,
        generator=self.generator, discriminator=self.discriminator,
        g_optimizer=self.g_optimizer, d_optimizer=self.d_optimizer,
        data=self.iterator)
    if self.generator_ema is not None:
      self._checkpointed['generator_ema'] = self.generator_ema
    if config.augment_target:
      self._checkpointed['augment_p'] = self.augment_p
    if config.lecam_weight:
      self._checkpointed['lecam_history'] = self.lecam_history
    self.checkpoint = tf.train.Checkpoint(**self._checkpointed)
    self.write_dir = (config.logdir if self.is_chief
                      else tempfile.mkdtemp(prefix='orca_gan-worker-'))
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, os.path.join(self.write_dir, 'checkpoints'),
        max_to_keep=config.keep_checkpoints)
    # Every worker resumes from the chief's checkpoints.
    self.chief_manager = (self.manager if self.is_chief else tf.train.CheckpointManager(
        self.checkpoint, os.path.join(config.logdir, 'checkpoints'),
        max_to_keep=config.keep_checkpoints))
    self._replica_step = (tf.function(self._replica_step_fn, jit_compile=True)
                          if self.jit else self._replica_step_fn)
    self._run = tf.function(self._run_fn)
    self._stops_anywhere = tf.function(self._stops_anywhere_fn)

  def _choose_xla(self) -> bool:
    """XLA for the per-replica step: on request, or (auto) on a GPU, one replica."""
    setting = self.config.jit_compile
    if self.config.strategy != 'default' and use_xla(setting):
      # TensorFlow compiles a replica function that all-reduces (synchronized batch
      # norm, gradient aggregation) only without merge_call, which MirroredStrategy
      # uses unless every device is a GPU; that path cannot be tested here.
      if setting == 'true':
        raise TrainingError(
            f'--jit_compile=true does not work with --strategy={self.config.strategy}: '
            'the synchronized batch norm and the gradient all-reduce run inside the '
            'step, which TensorFlow cannot compile there; use --jit_compile=false')
      self.log(f'XLA off under --strategy={self.config.strategy} (the step all-reduces '
               'inside; TensorFlow does not compile that here)')
      return False
    return use_xla(setting)

  def generator_for_use(self) -> models.Generator:
    """The generator that samples: the raw one or, with --g_ema, the average with
    batch-norm statistics of its own (`models.standing_statistics`), computed from
    `STANDING_SEQUENCES` sequences of fixed latents, in a copy outside the checkpoint
    and the distribution strategy; computed once per step (the last step's picture,
    samples.png and the export share it)."""
    if self.generator_ema is None:
      return self.generator
    step = self.current_step
    if self._generator_average is not None and self._generator_average_step == step:
      return self._generator_average
    config = self.config
    if self._generator_average is None:
      self._generator_average = models.Generator(self.model_config,
                                                 name='generator_average')
      z = tf.zeros([1, self.model_config.z_dim])
      self._generator_average(z, self._generator_average.start_state(z))
    for copy, average in zip(self._generator_average.weights, self.generator_ema.weights):
      copy.assign(tf.convert_to_tensor(average))
    models.standing_statistics(self._generator_average, (
        models.sample_latents(tf.constant([config.seed, -2 - i], tf.int64),
                              config.batch_size, config.seq_len, self.model_config)
        for i in range(self._standing_batches)))
    self._generator_average_step = step
    return self._generator_average

  def generator_to_export(self) -> models.Generator:
    """The generator --export_generator names (the raw weights without --g_ema)."""
    return (self.generator if self.config.export_generator == 'raw'
            else self.generator_for_use())

  def discriminator_stddev(self) -> float | None:
    """With --minibatch_stddev, what exports use in place of the batch's statistic.

    The mean of the statistic over `STANDING_SEQUENCES` real sequences of the training
    records, from a reader of its own (the training input position does not move), in
    batches and groups as one replica sees them in training
    (`models.real_batch_stddev`). None without --minibatch_stddev.
    """
    config = self.config
    if not config.minibatch_stddev:
      return None
    real = self._real_batches().take(self._standing_batches)
    group = config.minibatch_stddev_group or config.batch_size // self.replicas
    return models.real_batch_stddev(self.discriminator, real, group)

  @property
  def _standing_batches(self) -> int:
    """Global batches that hold `STANDING_SEQUENCES` sequences."""
    return -(-STANDING_SEQUENCES // self.config.batch_size)

  def _real_batches(self, dequantize: bool = True) -> tf.data.Dataset:
    """A new pipeline of the global training batches, from their first."""
    config = self.config
    return data.sequence_dataset(
        config.tfrecords, config.batch_size, config.seq_len, seed=config.seed,
        shuffle_buffer=config.shuffle_buffer, cycle_length=config.interleave_cycle,
        manifest=self.manifest, dequantize=dequantize, random_phase=config.random_phase)

  def _reset_generator_ema(self) -> None:
    """Starts the average at the generator's current weights."""
    assert self.generator_ema is not None
    for average, value in zip(self.generator_ema.weights, self.generator.weights):
      average.assign(value)

  @property
  def current_step(self) -> int:
    """The step counter, read from the device (waits for queued steps)."""
    return int(self.step.numpy())

  def _optimizer(self, learning_rate):
    optimizer = keras.optimizers.Adam(learning_rate, beta_1=self.config.beta_1)
    if self.config.mixed_precision:
      optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer

  # ---------------------------------------------------------------- run config

  def run_description(self) -> dict:
    """What config.json holds: the flags, and what a resumed run must keep."""
    return {
        'train': dataclasses.asdict(self.config),
        'model': dataclasses.asdict(self.model_config),
        'transform': self.manifest['transform'],
        'loss': self.config.loss,
        'data': dict({k: getattr(self.config, k) for k in _DATA_FIELDS},
                     shards=[[s['path'], s['windows']]
                             for s in self.manifest['shards']]),
    }

  def _check_run_config(self) -> None:
    """Refuses to resume a run with flags or records that change what is learned."""
    path = os.path.join(self.config.logdir, 'config.json')
    if not os.path.exists(path):
      return
    try:
      with open(path) as f:
        saved = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
      raise TrainingError(f'{path}: unreadable ({e}); use a new --logdir') from e
    current = self.run_description()
    if isinstance(saved.get('model'), dict):
      # Model fields added since the run started hold their default, which is what
      # the run was built with.
      saved['model'] = {**dataclasses.asdict(models.ModelConfig()), **saved['model']}
    if isinstance(saved.get('data'), dict):
      # So do data fields added since.
      saved['data'] = {**{k: getattr(TrainConfig, k) for k in _DATA_FIELDS},
                       **saved['data']}
    for key in _FIXED_ON_RESUME:
      if key not in saved and key == 'data':
        continue  # Written before the input position was saved.
      if saved.get(key) != current[key]:
        before = saved.get(key) or {}
        # Settings on either side: a run of a newer orca_gan may hold some this
        # version does not know.
        changed = sorted(k for k in set(current[key]) | set(before)
                         if before.get(k) != current[key].get(k)
                         ) if isinstance(current[key], dict) else [key]
        what = ', '.join('the shards of --tfrecords' if k == 'shards' else k
                         for k in changed)
        raise TrainingError(
            f'--logdir {self.config.logdir} holds a run with other {key} settings '
            f'({what}); use the same flags and records or a new --logdir')

  def save_run_config(self) -> None:
    os.makedirs(self.write_dir, exist_ok=True)
    fileio.write_json_atomic(os.path.join(self.write_dir, 'config.json'),
                              self.run_description())

  def close(self) -> None:
    """Removes what a worker other than the chief wrote."""
    if not self.is_chief:
      shutil.rmtree(self.write_dir, ignore_errors=True)

  # ---------------------------------------------------------------- the step

  def _seed(self, stream: int) -> tf.Tensor:
    """A stateless seed for this step's draws of one kind."""
    base = tf.stack([self.seed, self.step])
    return tf.random.experimental.stateless_fold_in(base, stream) if stream else base

  def _noise(self) -> dict:
    """This step's random draws for the global batch, a function of (seed, step).

    Drawn outside the XLA-compiled replica step: XLA's stateless generators give other
    numbers than TensorFlow's kernels, and compiled or not, a run must draw the same.
    """
    config = self.config
    z = [models.sample_latents(self._seed(stream), config.batch_size, config.seq_len,
                               self.model_config)
         for stream in [0] + [_EXTRA_LATENTS_STREAM + j
                              for j in range(config.d_steps - 1)]]
    penalty = tf.random.stateless_uniform(
        [config.seq_len, config.d_steps, config.batch_size, 1, 1, 1],
        self._seed(_PENALTY_STREAM), alg=models.RNG_ALGORITHM)
    noise = {'z': z, 'penalty_weights': penalty}
    if config.augment:
      # [seq_len, update (d_steps D updates, then G), real/generated, batch].
      shape = [config.seq_len, config.d_steps + 1, 2, config.batch_size]
      seed = self._seed(_AUGMENT_STREAM)
      width = self.model_config.image_size
      # Any roll, or up to that many columns either way.
      most = round(config.augment_shift * width)
      low, high = (0, width) if most >= width else (-most, most + 1)
      noise['shift'] = tf.random.stateless_uniform(
          shape, tf.random.experimental.stateless_fold_in(seed, 0), low, high,
          tf.int32, alg=models.RNG_ALGORITHM)
      noise['gain'] = tf.random.stateless_uniform(
          shape, tf.random.experimental.stateless_fold_in(seed, 1), -_AUGMENT_GAIN,
          _AUGMENT_GAIN, alg=models.RNG_ALGORITHM)
      # A window left as it is gets no shift and no gain.
      kept = tf.random.stateless_uniform(
          shape, tf.random.experimental.stateless_fold_in(seed, 2),
          alg=models.RNG_ALGORITHM) >= self.augment_p
      noise['shift'] = tf.where(kept, 0, noise['shift'])
      noise['gain'] = tf.where(kept, 0.0, noise['gain'])
    return noise

  def _lecam_anchors(self) -> tf.Tensor:
    """[a_real, a_fake, weight] of --lecam_weight: the averages of the discriminator's
    mean logits over the steps so far, and their weight (0 before the first step)."""
    history = self.lecam_history.value()
    weight = history[2]
    return tf.concat([tf.math.divide_no_nan(history[:2], weight), [weight]], 0)

  def _replica_slice(self, global_value, axis=0):
    """This replica's share of a global batch (along `axis`)."""
    if self.replicas == 1:
      return global_value
    context = tf.distribute.get_replica_context()
    local = self.config.batch_size // self.replicas
    first = tf.cast(context.replica_id_in_sync_group, tf.int32) * local
    index = [slice(None)] * axis + [slice(first, first + local)]
    return global_value[tuple(index)]

  def _apply(self, optimizer, grads, variables):
    """Applies (scaled) gradients; returns their unscaled norm and whether applied.

    Under mixed precision the loss-scale optimizer skips an update whose gradients
    overflowed and halves its scale. The decision must be the same on every replica
    (Keras takes it from one replica's local gradients), so an overflow anywhere
    poisons the gradients everywhere. The norm is that of the gradient of this
    replica's share of the loss, scaled to the global mean (one all-reduce fewer).
    """
    norm = tf.linalg.global_norm(grads) * float(self.replicas)
    applied = tf.constant(True)
    if self.config.mixed_precision:
      norm /= tf.cast(optimizer.dynamic_scale, norm.dtype)  # Before apply changes it.
      applied = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
      if self.replicas > 1:
        context = tf.distribute.get_replica_context()
        overflowed = context.all_reduce(tf.distribute.ReduceOp.SUM,
                                        1.0 - tf.cast(applied, tf.float32))
        applied = overflowed < 0.5
        poison = tf.where(applied, 0.0, float('nan'))
        grads = [g + tf.cast(poison, g.dtype) for g in grads]
    optimizer.apply_gradients(zip(grads, variables))
    return norm, applied

  def _scaled(self, loss, optimizer):
    """The loss whose gradient the optimizer expects: per replica, loss-scaled."""
    scaled = loss / self.replicas  # The optimizer sums gradients over replicas.
    if self.config.mixed_precision:
      scaled = optimizer.scale_loss(scaled)
    return scaled

  def _d_update(self, real, fake, d_real_state, d_fake_state, penalty_weights,
                lecam_anchors):
    """One discriminator update; returns metrics and both advanced states.

    `lecam_anchors`: [a_real, a_fake, weight] of --lecam_weight (None when it is 0),
    the regularization off while the weight is 0 (no history yet).
    """
    with tf.GradientTape() as tape:
      real_logits, _, new_real_state = self.discriminator(real, d_real_state,
                                                          training=True)
      fake_logits, _, new_fake_state = self.discriminator(fake, d_fake_state,
                                                          training=True)
      loss = self.discriminator_loss(real_logits, fake_logits)
      penalty = tf.constant(0.0)

      def in_real_context(x):
        """Logits of `x` judged in the context of the real stream (the penalties')."""
        return self.discriminator(x, d_real_state, training=True)[0]

      if self.config.loss == 'wgan_gp':
        penalty = losses.gradient_penalty(in_real_context, real, fake, penalty_weights)
        loss += self.config.gp_weight * penalty
      if self.config.r1_weight:
        penalty = losses.r1_penalty(in_real_context, real)
        loss += self.config.r1_weight / 2 * penalty
      if self.config.lecam_weight:
        anchor_real, anchor_fake, weight = tf.unstack(lecam_anchors)
        lecam = tf.where(weight > 0.0, losses.lecam_penalty(
            real_logits, fake_logits, anchor_real, anchor_fake), 0.0)
        loss += self.config.lecam_weight * lecam
      scaled = self._scaled(loss, self.d_optimizer)
    variables = self.discriminator.trainable_variables
    norm, applied = self._apply(self.d_optimizer,
                                tape.gradient(scaled, variables), variables)
    metrics = {
        'd_loss': loss, 'gradient_penalty': penalty,
        'd_real': tf.reduce_mean(tf.sigmoid(real_logits)),
        'd_fake': tf.reduce_mean(tf.sigmoid(fake_logits)),
        'd_real_logit': tf.reduce_mean(real_logits),
        'd_fake_logit': tf.reduce_mean(fake_logits),
        # ADA's overfitting heuristic r_t: 1 when every real window scores as real.
        'd_real_sign': tf.reduce_mean(tf.sign(real_logits)),
    }
    if self.config.lecam_weight:
      metrics['lecam_penalty'] = lecam
    return metrics, norm, applied, new_real_state, new_fake_state

  def _fake_without_statistics(self, z, g_state):
    """Generator output in training mode that leaves the batch-norm averages alone."""
    generator = self.generator
    (images, _), _ = generator.stateless_call(
        [v.value for v in generator.trainable_variables],
        [v.value for v in generator.non_trainable_variables],
        z, g_state, training=True)
    return images

  def _replica_step_fn(self, stored_batches, noise):
    """One training step on this replica; returns metrics summed over time steps.

    Args:
      stored_batches: `d_steps` global batches of stored windows, each
        [batch_size, seq_len, H, W]. The last one is the real stream the generator is
        trained against; the others give each extra discriminator update fresh data.
      noise: `_noise()` of this step, for the global batch.
    """
    config = self.config
    reals = [self._replica_slice(data.to_model_input(b)) for b in stored_batches]
    z, *extra_z = [self._replica_slice(z) for z in noise['z']]
    penalty_weights = self._replica_slice(noise['penalty_weights'], axis=2)
    b = tf.shape(reals[0])[0]
    # The averages move only between steps (`_run_fn`).
    lecam_anchors = self._lecam_anchors() if config.lecam_weight else None
    if config.augment:
      shifts, gains = (self._replica_slice(noise[k], axis=3) for k in ('shift', 'gain'))

    def seen(images, t, update, kind):
      """What the discriminator sees of `images` in this update (kind 0 real, 1 fake)."""
      if not config.augment:
        return images
      return augment(images, shifts[t, update, kind], gains[t, update, kind])

    def g_state_at(t, carried):
      """The generator state step `t` starts from, on the generator's tape.

      A learned start state (--g_start_state latent) is computed again on the tape of
      the first step, so that it is trained; later steps carry the state as a constant.
      """
      if self.generator.start is None:
        return carried
      if isinstance(t, int):  # Unrolled.
        return self.generator.start_state(z[:, 0]) if t == 0 else carried
      return tuple(tf.where(t == 0, start, state) for start, state in
                   zip(self.generator.start_state(z[:, 0]), carried))

    def time_step(t, carry):
      g_state, d_fake_state, d_real_states, sums = carry
      sums = dict(sums)
      d_real_states = list(d_real_states)
      with tf.GradientTape() as g_tape:
        g_state = g_state_at(t, g_state)
        # The generator runs once per time step in training mode (batch-norm averages
        # updated once); the discriminator updates see it as a constant.
        fake, new_g_state = self.generator(z[:, t], g_state, training=True)
      for j in range(config.d_steps):
        last = j == config.d_steps - 1
        d_fake = (fake if last else
                  self._fake_without_statistics(extra_z[j][:, t], g_state))
        d_metrics, d_norm, d_applied, d_real_states[j], new_fake_state = (
            self._d_update(seen(reals[j][:, t], t, j, 0),
                           seen(tf.stop_gradient(d_fake), t, j, 1), d_real_states[j],
                           d_fake_state, penalty_weights[t, j], lecam_anchors))
        sums['skipped_updates'] += 1.0 - tf.cast(d_applied, tf.float32)
        # The discriminator's metrics (and so ADA's r_t and LeCam's averages) are the
        # means over its updates of the time step. Norms of skipped updates are
        # infinite: they count as 0 (see skipped_updates).
        d_metrics['d_grad_norm'] = tf.where(d_applied, d_norm, 0.0)
        for name, value in d_metrics.items():
          sums[name] += tf.cast(value, tf.float32) / config.d_steps
      with g_tape:
        fake_logits, _, _ = self.discriminator(seen(fake, t, config.d_steps, 1),
                                               d_fake_state, training=True)
        g_loss = self.generator_loss(fake_logits)
        scaled = self._scaled(g_loss, self.g_optimizer)
      variables = self.generator.trainable_variables
      g_norm, g_applied = self._apply(self.g_optimizer,
                                      g_tape.gradient(scaled, variables), variables)
      sums['skipped_updates'] += 1.0 - tf.cast(g_applied, tf.float32)
      sums['g_loss'] += g_loss
      sums['g_grad_norm'] += tf.where(g_applied, g_norm, 0.0)
      return new_g_state, new_fake_state, tuple(d_real_states), sums

    carry = (self.generator.start_state(z[:, 0]), self.discriminator.initial_state(b),
             tuple(self.discriminator.initial_state(b) for _ in reals),
             {name: tf.constant(0.0) for name in self.metric_names})
    if self.replicas == 1 and self.config.strategy != 'multi_worker':
      # A symbolic loop: the graph holds one time step, so memory, tracing and XLA
      # compilation do not grow with seq_len. One iteration at a time: each reads the
      # weights the previous one wrote.
      _, carry = tf.while_loop(
          lambda t, _: t < config.seq_len, lambda t, c: (t + 1, time_step(t, c)),
          (tf.constant(0), carry), parallel_iterations=1)
    else:
      # Unrolled: MirroredStrategy (and the multi-worker one) all-reduce through
      # merge_call, which TensorFlow does not allow inside a loop body.
      for t in range(config.seq_len):
        carry = time_step(t, carry)
    return carry[-1]

  def _run_fn(self, num_steps):
    """`num_steps` training steps; adds their metrics to the on-device sums."""
    seq_len = float(self.config.seq_len)
    for _ in tf.range(num_steps):
      stored = tuple(next(self.iterator) for _ in range(self.config.d_steps))
      sums = self.strategy.run(self._replica_step, args=(stored, self._noise()))
      sums = {k: self.strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
              for k, v in sums.items()}
      skipped = sums['skipped_updates']
      values = tf.stack([sums[k] if k == 'skipped_updates' else sums[k] / seq_len
                         for k in self.metric_names])
      self._sums.assign_add(values)
      self._count.assign_add(1.0)
      self.skipped_updates.assign_add(tf.cast(tf.round(skipped), tf.int64))
      checked = tf.stack([sums[k] / seq_len for k in _CHECKED])
      first_bad = tf.logical_and(self._bad_step < 0,
                                 tf.logical_not(tf.reduce_all(tf.math.is_finite(checked))))
      self._bad_step.assign(tf.where(first_bad, self.step + 1, self._bad_step))
      self._bad_values.assign(tf.where(first_bad, checked, self._bad_values))
      if self.config.augment_target:
        # ADA: more augmentation while the discriminator tells the real windows it
        # sees apart too surely (r_t above the target), less while it does not.
        r_t = sums['d_real_sign'] / seq_len
        p = self.augment_p + tf.sign(r_t - self.config.augment_target) / _AUGMENT_P_STEPS
        self.augment_p.assign(tf.clip_by_value(p, 0.0, self.config.augment_p_max))
      if self.config.lecam_weight:
        # The step's mean logits, in averages that forget 1 - 0.99 an update.
        decay = _LECAM_DECAY ** self.config.seq_len
        means = tf.stack([sums['d_real_logit'] / seq_len,
                          sums['d_fake_logit'] / seq_len, 1.0])
        self.lecam_history.assign(decay * self.lecam_history + (1.0 - decay) * means)
      if self.generator_ema is not None:
        # Every weight, batch-norm statistics included, so that the average generator
        # normalises with statistics of its own time.
        decay = self.config.g_ema
        for average, value in zip(self.generator_ema.weights, self.generator.weights):
          average.assign(decay * average + (1.0 - decay) * value)
      self.step.assign_add(1)

  def _stops_anywhere_fn(self, here):
    """Whether any replica of any worker passed `here` True (a collective all-reduce)."""
    votes = self.strategy.run(lambda: tf.cast(here, tf.float32))
    return self.strategy.reduce(tf.distribute.ReduceOp.SUM, votes, axis=None) > 0.0

  def stop_agreed(self, requested_here: bool) -> bool:
    """Whether the run stops after this call: asked here or, under --strategy
    multi_worker, on any worker, so that all save the same step and stop together.

    A worker that stopped alone would save a checkpoint no chief writes and leave the
    others waiting for it in the next step's all-reduce. Every worker must call this
    after every `run` (it is a collective operation).
    """
    if self.config.strategy != 'multi_worker':
      return requested_here
    return bool(self._stops_anywhere(tf.constant(requested_here)))

  def run(self, num_steps: int = 1) -> None:
    """Trains `num_steps` steps in one call (queued on the device; nothing is read)."""
    self._run(tf.constant(num_steps, tf.int32))

  def pop_metrics(self) -> dict:
    """Mean metrics per step since the last call, then starts afresh.

    `skipped_updates` is the run's total of updates the loss-scale optimizer skipped
    (overflowing gradients, mixed precision); the loss scales come with it, and so
    do the strength of --g_noise and the chance of --augment_target as they are now.
    Reads from the device: waits for the queued steps.
    """
    count = float(self._count.numpy())
    sums = self._sums.numpy()
    self._sums.assign(tf.zeros_like(self._sums))
    self._count.assign(0.0)
    if not count:
      return {}
    metrics = {name: float(v) / count for name, v in zip(self.metric_names, sums)}
    metrics['skipped_updates'] = float(self.skipped_updates.numpy())
    if self.generator.noise_strength is not None:  # --g_noise: training moves it.
      metrics['g_noise_strength'] = float(self.generator.noise_strength.value.numpy())
    if self.config.augment_target:  # Adapted every step.
      metrics['augment_p'] = float(self.augment_p.numpy())
    if self.config.mixed_precision:
      metrics['d_loss_scale'] = float(self.d_optimizer.dynamic_scale.numpy())
      metrics['g_loss_scale'] = float(self.g_optimizer.dynamic_scale.numpy())
    return metrics

  def first_non_finite(self):
    """(step, {loss: value}) of the first step whose losses were NaN or Inf, or None."""
    step = int(self._bad_step.numpy())
    if step < 0:
      return None
    return step, dict(zip(_CHECKED, (float(v) for v in self._bad_values.numpy())))

  # ---------------------------------------------------------------- checkpoints

  def restore(self) -> None:
    """Resumes from the newest readable checkpoint, falling back to older ones.

    The candidates are those the manager's index file lists and those on disk: a
    damaged index must not hide them (and start the run again from step 0).
    """
    self._generator_average_step = None  # The average is about to change.
    candidates = _checkpoints_newest_first(self.chief_manager)
    for path in candidates:
      try:
        objects, notes = dict(self._checkpointed), []
        held = _top_level_objects(path)  # None: unreadable, the restore says why.
        missing = set() if held is None else set(objects) - held
        if 'data' in missing:
          # Written before the input position was saved: the rest resumes exactly,
          # the data order starts afresh.
          del objects['data'], objects['skipped_updates']
          notes.append(f'checkpoint {path} holds no input position (an older orca_gan '
                       'wrote it): the data order starts afresh')
        for name in [n for n in _STARTS_AFRESH if n in missing]:
          del objects[name]
          notes.append(f'checkpoint {path} holds no {_STARTS_AFRESH[name]}')
        checkpoint = (self.checkpoint if len(objects) == len(self._checkpointed)
                      else tf.train.Checkpoint(**objects))
        checkpoint.restore(path).assert_existing_objects_matched()
        if self.generator_ema is not None and 'generator_ema' not in objects:
          self._reset_generator_ema()
        for note in notes:
          self.log(note)
      # A damaged checkpoint surfaces as many exception types (DataLossError,
      # IndexError "Read less bytes than requested", AssertionError, ...).
      except Exception as e:
        reason = ' '.join(str(e).split())[:200]
        self.log(f'checkpoint {path} is unreadable ({reason}); trying an older one')
        continue
      self.log(f'resumed from {path} at step {self.current_step}')
      return
    if candidates:
      raise TrainingError(f'no readable checkpoint in {self.chief_manager.directory}; '
                          'move them away to start afresh')

  def save(self) -> str:
    """Writes checkpoint ckpt-<step>; on failure removes what it wrote of it.

    Raises:
      TrainingError: It could not be written (e.g. the disk is full); the message
        names it. The earlier checkpoints are unchanged.
    """
    prefix = os.path.join(self.manager.directory, f'ckpt-{self.current_step}')
    try:
      return self.manager.save(checkpoint_number=self.current_step)
    except (OSError, tf.errors.OpError) as e:
      for leftover in glob.glob(glob.escape(prefix) + '[._]*'):
        if os.path.isdir(leftover):
          shutil.rmtree(leftover, ignore_errors=True)
        else:
          os.remove(leftover)
      raise TrainingError(f'{prefix}: cannot write the checkpoint '
                          f'({fileio.os_reason(e)}); the earlier checkpoints are '
                          'unchanged') from None

  # ---------------------------------------------------------------- pictures

  def sample_images(self, real_seq):
    """Generated sequences from fixed latents, beside the given real ones.

    Args:
      real_seq: [n, seq_len, H, W, 1] real sequences in [-1, 1].

    Returns:
      uint8 [1, 2 n H, seq_len W, 1], see `image_grid`.
    """
    n = int(real_seq.shape[0])
    z = models.sample_latents(tf.constant([self.config.seed, -1], tf.int64), n,
                              self.config.seq_len, self.model_config)
    generated, _ = models.generate_sequence(self.generator_for_use(), z)
    return image_grid(generated, real_seq)


# What a training process holds besides its batches: TensorFlow, the traced step, the
# models (benchmarks/train_bench.py: 792 MB peak RSS for the demo run in all).
_RUNTIME_BYTES = 600 * 2**20


def memory_estimate(config: TrainConfig, model_config: models.ModelConfig) -> int:
  """Rough bytes of memory a run needs (host and device together): the runtime, the
  input pipeline's buffers, and the activations one time step keeps for its gradients.
  """
  mc = model_config
  pixels = mc.image_size**2
  windows = config.batch_size * config.seq_len
  # Stored (uint8) windows: the shuffle buffer, the interleaved shards' readers; then
  # each batch as float32, real and generated, with one prefetched.
  inputs = (config.shuffle_buffer * config.seq_len * pixels +
            config.interleave_cycle * 16 * 2**20 + 3 * 4 * windows * pixels)
  # Elements of the feature maps: the generator from 4x4 up, the discriminator down
  # (on a real and a generated batch); ~8 float32 tensors kept per element (inputs,
  # normalised and activated values, their gradients).
  g_maps = sum(16 * 4**r * mc.generator_width(r) for r in range(mc.num_resolutions))
  d_maps = sum(pixels // 4**(i + 1) * mc.discriminator_width(i)
               for i in range(mc.num_resolutions))
  activations = 8 * 4 * config.batch_size * config.d_steps * (g_maps + pixels + 2 * d_maps)
  return _RUNTIME_BYTES + inputs + activations


def _check_memory(config: TrainConfig, model_config: models.ModelConfig) -> None:
  """Refuses settings whose estimated memory exceeds this machine's (before any work)."""
  need = memory_estimate(config, model_config)
  have = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
  if need > have:
    raise TrainingError(
        f'--batch_size {config.batch_size}, --seq_len {config.seq_len} and '
        f'--shuffle_buffer {config.shuffle_buffer} need about {_gib(need)} of memory; '
        f'this machine has {_gib(have)}')


def _gib(size: int) -> str:
  return f'{size / 2**30:,.1f} GiB'


def _checkpoints_newest_first(manager: tf.train.CheckpointManager) -> list:
  """Checkpoint prefixes listed by the manager or found on disk, newest first."""
  found = {}
  for prefix in manager.checkpoints + glob.glob(
      os.path.join(glob.escape(manager.directory), 'ckpt-*.index')):
    prefix = prefix.removesuffix('.index')
    number = prefix.rsplit('-', 1)[-1]
    if number.isdigit():
      found[int(number)] = prefix
  return [found[n] for n in sorted(found, reverse=True)]


def _top_level_objects(path: str) -> set | None:
  """Names of the objects a checkpoint holds at its top ('data', 'generator_ema', ...),
  from one read of its index; None if it is unreadable (the full restore reports it)."""
  try:
    return {name.split('/', 1)[0] for name, _ in tf.train.list_variables(path)}
  except Exception:
    return None


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
