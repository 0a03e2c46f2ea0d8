"""Tests of orca_gan.losses against numpy references on shared numeric cases."""

import numpy as np
import pytest
import tensorflow as tf

from orca_gan import losses

# (real_logits, fake_logits) shared by every loss.
CASES = [
    ([0.0, 2.0], [-1.0, 3.0]),
    ([0.5, -0.5, 4.0], [0.0, -2.0, 1.5]),
    ([[1.0, -3.0], [0.25, 2.0]], [[-0.5, 0.0], [3.0, -4.0]]),  # [batch, time]
]


def _softplus(x):
  return np.log1p(np.exp(x))


def _relu(x):
  return np.maximum(x, 0.0)


# name -> (generator loss reference, discriminator loss reference)
REFERENCES = {
    'nonsaturating': (
        lambda fake: np.mean(_softplus(-fake)),
        lambda real, fake: np.mean(_softplus(-real)) + np.mean(_softplus(fake))),
    'hinge': (
        lambda fake: -np.mean(fake),
        lambda real, fake: np.mean(_relu(1.0 - real)) + np.mean(_relu(1.0 + fake))),
    'wgan_gp': (
        lambda fake: -np.mean(fake),
        lambda real, fake: np.mean(fake) - np.mean(real)),
}


def test_losses_table_has_every_kind():
  assert set(losses.LOSSES) == set(REFERENCES)


@pytest.mark.parametrize('name', sorted(REFERENCES))
@pytest.mark.parametrize('real, fake', CASES)
def test_discriminator_loss_matches_numpy(name, real, fake):
  loss = losses.LOSSES[name].discriminator_loss(tf.constant(real), tf.constant(fake))
  expected = REFERENCES[name][1](np.array(real), np.array(fake))
  assert loss.shape == () and loss.dtype == tf.float32
  np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize('name', sorted(REFERENCES))
@pytest.mark.parametrize('real, fake', CASES)
def test_generator_loss_matches_numpy(name, real, fake):
  del real  # Unused: the generator loss sees only the fakes.
  loss = losses.LOSSES[name].generator_loss(tf.constant(fake))
  expected = REFERENCES[name][0](np.array(fake))
  assert loss.shape == () and loss.dtype == tf.float32
  np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-6)


def test_hand_computed_case():
  real, fake = tf.constant([0.0, 2.0]), tf.constant([-1.0, 3.0])
  log2 = np.log(2.0)
  nonsat_d = (log2 + np.log1p(np.exp(-2.0))) / 2 + (np.log1p(np.exp(-1.0)) +
                                                    np.log1p(np.exp(3.0))) / 2
  np.testing.assert_allclose(
      losses.nonsaturating_discriminator_loss(real, fake), nonsat_d, rtol=1e-6)
  np.testing.assert_allclose(
      losses.nonsaturating_generator_loss(fake),
      (np.log1p(np.exp(1.0)) + np.log1p(np.exp(-3.0))) / 2, rtol=1e-6)
  # relu(1 - [0, 2]) = [1, 0]; relu(1 + [-1, 3]) = [0, 4].
  np.testing.assert_allclose(losses.hinge_discriminator_loss(real, fake), 0.5 + 2.0)
  np.testing.assert_allclose(losses.hinge_generator_loss(fake), -1.0)
  np.testing.assert_allclose(losses.wasserstein_discriminator_loss(real, fake), 0.0)
  np.testing.assert_allclose(losses.wasserstein_generator_loss(fake), -1.0)


@pytest.mark.parametrize('dtype', [tf.float16, tf.bfloat16, tf.float64])
def test_losses_return_float32(dtype):
  real, fake = tf.constant([0.0, 2.0], dtype), tf.constant([-1.0, 3.0], dtype)
  for pair in losses.LOSSES.values():
    assert pair.discriminator_loss(real, fake).dtype == tf.float32
    assert pair.generator_loss(fake).dtype == tf.float32


def test_nonsaturating_discriminator_loss_limits():
  big = tf.constant([30.0, 50.0])
  confident_and_right = losses.nonsaturating_discriminator_loss(big, -big)
  confident_and_wrong = losses.nonsaturating_discriminator_loss(-big, big)
  assert confident_and_right.numpy() < 1e-12
  np.testing.assert_allclose(confident_and_wrong.numpy(), 2 * 40.0, rtol=1e-6)


def test_nonsaturating_losses_are_stable_for_huge_logits():
  huge = tf.constant([1e4, -1e4])
  assert np.isfinite(losses.nonsaturating_discriminator_loss(huge, huge).numpy())
  assert np.isfinite(losses.nonsaturating_generator_loss(huge).numpy())


def _linear_critic(direction):
  direction = tf.constant(direction, tf.float32)
  return lambda x: tf.reduce_sum(x * direction, axis=[1, 2, 3])


