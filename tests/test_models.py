"""Tests of orca_gan.models with tiny configs."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from orca_gan import losses
from orca_gan import models

TINY = models.ModelConfig(image_size=16, z_dim=8, fast_z=5, g_lstm_units=16,
                          d_lstm_units=16, gf_dim=16, df_dim=8)


def _build(config=TINY, seed=0):
  keras.utils.set_random_seed(seed)
  return models.Generator(config), models.Discriminator(config)


def _latents(batch_size, seq_len, config=TINY, seed=0):
  return models.sample_latents(tf.constant([seed, 0]), batch_size, seq_len, config)


def _images(batch_size, seq_len, config=TINY, seed=0):
  shape = [batch_size, seq_len, config.image_size, config.image_size, 1]
  return tf.random.stateless_uniform(shape, [seed, 1], -1.0, 1.0)


@pytest.fixture
def mixed_precision():
  keras.mixed_precision.set_global_policy('mixed_float16')
  try:
    yield
  finally:
    keras.mixed_precision.set_global_policy('float32')


@pytest.mark.parametrize('field, value', [
    ('image_size', 8), ('image_size', 48), ('z_dim', 0), ('fast_z', -1),
    ('fast_z', 9), ('g_lstm_units', 0), ('d_lstm_units', -4), ('gf_dim', 0),
    ('gf_min', 0), ('gf_min', 17), ('df_dim', 0), ('noise_rate', 0.0),
    ('upsample', 'bilinear'), ('start_state', 'learned'),
])
def test_config_rejects_bad_values(field, value):
  with pytest.raises(ValueError, match=field):
    dataclasses.replace(TINY, **{field: value})


@pytest.mark.parametrize('gf_min, widths', [(1, [16, 8, 4, 2, 1]), (4, [16, 8, 4, 4, 4])])
def test_generator_widths_halve_down_to_the_floor(gf_min, widths):
  config = dataclasses.replace(TINY, image_size=128, gf_min=gf_min)
  generator, _ = _build(config)
  z = tf.zeros([1, config.z_dim])
  generator(z, generator.start_state(z))
  assert [config.generator_width(level) for level in range(5)] == widths
  assert [d.filters for d in generator.deconvs] == widths[1:]
  assert generator.to_image.kernel.shape[-1] == widths[-1]  # Conv2DTranspose: [.., out, in].


def test_resize_upsampling_makes_every_pixel_alike_where_transposed_paints_a_lattice():
  """Upsampled from a flat map, a transposed convolution's output repeats a 2x2
  pattern (each pixel of a cell has weights of its own); resize-convolution's does
  not (`ModelConfig.upsample`)."""
  flat = tf.ones([1, 8, 8, 4])
  for kind in models.UPSAMPLING:
    keras.utils.set_random_seed(0)
    out = models._upsampling(kind, 3, use_bias=False, name='up')(flat).numpy()
    assert out.shape == (1, 16, 16, 3)
    inner = out[0, 2:-2, 2:-2]  # Away from the zero padding at the edges.
    cells = inner.reshape(6, 2, 6, 2, 3)
    # The same 2x2 cell everywhere...
    np.testing.assert_allclose(cells, np.broadcast_to(cells[:1, :, :1], cells.shape),
                               atol=1e-5)
    # ...whose pixels differ with transposed convolutions only.
    spread = np.ptp(cells[0, :, 0].reshape(4, 3), axis=0).max()
    assert (spread > 1e-2) if kind == 'transpose' else (spread < 1e-5), (kind, spread)


@pytest.mark.parametrize('upsample', models.UPSAMPLING)
@pytest.mark.parametrize('image_size', [64, 128])
@pytest.mark.parametrize('training', [False, True])
def test_output_shapes(image_size, training, upsample):
  config = dataclasses.replace(TINY, image_size=image_size, upsample=upsample)
  generator, discriminator = _build(config)
  batch_size = 2
  z = tf.random.normal([batch_size, config.z_dim])
  images, g_state = generator(z, generator.start_state(z), training=training)
  logits, embedding, d_state = discriminator(
      images, discriminator.initial_state(batch_size), training=training)
  assert images.shape == (batch_size, image_size, image_size, 1)
  assert images.dtype == tf.float32
  assert np.all(np.abs(images.numpy()) <= 1.0)
  assert logits.shape == (batch_size,)
  assert embedding.shape == (batch_size, config.d_lstm_units)
  assert [s.shape for s in g_state] == [(batch_size, config.g_lstm_units)] * 2
  assert [s.shape for s in d_state] == [(batch_size, config.d_lstm_units)] * 2


def test_generator_state_carries_across_steps():
  generator, _ = _build()
  z = _latents(2, 2)
  zero_state = generator.start_state(z[:, 0])
  _, state_1 = generator(z[:, 0], zero_state)
  after_step_1, _ = generator(z[:, 1], state_1)
  from_zero, _ = generator(z[:, 1], zero_state)
  again, _ = generator(z[:, 1], state_1)
  assert np.max(np.abs(after_step_1.numpy() - from_zero.numpy())) > 1e-4
  np.testing.assert_array_equal(after_step_1.numpy(), again.numpy())


def test_discriminator_state_carries_across_steps():
  _, discriminator = _build()
  images = _images(2, 2)
  zero_state = discriminator.initial_state(2)
  _, _, state_1 = discriminator(images[:, 0], zero_state)
  after_step_1, _, _ = discriminator(images[:, 1], state_1)
  from_zero, _, _ = discriminator(images[:, 1], zero_state)
  again, _, _ = discriminator(images[:, 1], state_1)
  assert np.max(np.abs(after_step_1.numpy() - from_zero.numpy())) > 1e-6
  np.testing.assert_array_equal(after_step_1.numpy(), again.numpy())


def test_start_state_is_zeros_or_a_function_of_each_rows_first_latents():
  z = _latents(3, 1)[:, 0]
  zeros, _ = _build()
  for part in zeros.start_state(z):
    np.testing.assert_array_equal(part, np.zeros([3, TINY.g_lstm_units]))
  generator, _ = _build(dataclasses.replace(TINY, start_state='latent'))
  h, c = generator.start_state(z)
  assert h.dtype == c.dtype == tf.float32
  assert np.all(np.abs(h) < 1.0)  # Through a tanh, as an LSTM's h.
  for part in (h, c):
    assert np.min(np.ptp(part.numpy(), axis=0)) > 0  # Rows differ with their latents.
  # Row by row: a row's start does not depend on the rest of the batch.
  h_0, c_0 = generator.start_state(z[:1])
  np.testing.assert_allclose(h_0, h[:1], atol=1e-6)
  np.testing.assert_allclose(c_0, c[:1], atol=1e-6)


def test_new_sequence_from_start_states_repeats_first_sequence():
  generator, discriminator = _build()
  z = _latents(2, 3)
  first, g_state = models.generate_sequence(generator, z)
  first_logits, _, d_state = models.discriminate_sequence(discriminator, first)
  # Continuing from the final states gives something else ...
  continued, _ = models.generate_sequence(generator, z, g_state)
  continued_logits, _, _ = models.discriminate_sequence(discriminator, first, d_state)
  assert np.max(np.abs(continued.numpy() - first.numpy())) > 1e-4
  assert np.max(np.abs(continued_logits.numpy() - first_logits.numpy())) > 1e-6
  # ... and restarting from the start states repeats the first sequence: no hidden state.
  again, _ = models.generate_sequence(generator, z, generator.start_state(z[:, 0]))
  again_logits, _, _ = models.discriminate_sequence(
      discriminator, first, discriminator.initial_state(2))
  np.testing.assert_array_equal(again.numpy(), first.numpy())
  np.testing.assert_array_equal(again_logits.numpy(), first_logits.numpy())


@pytest.mark.parametrize('start_state', models.START_STATES)
def test_sequence_functions_match_step_by_step_calls(start_state):
  generator, discriminator = _build(dataclasses.replace(TINY, start_state=start_state))
  z = _latents(2, 3)
  images, g_final = models.generate_sequence(generator, z)
  logits, embeddings, d_final = models.discriminate_sequence(discriminator, images)
  g_state, d_state = generator.start_state(z[:, 0]), discriminator.initial_state(2)
  for t in range(3):
    images_t, g_state = generator(z[:, t], g_state)
    logits_t, embedding_t, d_state = discriminator(images_t, d_state)
    np.testing.assert_allclose(images[:, t], images_t, atol=1e-6)
    np.testing.assert_allclose(logits[:, t], logits_t, atol=1e-6)
    np.testing.assert_allclose(embeddings[:, t], embedding_t, atol=1e-6)
  for got, want in zip(g_final + d_final, g_state + d_state):
    np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize('training', [False, True])
def test_discriminator_streams_do_not_interact(training):
  _, discriminator = _build()
  real, fake = _images(3, 2, seed=1), _images(3, 2, seed=2)
  real_logits, real_embeddings, real_state = models.discriminate_sequence(
      discriminator, real, training=training)
  fake_logits, fake_embeddings, fake_state = models.discriminate_sequence(
      discriminator, fake, training=training)
  both_logits, both_embeddings, both_state = models.discriminate_sequence(
      discriminator, tf.concat([real, fake], axis=0), training=training)
  np.testing.assert_allclose(both_logits, tf.concat([real_logits, fake_logits], 0),
                             atol=1e-5)
  np.testing.assert_allclose(
      both_embeddings, tf.concat([real_embeddings, fake_embeddings], 0), atol=1e-5)
  for both, r, f in zip(both_state, real_state, fake_state):
    np.testing.assert_allclose(both, tf.concat([r, f], 0), atol=1e-5)


def test_standing_statistics_make_inference_draw_what_training_mode_draws():
  """With statistics from another network (as an average of generator weights holds)
  inference-mode images are off; after standing_statistics they match batch-statistics
  images of fresh latents, and the layers keep their momentum."""
  generator, _ = _build()
  z_seq = _latents(64, 3, seed=7)
  models.generate_sequence(generator, z_seq[:2])
  for norm in models.batch_norms(generator):  # Four times the variance: activations halved.
    norm.moving_variance.assign(4.0 * tf.ones_like(norm.moving_variance))
  momenta = [norm.momentum for norm in models.batch_norms(generator)]
  in_training_mode, _ = models.generate_sequence(generator, z_seq, training=True)

  def error():
    inference, _ = models.generate_sequence(generator, z_seq)
    return float(tf.reduce_mean(tf.abs(inference - in_training_mode)))

  before = error()
  models.standing_statistics(generator, [_latents(64, 3, seed=s) for s in range(4)])
  after = error()
  assert after < 0.2 * before, (before, after)
  assert [norm.momentum for norm in models.batch_norms(generator)] == momenta


def test_standing_statistics_leave_the_statistics_as_they_were_on_an_error():
  generator, _ = _build()
  models.generate_sequence(generator, _latents(2, 1))
  stored = [(norm.momentum, norm.moving_variance.numpy())
            for norm in models.batch_norms(generator)]

  def latents():
    yield _latents(8, 2, seed=1)
    raise RuntimeError('no more latents')

  with pytest.raises(RuntimeError, match='no more latents'):
    models.standing_statistics(generator, latents())
  for norm, (momentum, variance) in zip(models.batch_norms(generator), stored):
    np.testing.assert_array_equal(norm.moving_variance.numpy(), variance)
    assert norm.momentum == momentum
  with pytest.raises(ValueError, match='at least one'):
    models.standing_statistics(generator, [])


def test_gradient_penalty_through_discriminator():
  # Without batch norm the penalty of a batch is the mean of per-sample penalties.
  _, discriminator = _build()
  real, fake = _images(3, 1, seed=3)[:, 0], _images(3, 1, seed=4)[:, 0]
  weights = tf.constant([0.2, 0.5, 0.9])[:, None, None, None]
  state = discriminator.initial_state(3)

  def critic(rows):
    return lambda x: discriminator(x, tuple(s[rows] for s in state), training=True)[0]

  with tf.GradientTape() as tape:
    batch_penalty = losses.gradient_penalty(critic(slice(None)), real, fake, weights)
  # The trainer needs the second-order gradient w.r.t. the weights.
  variables = discriminator.trainable_variables
  gradients = tape.gradient(batch_penalty, variables)
  # Only the logit's bias does not move the input gradient.
  unused = [v.path for v, g in zip(variables, gradients) if g is None]
  assert unused == [discriminator.to_logit.bias.path]
  assert all(np.all(np.isfinite(g)) for g in gradients if g is not None)
  per_sample = [
      losses.gradient_penalty(critic(slice(i, i + 1)), real[i:i + 1], fake[i:i + 1],
                              weights[i:i + 1]) for i in range(3)]
  np.testing.assert_allclose(batch_penalty, np.mean(per_sample), rtol=1e-4)


@pytest.mark.parametrize('fast_z', [0, 5, 8])
def test_sample_latents_holds_slow_dims(fast_z):
  config = dataclasses.replace(TINY, fast_z=fast_z)
  z = _latents(4, 6, config).numpy()
  assert z.shape == (4, 6, config.z_dim) and z.dtype == np.float32
  slow, fast = z[:, :, fast_z:], z[:, :, :fast_z]
  np.testing.assert_array_equal(slow, np.broadcast_to(slow[:, :1], slow.shape))
  assert np.all(np.abs(np.diff(fast, axis=1)) > 0)
  # Different sequences get different slow dims.
  assert np.all(np.abs(np.diff(slow[:, 0], axis=0)) > 0)
  np.testing.assert_array_equal(z, _latents(4, 6, config).numpy())


def test_sample_latents_are_standard_normal():
  config = dataclasses.replace(TINY, z_dim=64, fast_z=32)
  z = _latents(64, 16, config).numpy()
  fast, slow = z[..., :32], z[:, 0, 32:]
  for values in (fast, slow):
    assert abs(values.mean()) < 0.05 and abs(values.std() - 1.0) < 0.05


@pytest.mark.parametrize('training', [False, True])
def test_generate_sequence_any_batch_size(training):
  generator, _ = _build()
  z = _latents(3, 2)
  images_3, state_3 = models.generate_sequence(generator, z, training=training)
  images_1, state_1 = models.generate_sequence(generator, z[:1], training=training)
  assert images_3.shape == (3, 2, 16, 16, 1)
  assert images_1.shape == (1, 2, 16, 16, 1)
  assert state_1[0].shape == (1, TINY.g_lstm_units)
  if not training:
    # Inference mode is per-row: row 0 does not depend on the rest of the batch.
    np.testing.assert_allclose(images_1, images_3[:1], atol=1e-6)
    np.testing.assert_allclose(state_1[1], state_3[1][:1], atol=1e-6)


def test_mixed_precision_outputs_are_float32(mixed_precision):
  del mixed_precision  # Fixture sets the policy and restores it.
  generator, discriminator = _build(dataclasses.replace(TINY, noise_inputs=True))
  assert generator.lstm_cell.compute_dtype == 'float16'
  generator.noise_strength.assign(0.5)  # float16 noise on a float16 map.
  images, g_state = models.generate_sequence(generator, _latents(2, 2), training=True)
  logits, embeddings, d_state = models.discriminate_sequence(
      discriminator, images, training=True)
  for tensor in (images, logits, embeddings) + g_state + d_state:
    assert tensor.dtype == tf.float32
  assert np.all(np.isfinite(logits.numpy()))
  assert np.all(np.abs(images.numpy()) <= 1.0)


@pytest.mark.parametrize('start_state', models.START_STATES)
def test_sequence_functions_in_tf_function_with_unknown_dims(start_state):
  generator, discriminator = _build(dataclasses.replace(TINY, start_state=start_state))
  @tf.function(input_signature=[tf.TensorSpec([None, None, TINY.z_dim], tf.float32)])
  def run(z):
    images, g_state = models.generate_sequence(generator, z)
    logits, embeddings, d_state = models.discriminate_sequence(discriminator, images)
    assert images.shape.as_list() == [None, None, 16, 16, 1]
    assert logits.shape.as_list() == [None, None]
    return images, logits, embeddings, g_state, d_state

  for batch_size, seq_len in [(1, 3), (3, 2), (2, 0)]:
    z = _latents(batch_size, seq_len)
    got = run(z)
    images, g_state = models.generate_sequence(generator, z)
    logits, embeddings, d_state = models.discriminate_sequence(discriminator, images)
    assert got[0].shape == (batch_size, seq_len, 16, 16, 1)
    for g, w in zip(tf.nest.flatten(got),
                    tf.nest.flatten((images, logits, embeddings, g_state, d_state))):
      np.testing.assert_allclose(g, w, atol=1e-5)


def test_minibatch_stddev_lets_d_see_the_batch_and_only_then():
  images = tf.random.stateless_uniform([3, 16, 16, 1], [1, 2], -1.0, 1.0)
  changed = tf.concat([images[:2], -images[2:]], axis=0)     # Only row 2 differs.
  for stddev in (False, True):
    config = models.ModelConfig(image_size=16, z_dim=4, fast_z=4, g_lstm_units=8,
                                d_lstm_units=8, gf_dim=8, df_dim=4,
                                minibatch_stddev=stddev)
    keras.utils.set_random_seed(0)
    discriminator = models.Discriminator(config)
    state = discriminator.initial_state(3)
    first = discriminator(images, state)[0].numpy()
    second = discriminator(changed, state)[0].numpy()
    # Row 0 is the same image both times: its score moves only through the batch.
    assert (abs(first[0] - second[0]) > 1e-6) == stddev


def test_minibatch_stddev_groups_couple_only_their_own_rows():
  images = tf.random.stateless_uniform([8, 16, 16, 1], [3, 4], -1.0, 1.0)
  changed = tf.tensor_scatter_nd_update(images, [[5]], -images[5:6])  # Only row 5.
  config = models.ModelConfig(image_size=16, z_dim=4, fast_z=4, g_lstm_units=8,
                              d_lstm_units=8, gf_dim=8, df_dim=4, minibatch_stddev=True,
                              stddev_group=4)
  keras.utils.set_random_seed(0)
  discriminator = models.Discriminator(config)
  state = discriminator.initial_state(8)
  moved = np.abs(discriminator(images, state)[0].numpy()
                 - discriminator(changed, state)[0].numpy()) > 1e-6
  # Groups of 4 in a batch of 8: rows 4-7 share row 5's group.
  assert moved.tolist() == [False] * 4 + [True] * 4
  # A batch that 4 does not divide is one group; one of 4 matches the ungrouped layer.
  whole = models.Discriminator(dataclasses.replace(config, stddev_group=0))
  whole(images, state)
  whole.set_weights(discriminator.get_weights())
  for rows in (3, 4):
    np.testing.assert_allclose(
        discriminator(images[:rows], discriminator.initial_state(rows))[0],
        whole(images[:rows], whole.initial_state(rows))[0], rtol=1e-6)


def test_a_fixed_batch_stddev_stands_in_for_the_batch_statistic():
  """`batch_stddev` = the batch's own statistic reproduces the batch's scores, and with
  it a row's score no longer depends on the other rows; `real_batch_stddev` is the
  mean statistic over every step of every batch."""
  images = tf.random.stateless_uniform([4, 2, 16, 16, 1], [5, 6], -1.0, 1.0)
  config = models.ModelConfig(image_size=16, z_dim=4, fast_z=4, g_lstm_units=8,
                              d_lstm_units=8, gf_dim=8, df_dim=4, minibatch_stddev=True)
  keras.utils.set_random_seed(0)
  discriminator = models.Discriminator(config)
  state = discriminator.initial_state(4)
  first = images[:, 0]
  own = models.group_stddev(discriminator.conv_blocks(first)[-1])
  assert np.allclose(own, own[0]) and own[0] > 0
  np.testing.assert_allclose(discriminator(first, state, batch_stddev=own[0])[0],
                             discriminator(first, state)[0], rtol=1e-6)
  alone = discriminator(first[:1], discriminator.initial_state(1),
                        batch_stddev=own[0])[0]
  np.testing.assert_allclose(alone, discriminator(first, state, batch_stddev=own[0])[0][:1],
                             rtol=1e-6)
  assert abs(float(discriminator(first[:1], discriminator.initial_state(1))[0][0])
             - float(alone[0])) > 1e-6  # Alone, the batch statistic is another.
  second = models.group_stddev(discriminator.conv_blocks(images[:, 1])[-1])[0]
  mean = models.real_batch_stddev(discriminator, [images[:2], images[2:]], group=2)
  pairs = [models.group_stddev(discriminator.conv_blocks(images[i:i + 2, t])[-1], 2)[0]
           for i in (0, 2) for t in (0, 1)]
  assert mean == pytest.approx(float(np.mean(pairs)), rel=1e-6)
  assert mean != pytest.approx(float(own[0] + second) / 2, rel=1e-3)  # Groups count.


def test_minibatch_stddev_is_refused_with_the_gradient_penalty():
  from orca_gan import trainers
  with pytest.raises(trainers.TrainingError, match='--minibatch_stddev couples the rows'):
    trainers.TrainConfig(minibatch_stddev=True, loss='wgan_gp')


def test_latent_noise_is_white_standard_normal_and_a_function_of_each_row():
  z = _latents(64, 1)[:, 0]
  key = models.latent_key(z)
  noise = models.latent_noise(key, 4096).numpy()
  assert abs(noise.mean()) < 0.01 and abs(noise.std() - 1.0) < 0.01
  # Neighbouring pixels and rows are uncorrelated.
  for a, b in ((noise[:, :-1], noise[:, 1:]), (noise[:-1], noise[1:])):
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.01
  # Row 5 alone gets its noise in the batch; a change of one latent bit changes it.
  np.testing.assert_array_equal(models.latent_noise(key[5:6], 4096)[0], noise[5])
  next_up = np.nextafter(np.float32(z[5, 0]), np.float32(9))
  nudged = tf.tensor_scatter_nd_update(z, [[5, 0]], [next_up])
  moved = models.latent_noise(models.latent_key(nudged), 4096).numpy()
  assert abs(np.corrcoef(moved[5], noise[5])[0, 1]) < 0.1
  np.testing.assert_array_equal(moved[:5], noise[:5])


def test_noise_inputs_start_silent_then_vary_images_per_row_compiled_or_not():
  config = dataclasses.replace(TINY, noise_inputs=True)
  plain, _ = _build()
  noisy, _ = _build(config)
  z = _latents(3, 2)
  noisy_images, _ = models.generate_sequence(noisy, z)
  # The strength starts at 0: the same weights draw the same images as without noise.
  np.testing.assert_allclose(noisy_images, models.generate_sequence(plain, z)[0],
                             atol=1e-6)
  noisy.noise_strength.assign(0.5)
  images = models.generate_sequence(noisy, z)[0].numpy()
  # Pixel-scale noise: neighbouring pixels' changes are independent.
  change = np.arctanh(np.clip(images, -0.999999, 0.999999)) - np.arctanh(
      np.clip(noisy_images.numpy(), -0.999999, 0.999999))
  assert abs(np.std(change) - 0.5) < 0.05
  assert abs(np.corrcoef(change[..., :-1, 0].ravel(), change[..., 1:, 0].ravel())[0, 1]
             ) < 0.1
  # The noise follows each row's latents only, compiled or not.
  np.testing.assert_allclose(models.generate_sequence(noisy, z[1:2])[0], images[1:2],
                             atol=1e-6)
  compiled = tf.function(lambda z: models.generate_sequence(noisy, z)[0],
                         jit_compile=True)
  np.testing.assert_allclose(compiled(z), images, atol=1e-5)
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(models.generate_sequence(noisy, z, training=True)[0] ** 2)
  assert abs(float(tape.gradient(loss, noisy.noise_strength.strength))) > 0


def test_noise_rate_scales_how_far_an_adam_step_moves_the_strength():
  """Adam moves a weight by about its learning rate on its first step, whatever the
  gradient; `noise_rate` keeps the strength as rate x a weight, so it moves rate x."""
  z = _latents(3, 2)
  moved = {}
  for rate in (1.0, 0.1):
    generator, _ = _build(dataclasses.replace(TINY, noise_inputs=True, noise_rate=rate))
    generator.noise_strength.assign(0.5)
    assert float(generator.noise_strength.value) == pytest.approx(0.5)
    images = models.generate_sequence(generator, z)[0].numpy()
    if rate == 1.0:
      reference = images
    np.testing.assert_allclose(images, reference, atol=1e-6)  # The same strength.
    optimizer = keras.optimizers.Adam(0.01)
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(models.generate_sequence(generator, z, training=True)[0] ** 2)
    weight = generator.noise_strength.strength
    optimizer.apply_gradients([(tape.gradient(loss, weight), weight)])
    moved[rate] = abs(float(generator.noise_strength.value) - 0.5)
  assert moved[1.0] == pytest.approx(0.01, rel=1e-3)
  assert moved[0.1] == pytest.approx(0.001, rel=1e-3)


def test_noise_inputs_are_refused_without_latents_redrawn_every_step():
  from orca_gan import trainers
  with pytest.raises(ValueError, match='noise_inputs needs fast_z > 0'):
    dataclasses.replace(TINY, noise_inputs=True, fast_z=0)
  with pytest.raises(trainers.TrainingError, match='--g_noise .* use --fast_z above 0'):
    trainers.TrainConfig(g_noise=True, fast_z=0)


def test_pooled_features_average_and_spread_each_block_over_time():
  _, discriminator = _build()
  images = _images(3, 1)[:, 0]
  blocks = [b.numpy() for b in discriminator.conv_blocks(images)]
  features = {k: v.numpy() for k, v in models.pooled_features(discriminator, images).items()}
  assert sorted(features) == sorted(models.pooled_feature_names(TINY))
  for i, block in enumerate(blocks):  # [batch, frequency, time, channels]
    mean = block.mean(axis=2).reshape(3, -1)
    std = block.std(axis=2).reshape(3, -1)
    np.testing.assert_allclose(features[f'conv{i}_time_mean'], mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(features[f'conv{i}_time_mean_std'],
                               np.concatenate([mean, std], axis=-1), rtol=1e-4, atol=1e-5)
    assert std.max() > 0.0
  for pooling in ('time_mean', 'time_mean_std'):
    np.testing.assert_array_equal(features[f'conv_{pooling}'], np.concatenate(
        [features[f'conv{i}_{pooling}'] for i in range(len(blocks))], axis=-1))
