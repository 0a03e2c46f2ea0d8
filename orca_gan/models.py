"""Recurrent DCGAN over sequences of spectrogram images, one time step per call.

A sequence is a run of consecutive `window_s` windows of one recording, each an image
of shape [image_size (freq), image_size (time), 1] with values in [-1, 1]. The
generator and the discriminator each carry an LSTM through the sequence.

Both models follow ddsp's `StatelessRnn` pattern: `call` takes the recurrent state and
returns the new one, and neither model keeps state between calls. The caller owns the
state, which is what lets

* the training loop run one D and one G update per time step and keep a separate
  discriminator state for the real and for the generated stream;
* the G update of step `t` reuse the D state of step `t` without advancing it twice;
* serving run any batch size and put the state into the SavedModel signature.

States are `(h, c)` tuples of float32 tensors, shape [batch, lstm_units], and stay
float32 under a mixed-precision policy so that loop-carried state keeps one dtype.
A sequence of the generator starts from `Generator.start_state` of its first latents
(zeros, or a function of the latents with `ModelConfig.start_state`); one of the
discriminator from `Discriminator.initial_state`, zeros.
Images, logits and embeddings are float32 as well.

`generate_sequence` and `discriminate_sequence` run a whole sequence with a
`tf.while_loop`, so they work in `tf.function` with unknown batch and time dims.
"""

import dataclasses
import math

import keras
import tensorflow as tf

State = tuple[tf.Tensor, tf.Tensor]