def _random_batch(seed, shape=(3, 4, 4, 1)):
  rng = np.random.default_rng(seed)
  real = rng.uniform(-1, 1, shape).astype(np.float32)
  fake = rng.uniform(-1, 1, shape).astype(np.float32)
  weights = rng.uniform(0, 1, (shape[0], 1, 1, 1)).astype(np.float32)
  return real, fake, weights


def test_gradient_penalty_is_zero_for_unit_norm_linear_critic():
  direction = np.random.default_rng(0).normal(size=(4, 4, 1))
  direction /= np.linalg.norm(direction)
  penalty = losses.gradient_penalty(_linear_critic(direction), *_random_batch(1))
  assert penalty.shape == () and penalty.dtype == tf.float32
  np.testing.assert_allclose(penalty.numpy(), 0.0, atol=1e-10)


@pytest.mark.parametrize('scale', [0.0, 0.5, 3.0])
def test_gradient_penalty_of_linear_critic(scale):
  direction = np.random.default_rng(2).normal(size=(4, 4, 1))
  direction *= scale / np.linalg.norm(direction)
  penalty = losses.gradient_penalty(_linear_critic(direction), *_random_batch(3))
  # The norm is sqrt(sum(g^2) + 1e-10): 1e-5 rather than 0 for scale 0.
  expected = (np.sqrt(scale**2 + 1e-10) - 1.0)**2
  np.testing.assert_allclose(penalty.numpy(), expected, rtol=1e-5)


def test_gradient_penalty_interpolates_per_sample():
  # critic(x) = sum(x^2) / 2 has gradient x, so the penalty is a function of x_hat.
  real, fake, weights = _random_batch(4)
  penalty = losses.gradient_penalty(
      lambda x: 0.5 * tf.reduce_sum(x**2, axis=[1, 2, 3]), real, fake, weights)
  x_hat = real + weights * (fake - real)
  norms = np.sqrt(np.sum(x_hat.astype(np.float64)**2, axis=(1, 2, 3)))
  np.testing.assert_allclose(penalty.numpy(), np.mean((norms - 1.0)**2), rtol=1e-5)


def test_r1_penalty_is_the_mean_squared_gradient_norm_at_real_data():
  # critic(x) = sum(x^3) / 3 has gradient x^2: the penalty depends on each real row.
  real, _, _ = _random_batch(6)
  penalty = losses.r1_penalty(lambda x: tf.reduce_sum(x**3, axis=[1, 2, 3]) / 3, real)
  expected = np.mean(np.sum(real.astype(np.float64)**4, axis=(1, 2, 3)))
  assert penalty.shape == () and penalty.dtype == tf.float32
  np.testing.assert_allclose(penalty.numpy(), expected, rtol=1e-5)
  direction = tf.Variable(tf.fill([4, 4, 1], 0.5))
  with tf.GradientTape() as tape:
    penalty = losses.r1_penalty(lambda x: tf.reduce_sum(x * direction, axis=[1, 2, 3]),
                                real)
  # ||direction||^2 = 16 x 0.25 = 4 for every row; d/du ||u||^2 = 2u.
  np.testing.assert_allclose(penalty.numpy(), 4.0, rtol=1e-6)
  np.testing.assert_allclose(tape.gradient(penalty, direction).numpy(), 1.0, rtol=1e-6)


def test_lecam_penalty_pulls_only_scores_past_the_other_sides_average():
  # relu([2, -1] - (-0.5))^2 = [6.25, 0]; relu(1.5 - [3, 0.5])^2 = [0, 1].
  real, fake = tf.constant([2.0, -1.0]), tf.constant([3.0, 0.5])
  penalty = losses.lecam_penalty(real, fake, real_anchor=1.5, fake_anchor=-0.5)
  np.testing.assert_allclose(penalty.numpy(), 6.25 / 2 + 1.0 / 2, rtol=1e-6)
  # Scores on their own side of the other's average cost nothing.
  assert float(losses.lecam_penalty(real - 10.0, fake + 10.0, 1.5, -0.5)) == 0.0
  half = losses.lecam_penalty(tf.cast(real, tf.float16), tf.cast(fake, tf.float16),
                              1.5, -0.5)
  assert half.dtype == tf.float32


def test_gradient_penalty_is_differentiable_wrt_critic_weights():
  direction = tf.Variable(tf.fill([4, 4, 1], 0.5))  # ||direction|| = 2
  with tf.GradientTape() as tape:
    penalty = losses.gradient_penalty(
        lambda x: tf.reduce_sum(x * direction, axis=[1, 2, 3]), *_random_batch(5))
  gradient = tape.gradient(penalty, direction)
  # d/du (||u|| - 1)^2 = 2 (||u|| - 1) u / ||u|| = u here.
  np.testing.assert_allclose(gradient.numpy(), 0.5, rtol=1e-5)