# Side of the smallest feature map: the generator's seed and the discriminator's
# last convolution.
_BASE_SIZE = 4
# Kernel divisible by the stride: no checkerboard from uneven overlap of transposed
# convolutions (Odena et al. 2016); the discriminator uses the same for symmetry.
# Trained weights can still differ from one pixel of a 2x2 cell to the next (see
# `ModelConfig.upsample`).
_KERNEL_SIZE = 4
# The discriminator's widths double per block up to this multiple of df_dim.
_MAX_DF_MULTIPLE = 8
# Named, not 'auto_select' (which may choose by device). XLA's Philox does not give the
# TensorFlow kernel's numbers: draw outside XLA-compiled code.
RNG_ALGORITHM = 'philox'
# `ModelConfig.upsample`'s choices.
UPSAMPLING = ('transpose', 'resize')
# `ModelConfig.start_state`'s choices.
START_STATES = ('zeros', 'latent')


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Sizes of the generator and the discriminator.

  Attributes:
    image_size: Height and width of an image in pixels; a power of two >= 16.
    z_dim: Size of the latent vector fed to the generator at every step.
    fast_z: The first `fast_z` latent dims are redrawn every step; the other
      `z_dim - fast_z` are drawn once per sequence (see `sample_latents`).
    g_lstm_units: Units of the generator's LSTM.
    d_lstm_units: Units of the discriminator's LSTM (and size of its embedding).
    gf_dim: Channels of the generator's 4x4 seed; halved at every upsampling, down to
      `gf_min`.
    gf_min: Fewest channels of a generator feature map. DCGAN halves the width at every
      upsampling, which leaves a narrow generator (gf_dim 64) 4 channels at 64x64 to
      draw the finest detail of the image; a floor widens only the large maps.
    df_dim: Channels of the discriminator's first convolution; doubled per block up
      to `8 * df_dim`.
    minibatch_stddev: The discriminator sees, beside each image's 4x4 features, their
      standard deviation over the batch (averaged to one number, as a constant extra
      channel; Karras et al. 2018): a batch of near-copies is easy to call fake.
      Exports use a fixed value instead (`Discriminator.call`'s `batch_stddev`).
    stddev_group: With `minibatch_stddev`, the rows share the statistic in groups of
      this many consecutive rows (StyleGAN's groups of 4; consecutive, so that a
      replica holding whole groups computes what one device does), and a row's score
      depends on `stddev_group - 1` others only; a batch that is not a multiple of it,
      and 0, make one group of the whole batch.
    noise_inputs: The generator adds per-pixel Gaussian noise, scaled by a learned
      strength (initially 0), to its image before the tanh: a source for the speckle
      of real spectrograms, pixel-scale variation that is independent from window to
      window, which a convolution generator cannot paint. Only there: StyleGAN's noise
      inputs at every layer (Karras et al. 2019) were measured to cost the
      discriminator's LSTM its grasp of orca sounds (benchmarks/README.md). The noise
      is a pure function of each row's latent vector (`latent_noise`), so it needs
      `fast_z` above 0 to change from step to step.
    noise_rate: How fast the noise strength learns, against every other weight. The
      strength is one number, and Adam moves a weight by up to its learning rate a
      step whatever the size of its gradient, so a small, steady preference for less
      noise drives it to 0 within a few hundred steps. The strength is kept as
      `noise_rate` x a weight, so it moves at most `noise_rate` x the learning rate
      a step.
    upsample: How the generator doubles its maps. 'transpose': a stride-2 transposed
      convolution (DCGAN). 'resize': nearest-neighbour upsampling, then a 3x3
      convolution (Odena et al. 2016): every output pixel is made by the same weights,
      where a transposed convolution makes each of the four pixels of a 2x2 cell with
      weights of its own, and stacked, these paint a fixed pattern on an 8-pixel
      lattice into every window (benchmarks/README.md).
    start_state: Where the generator's LSTM starts a sequence. 'zeros': the zero
      state (the seed's). 'latent': a learned function of the sequence's first latent
      vector (a dense layer; h through a tanh). A series of training windows starts
      anywhere in a tape, in the middle of whatever was sounding, not at a zero state.
      Measured with resize-convolution: from the zero state the first windows of a
      generated sequence are emptier than the later ones; from a latent start they are
      not, but over the whole sequence the windows with no sound stay well above
      real's share (benchmarks/README.md).
  """
  image_size: int = 128
  z_dim: int = 128
  fast_z: int = 128
  g_lstm_units: int = 256
  d_lstm_units: int = 256
  gf_dim: int = 256
  gf_min: int = 1
  df_dim: int = 64
  minibatch_stddev: bool = False
  stddev_group: int = 0
  noise_inputs: bool = False
  noise_rate: float = 1.0
  upsample: str = 'transpose'
  start_state: str = 'zeros'

  def __post_init__(self):
    size = self.image_size
    if size < 16 or size & (size - 1):
      raise ValueError(f'image_size must be a power of two >= 16, got {size}')
    for name in ('z_dim', 'g_lstm_units', 'd_lstm_units', 'gf_dim', 'gf_min', 'df_dim'):
      if getattr(self, name) <= 0:
        raise ValueError(f'{name} must be positive, got {getattr(self, name)}')
    if self.gf_min > self.gf_dim:
      raise ValueError(f'gf_min must be at most gf_dim={self.gf_dim}, got {self.gf_min}')
    if not 0 <= self.fast_z <= self.z_dim:
      raise ValueError(f'fast_z must be in [0, z_dim={self.z_dim}], got {self.fast_z}')
    if self.upsample not in UPSAMPLING:
      raise ValueError(f'upsample must be one of {UPSAMPLING}, got {self.upsample!r}')
    if self.start_state not in START_STATES:
      raise ValueError(f'start_state must be one of {START_STATES}, '
                       f'got {self.start_state!r}')
    if not self.noise_rate > 0:
      raise ValueError(f'noise_rate must be positive, got {self.noise_rate}')
    if self.stddev_group < 0:
      raise ValueError(f'stddev_group must be at least 0, got {self.stddev_group}')
    if self.noise_inputs and not self.fast_z:
      raise ValueError('noise_inputs needs fast_z > 0: the noise follows the latents, '
                       'and with fast_z 0 they repeat at every step of a sequence')

  @property
  def num_resolutions(self) -> int:
    """Number of stride-2 layers between the 4x4 base and the image."""
    return int(math.log2(self.image_size // _BASE_SIZE))

  def generator_width(self, level: int) -> int:
    """Channels of the generator's feature map `level` upsamplings above the 4x4 seed."""
    return max(self.gf_dim // 2**level, self.gf_min)

  def discriminator_width(self, block: int) -> int:
    """Channels of the discriminator's convolution block `block` (0: the first)."""
    return self.df_dim * min(2**block, _MAX_DF_MULTIPLE)


def _named(model: keras.Model, name: str, layer: keras.layers.Layer):
  """Makes `layer` attribute `name` of `model` too, and returns it.

  Keras 3 (3.15, TensorFlow backend) counts layers held in a Python list in the model's
  weights, but tf.train.Checkpoint and tf.saved_model do not see them: variables only
  such a layer holds (batch-norm moving statistics; all of them in a model without an
  optimizer) would silently be missing from checkpoints and exports.
  """
  setattr(model, name, layer)
  return layer


def _upsampling(kind: str, width: int, use_bias: bool, name: str) -> keras.layers.Layer:
  """A layer that doubles the height and width of its input (`ModelConfig.upsample`)."""
  if kind == 'transpose':
    return keras.layers.Conv2DTranspose(width, _KERNEL_SIZE, strides=2, padding='same',
                                        use_bias=use_bias, name=name)
  return keras.Sequential([
      keras.layers.UpSampling2D(2, interpolation='nearest'),
      keras.layers.Conv2D(width, 3, padding='same', use_bias=use_bias, name='conv'),
  ], name=name)


class Generator(keras.Model):
  """One step of the generator: latent vector + LSTM state -> image + new state.

  z -> LSTMCell (from `start_state` at a sequence's first step) ->
  concat([lstm_out, z]) -> Dense -> [4, 4, gf_dim] -> upsampling blocks (stride-2
  Conv2DTranspose as DCGAN, or resize-convolution, `upsample`; BatchNorm + ReLU)
  halving the width down to `gf_min` -> a last upsampling to one channel (+ per-pixel
  noise with `noise_inputs`) -> tanh.

  The batch-norm layers make the output depend on `training` (batch statistics vs
  moving averages), as in DCGAN; everything else is per-row.
  """

  def __init__(self, config: ModelConfig, **kwargs):
    super().__init__(**kwargs)
    self.config = config
    self.lstm_cell = keras.layers.LSTMCell(config.g_lstm_units, name='lstm_cell')
    self.start = (keras.layers.Dense(2 * config.g_lstm_units, name='start_state')
                  if config.start_state == 'latent' else None)
    self.project = keras.layers.Dense(
        _BASE_SIZE * _BASE_SIZE * config.gf_dim, use_bias=False, name='project')
    self.reshape = keras.layers.Reshape((_BASE_SIZE, _BASE_SIZE, config.gf_dim))
    # synchronized: under tf.distribute, batch statistics over the global batch, so a
    # multi-device step computes what a single-device step would.
    self.project_norm = keras.layers.BatchNormalization(synchronized=True,
                                                        name='project_norm')
    self.deconvs = []
    self.norms = []
    for i in range(1, config.num_resolutions):
      width = config.generator_width(i)
      self.deconvs.append(_named(self, f'deconv_{i}', _upsampling(
          config.upsample, width, use_bias=False, name=f'deconv_{i}')))
      self.norms.append(_named(self, f'norm_{i}', keras.layers.BatchNormalization(
          synchronized=True, name=f'norm_{i}')))
    self.to_image = _upsampling(config.upsample, 1, use_bias=True, name='to_image')
    self.noise_strength = (NoiseStrength(config.noise_rate, name='noise_strength')
                           if config.noise_inputs else None)
    # float32 so that a mixed-precision run still emits float32 images.
    self.tanh = keras.layers.Activation('tanh', dtype='float32', name='tanh')

  def start_state(self, z) -> State:
    """The state `(h, c)` before the first step of sequences (`ModelConfig.start_state`).

    Args:
      z: The sequences' first latent vectors, shape [batch, z_dim].

    Returns:
      float32 `(h, c)`, each [batch, g_lstm_units]: zeros, or computed from `z`.
    """
    if self.start is None:
      shape = [tf.shape(z)[0], self.config.g_lstm_units]
      return tf.zeros(shape, tf.float32), tf.zeros(shape, tf.float32)
    h, c = tf.split(tf.cast(self.start(z), tf.float32), 2, axis=-1)
    return tf.tanh(h), c

  def call(self, z, state, training=False):
    """Generates the next image of each sequence.

    Args:
      z: Latent vectors, shape [batch, z_dim].
      state: `(h, c)` from `start_state` or the previous step, each
        [batch, g_lstm_units].
      training: Batch-norm mode.

    Returns:
      images: float32 in [-1, 1], shape [batch, image_size, image_size, 1].
      new_state: float32 `(h, c)`, each [batch, g_lstm_units].
    """
    lstm_out, (h, c) = self.lstm_cell(z, list(state), training=training)
    x = tf.concat([lstm_out, tf.cast(z, lstm_out.dtype)], axis=-1)
    x = self.reshape(self.project(x))                    # [b, 4, 4, gf_dim]
    x = tf.nn.relu(self.project_norm(x, training=training))
    for deconv, norm in zip(self.deconvs, self.norms):
      x = tf.nn.relu(norm(deconv(x), training=training))
    x = self.to_image(x)                                 # [b, size, size, 1]
    if self.noise_strength is not None:
      size = self.config.image_size
      noise = latent_noise(latent_key(z), size * size)
      x = self.noise_strength(x, tf.reshape(noise, [-1, size, size, 1]))
    images = self.tanh(x)
    return images, (tf.cast(h, tf.float32), tf.cast(c, tf.float32))


class NoiseStrength(keras.layers.Layer):
  """x + noise x a learned strength, initially 0.

  The strength is `rate` x the weight `strength`, so that an optimizer which moves a
  weight by up to its learning rate a step (Adam) moves the strength `rate` times as
  far (see `ModelConfig.noise_rate`).
  """

  def __init__(self, rate: float = 1.0, **kwargs):
    super().__init__(**kwargs)
    self.rate = rate
    self.strength = self.add_weight(shape=(), initializer='zeros', name='strength')

  @property
  def value(self) -> tf.Tensor:
    """The strength the noise is scaled by."""
    return self.strength * self.rate

  def assign(self, value: float):
    """Sets the strength (not the weight) to `value`."""
    self.strength.assign(value / self.rate)

  def call(self, x, noise):
    return x + tf.cast(noise, x.dtype) * tf.cast(self.value, x.dtype)


class Discriminator(keras.Model):
  """One step of the discriminator: image + LSTM state -> logit, embedding, state.

  Stride-2 Conv2D blocks with LeakyReLU(0.2), widths df_dim, 2 df_dim, 4 df_dim,
  8 df_dim (then 8 df_dim again) down to 4x4 -> flatten -> LSTMCell -> Dense(1).

  No batch normalization: it couples the rows of a batch, which breaks WGAN-GP's
  per-sample gradient penalty (the gradient of the summed logits w.r.t. one image
  must depend on that image alone) and would make the real and the generated stream
  interact. Blocks after the first use layer normalization over [h, w, c] instead
  (GroupNormalization with one group, as Gulrajani et al. 2017 suggest), which is
  per-sample and behaves the same in training and inference.
  """

  def __init__(self, config: ModelConfig, **kwargs):
    super().__init__(**kwargs)
    self.config = config
    self.convs = []
    self.norms = []
    for i in range(config.num_resolutions):
      width = config.discriminator_width(i)
      self.convs.append(_named(self, f'conv_{i}', keras.layers.Conv2D(
          width, _KERNEL_SIZE, strides=2, padding='same', name=f'conv_{i}')))
      if i > 0:
        self.norms.append(_named(self, f'norm_{i}', keras.layers.GroupNormalization(
            groups=1, epsilon=1e-5, name=f'norm_{i}')))
    self.flatten = keras.layers.Flatten()
    self.lstm_cell = keras.layers.LSTMCell(config.d_lstm_units, name='lstm_cell')
    # float32 so that a mixed-precision run still emits float32 logits.
    self.to_logit = keras.layers.Dense(1, dtype='float32', name='to_logit')

  def initial_state(self, batch_size) -> State:
    """Zero state `(h, c)`, each float32 of shape [batch_size, d_lstm_units]."""
    shape = [batch_size, self.config.d_lstm_units]
    return tf.zeros(shape, tf.float32), tf.zeros(shape, tf.float32)

  def conv_blocks(self, images) -> list:
    """The output of every convolution block (after its activation).

    Args:
      images: Shape [batch, image_size, image_size, 1], values in [-1, 1].

    Returns:
      One tensor per block, [batch, image_size / 2^(i+1) (freq), same (time),
      channels_i]; the last is the 4x4 map the LSTM reads.
    """
    x = tf.nn.leaky_relu(self.convs[0](images), alpha=0.2)
    blocks = [x]
    for conv, norm in zip(self.convs[1:], self.norms):
      x = tf.nn.leaky_relu(norm(conv(x)), alpha=0.2)
      blocks.append(x)
    return blocks

  def call(self, images, state, training=False, batch_stddev=None):
    """Scores the next image of each sequence.

    Args:
      images: Shape [batch, image_size, image_size, 1], values in [-1, 1].
      state: `(h, c)` from `initial_state` or the previous step, each
        [batch, d_lstm_units].
      training: Passed to the LSTM cell; the output does not depend on it.
      batch_stddev: With `minibatch_stddev`, a scalar that stands in for the batch's
        statistic, so that each row's output depends on that row alone (an export
        passes the mean the real windows gave, `real_batch_stddev`); None computes
        it from the batch, as in training.

    Returns:
      logits: float32, shape [batch]; high means real.
      embedding: float32 LSTM output, shape [batch, d_lstm_units].
      new_state: float32 `(h, c)`, each [batch, d_lstm_units].
    """
    x = self.conv_blocks(images)[-1]                    # [b, 4, 4, c]
    if self.config.minibatch_stddev:
      x = _with_batch_stddev(x, self.config.stddev_group,  # [b, 4, 4, c + 1]
                             batch_stddev)
    embedding, (h, c) = self.lstm_cell(self.flatten(x), list(state), training=training)
    logits = tf.squeeze(self.to_logit(embedding), axis=-1)  # [b]
    return (logits, tf.cast(embedding, tf.float32),
            (tf.cast(h, tf.float32), tf.cast(c, tf.float32)))


def group_stddev(x, group: int = 0) -> tf.Tensor:
  """[b, h, w, c] -> float32 [b]: the mean over positions and channels of the
  features' standard deviation over each row's group (see `ModelConfig.stddev_group`)."""
  b = tf.shape(x)[0]
  size = b if not group else tf.where(b % group == 0, group, b)
  y = tf.reshape(tf.cast(x, tf.float32), tf.concat([[-1, size], tf.shape(x)[1:]], 0))
  std = tf.sqrt(tf.math.reduce_variance(y, axis=1) + 1e-8)     # [groups, h, w, c]
  return tf.repeat(tf.reduce_mean(std, axis=[1, 2, 3]), size)  # [b]


def real_batch_stddev(discriminator: Discriminator, sequences, group: int) -> float:
  """The mean of `group_stddev` of the last convolution block over real windows.

  What the discriminator's minibatch statistic is, on average, for batches of real
  windows: an exported discriminator uses it in place of the batch's, so that the
  embedding of a window does not depend on which windows share its batch.

  Args:
    discriminator: The trained discriminator.
    sequences: Iterable of real batches [b, T, H, W, 1] in [-1, 1]; each time step is
      one batch, as in training.
    group: The group size training used (a batch that it does not divide is one
      group).

  Returns:
    The mean over every row of every step of every batch.
  """
  total, count = 0.0, 0
  for batch in sequences:
    batch = tf.convert_to_tensor(batch, tf.float32)
    for t in range(batch.shape[1]):
      rows = group_stddev(discriminator.conv_blocks(batch[:, t])[-1], group)
      total += float(tf.reduce_sum(rows))
      count += int(rows.shape[0])
  if not count:
    raise ValueError('real_batch_stddev: no real windows')
  return total / count


def _with_batch_stddev(x, group: int = 0, fixed=None):
  """[b, h, w, c] -> [b, h, w, c + 1]: `group_stddev` (or `fixed`, a scalar, for
  every row) as a constant channel."""
  per_row = (group_stddev(x, group) if fixed is None
             else tf.fill([tf.shape(x)[0]], tf.cast(fixed, tf.float32)))
  shape = tf.concat([tf.shape(x)[:3], [1]], axis=0)
  channel = tf.broadcast_to(per_row[:, None, None, None], shape)
  return tf.concat([x, tf.cast(channel, x.dtype)], axis=-1)


# murmur3's 32-bit finaliser: a bijection whose output bits each depend on every input
# bit; with integer arithmetic only, so XLA and TensorFlow's kernels agree exactly.
_FMIX_MULTIPLIERS = (0x85EBCA6B, 0xC2B2AE35)
_GOLDEN = 0x9E3779B9


def _fmix32(x):
  """murmur3 fmix32 of a uint32 tensor, elementwise."""
  def shift(v, n):
    return tf.bitwise.right_shift(v, tf.constant(n, tf.uint32))

  x = tf.bitwise.bitwise_xor(x, shift(x, 16))
  x = x * tf.constant(_FMIX_MULTIPLIERS[0], tf.uint32)
  x = tf.bitwise.bitwise_xor(x, shift(x, 13))
  x = x * tf.constant(_FMIX_MULTIPLIERS[1], tf.uint32)
  return tf.bitwise.bitwise_xor(x, shift(x, 16))


def latent_key(z) -> tf.Tensor:
  """A 32-bit hash of each row of `z` [b, z_dim] (its float32 bits): uint32 [b]."""
  bits = tf.bitcast(tf.cast(z, tf.float32), tf.uint32)
  odd = tf.bitcast(tf.range(1, 2 * z.shape[-1], 2, dtype=tf.int32), tf.uint32)
  return _fmix32(tf.reduce_sum(_fmix32(bits * odd), axis=-1))


def latent_noise(key, size: int) -> tf.Tensor:
  """Standard-normal noise that is a pure function of each row's `latent_key`.

  A counter-based generator: value i hashes (key, i), and a Box-Muller transform turns
  two hashes into one normal draw. So the generator stays a function of its latents
  alone (exports, resumed runs and evaluation give the same images for the same
  latents, whatever the batch), and the numbers are the same with and without XLA up
  to float rounding, where stateless random ops differ.

  Args:
    key: uint32 [b] from `latent_key`.
    size: Values per row.

  Returns:
    float32 [b, size].
  """
  counter = tf.bitcast(tf.range(2 * size, dtype=tf.int32), tf.uint32)
  bits = _fmix32(tf.bitwise.bitwise_xor(
      key[:, None], _fmix32(counter[None] + tf.constant(_GOLDEN, tf.uint32))))
  # 24 bits -> uniform in (0, 1), never 0 (log) nor 1.
  uniform = (tf.cast(tf.bitwise.right_shift(bits, tf.constant(8, tf.uint32)),
                     tf.float32) + 0.5) / 2.0**24
  radius = tf.sqrt(-2.0 * tf.math.log(uniform[:, :size]))
  return radius * tf.cos(2.0 * math.pi * uniform[:, size:])


def pooled_feature_names(config: ModelConfig) -> list:
  """Names of `pooled_features`, in order."""
  blocks = range(config.num_resolutions)
  return ([f'conv{i}_time_mean' for i in blocks] +
          [f'conv{i}_time_mean_std' for i in blocks] +
          ['conv_time_mean', 'conv_time_mean_std', 'conv_grid'])


def pooled_features(discriminator_model: Discriminator, images) -> dict:
  """Per-window features of the discriminator's convolution blocks, no LSTM state.

  A call can sit anywhere in a window, so features that do not move with a time shift
  suit retrieval: `conv{i}_time_mean` is block i averaged over the time axis (frequency
  x channels kept, flattened); `conv{i}_time_mean_std` adds the standard deviation over
  time beside it (statistics pooling, as x-vectors pool speech frames; the spectral
  profile baseline is a band's mean and standard deviation too); `conv_time_mean` and
  `conv_time_mean_std` are every block's side by side. `conv_grid`
  is every block max-pooled to a 4x4 grid, concatenated (the DCGAN paper's features,
  Radford et al. 2016), for reference.

  Args:
    discriminator_model: The discriminator.
    images: Shape [batch, image_size, image_size, 1], values in [-1, 1].

  Returns:
    {name: float32 [batch, size]} for every name of `pooled_feature_names`.
  """
  blocks = discriminator_model.conv_blocks(images)
  batch = tf.shape(images)[0]
  features = {}
  grids = []
  for i, block in enumerate(blocks):
    block = tf.cast(block, tf.float32)
    h, w, c = block.shape[1], block.shape[2], block.shape[3]
    mean = tf.reshape(tf.reduce_mean(block, axis=2), [batch, h * c])
    features[f'conv{i}_time_mean'] = mean
    features[f'conv{i}_time_mean_std'] = tf.concat(
        [mean, tf.reshape(tf.math.reduce_std(block, axis=2), [batch, h * c])], axis=-1)
    pool = w // _BASE_SIZE
    grids.append(tf.reshape(tf.nn.max_pool2d(block, pool, pool, 'VALID'),
                            [batch, _BASE_SIZE * _BASE_SIZE * c]))
  for pooling in ('time_mean', 'time_mean_std'):
    features[f'conv_{pooling}'] = tf.concat(
        [features[f'conv{i}_{pooling}'] for i in range(len(blocks))], axis=-1)
  features['conv_grid'] = tf.concat(grids, axis=-1)
  return features


def sample_latents(seed, batch_size, seq_len, config: ModelConfig) -> tf.Tensor:
  """Draws the latent vectors of a batch of sequences, statelessly.

  The draw is a pure function of `seed`: the trainer passes `(run seed, step)`, so a
  resumed run draws exactly what an uninterrupted one would, and every replica of a
  distributed run can draw the global batch and take its own slice.

  Args:
    seed: int32/int64 tensor of shape [2] (`tf.random.stateless_normal` seed).
    batch_size: Number of sequences.
    seq_len: Steps per sequence.
    config: Gives `z_dim` and `fast_z`.

  Returns:
    float32 standard-normal latents, shape [batch_size, seq_len, z_dim]. Dims
    `< fast_z` are drawn independently at every step; dims `>= fast_z` are drawn once
    per sequence and repeated at every step.
  """
  seed = tf.cast(seed, tf.int64)
  fast_seed = tf.random.experimental.stateless_fold_in(seed, 0)
  slow_seed = tf.random.experimental.stateless_fold_in(seed, 1)
  fast = tf.random.stateless_normal([batch_size, seq_len, config.fast_z], fast_seed,
                                    alg=RNG_ALGORITHM)
  slow = tf.random.stateless_normal([batch_size, 1, config.z_dim - config.fast_z],
                                    slow_seed, alg=RNG_ALGORITHM)
  slow = tf.broadcast_to(slow, [batch_size, seq_len, config.z_dim - config.fast_z])
  return tf.concat([fast, slow], axis=-1)


def _scan_steps(step_fn, inputs_seq, state, output_specs):
  """Runs `step_fn(inputs_t, state) -> (outputs, state)` over axis 1 of `inputs_seq`.

  A `tf.while_loop` over the time steps writing to TensorArrays, so that it works
  eagerly and in `tf.function` with unknown batch and time dims (including T = 0).

  Args:
    step_fn: One step; `outputs` is a tuple of tensors of shape [batch, ...].
    inputs_seq: Shape [batch, T, ...].
    state: Initial state, a tuple of tensors with a fixed dtype.
    output_specs: `(dtype, shape without batch)` of each output of `step_fn`.

  Returns:
    outputs: Tuple of tensors, shape [batch, T, ...] each.
    state: The state after the last step.
  """
  batch_size, steps = tf.shape(inputs_seq)[0], tf.shape(inputs_seq)[1]
  inputs_tm = tf.transpose(inputs_seq, [1, 0] + list(range(2, inputs_seq.shape.rank)))
  arrays = tuple(tf.TensorArray(dtype, size=steps, element_shape=[None] + list(shape))
                 for dtype, shape in output_specs)

  def body(t, state, arrays):
    outputs, state = step_fn(inputs_tm[t], state)
    arrays = tuple(a.write(t, o) for a, o in zip(arrays, outputs))
    return t + 1, state, arrays

  _, state, arrays = tf.while_loop(
      lambda t, *_: t < steps, body, (tf.constant(0), tuple(state), arrays))
  outputs = []
  for array, (dtype, shape) in zip(arrays, output_specs):
    # `stack` cannot infer the batch size of an empty array: build that case.
    empty_shape = tf.concat([[0, batch_size], tf.constant(shape, tf.int32)], axis=0)
    stacked = tf.cond(steps > 0, array.stack,
                      lambda s=empty_shape, d=dtype: tf.zeros(s, d))  # [T, b, ...]
    perm = [1, 0] + list(range(2, len(shape) + 2))
    outputs.append(tf.transpose(stacked, perm))             # [b, T, ...]
  return tuple(outputs), state


def generate_sequence(generator_model: Generator, z_seq, state=None, training=False):
  """Runs the generator over a sequence of latents.

  Args:
    generator_model: The generator.
    z_seq: Latents, shape [batch, T, z_dim] (e.g. from `sample_latents`).
    state: Generator state to start from; `None` for `start_state` of the first
      latents.
    training: Batch-norm mode.

  Returns:
    images: float32, shape [batch, T, image_size, image_size, 1].
    final_state: float32 `(h, c)` after the last step.
  """
  z_seq = tf.convert_to_tensor(z_seq, tf.float32)
  if state is None:
    # The first latents; zeros for a sequence of no steps (T = 0).
    state = generator_model.start_state(tf.reduce_sum(z_seq[:, :1], axis=1))
  size = generator_model.config.image_size

  def step(z, state):
    images, state = generator_model(z, state, training=training)
    return (images,), state

  (images,), state = _scan_steps(step, z_seq, state, [(tf.float32, [size, size, 1])])
  images.set_shape(z_seq.shape[:2].concatenate([size, size, 1]))
  return images, state


def batch_norms(model: keras.Model) -> list:
  """The BatchNormalization layers of `model`."""
  return [layer for layer in model._flatten_layers(include_self=False)
          if isinstance(layer, keras.layers.BatchNormalization)]


def standing_statistics(generator_model: Generator, z_seqs) -> None:
  """Sets the generator's batch-norm statistics to those of its own activations.

  A moving average of generator weights (`--g_ema`) averages the batch-norm moving
  statistics with the weights, but the averaged weights do not produce the averaged
  activations: features that move from step to step partly cancel in the average, so
  its activations vary less than the statistics it would normalise them by, and every
  layer draws them fainter. This runs the generator in training mode over every step
  of `z_seqs` and stores the mean of its batch means and variances: the "standing
  statistics" of BigGAN (Brock et al. 2019), SWA's `bn_update` (Izmailov et al. 2018).

  Args:
    generator_model: Its batch-norm layers' moving mean and variance are replaced.
    z_seqs: Iterable of latent batches, each [batch, T, z_dim] (`sample_latents`).
  """
  norms = batch_norms(generator_model)
  stored = [(norm.momentum, tf.identity(norm.moving_mean),
             tf.identity(norm.moving_variance)) for norm in norms]
  sums = [[tf.zeros_like(mean), tf.zeros_like(variance)] for _, mean, variance in stored]
  calls = 0
  try:
    for norm in norms:
      norm.momentum = 0.0  # Each training-mode call stores its own batch statistics.
    for z_seq in z_seqs:
      state = generator_model.start_state(tf.reduce_sum(z_seq[:, :1], axis=1))
      for t in range(z_seq.shape[1]):
        _, state = generator_model(z_seq[:, t], state, training=True)
        for total, norm in zip(sums, norms):
          total[0] += norm.moving_mean
          total[1] += norm.moving_variance
        calls += 1
  finally:
    for norm, (momentum, mean, variance) in zip(norms, stored):
      norm.momentum = momentum
      norm.moving_mean.assign(mean)  # As it was, until the loop has finished.
      norm.moving_variance.assign(variance)
  if not calls:
    raise ValueError('standing_statistics needs at least one latent step')
  for norm, (mean, variance) in zip(norms, sums):
    norm.moving_mean.assign(mean / calls)
    norm.moving_variance.assign(variance / calls)


def discriminate_sequence(discriminator_model: Discriminator, images_seq, state=None,
                          training=False, batch_stddev=None):
  """Runs the discriminator over a sequence of images.

  Args:
    discriminator_model: The discriminator.
    images_seq: Shape [batch, T, image_size, image_size, 1].
    state: Discriminator state to start from; `None` for `initial_state`.
    training: Passed to the model.
    batch_stddev: Passed to the model (`Discriminator.call`).

  Returns:
    logits: float32, shape [batch, T].
    embeddings: float32, shape [batch, T, d_lstm_units].
    final_state: float32 `(h, c)` after the last step.
  """
  images_seq = tf.convert_to_tensor(images_seq, tf.float32)
  if state is None:
    state = discriminator_model.initial_state(tf.shape(images_seq)[0])

  def step(images, state):
    logits, embedding, state = discriminator_model(images, state, training=training,
                                                   batch_stddev=batch_stddev)
    return (logits, embedding), state

  units = discriminator_model.config.d_lstm_units
  (logits, embeddings), state = _scan_steps(
      step, images_seq, state, [(tf.float32, []), (tf.float32, [units])])
  logits.set_shape(images_seq.shape[:2])
  embeddings.set_shape(images_seq.shape[:2].concatenate([units]))
  return logits, embeddings, state
