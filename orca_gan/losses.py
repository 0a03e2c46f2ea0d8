"""GAN losses as pure functions of discriminator outputs (TF-GAN `losses_impl` naming).

Logits are the discriminator's raw scores, any shape (e.g. [batch] for one time step or
[batch, time] for a sequence); high means "real". Every loss is averaged over all
elements and returned as a float32 scalar, whatever the dtype of the logits.

`LOSSES` maps a loss name to its `(generator_loss, discriminator_loss)` pair. For
`'wgan_gp'` the trainer adds `gradient_penalty` (times its weight, 10 in Gulrajani et
al.) to the discriminator loss.
"""

from typing import Callable, NamedTuple

import tensorflow as tf


def _mean(x) -> tf.Tensor:
  return tf.reduce_mean(tf.cast(x, tf.float32))


def nonsaturating_discriminator_loss(real_logits, fake_logits) -> tf.Tensor:
  """Standard GAN discriminator loss (Goodfellow et al. 2014).

  The sigmoid cross-entropy with real -> 1, fake -> 0:
  `mean(softplus(-D(x))) + mean(softplus(D(G(z))))`
  = `-mean(log sigmoid(D(x))) - mean(log(1 - sigmoid(D(G(z)))))`.

  Args:
    real_logits: Discriminator logits of real images, any shape.
    fake_logits: Discriminator logits of generated images, any shape.

  Returns:
    float32 scalar.
  """
  return (_mean(tf.nn.softplus(-tf.cast(real_logits, tf.float32))) +
          _mean(tf.nn.softplus(tf.cast(fake_logits, tf.float32))))


def nonsaturating_generator_loss(fake_logits) -> tf.Tensor:
  """Non-saturating generator loss (Goodfellow et al. 2014, section 3).

  `mean(softplus(-D(G(z))))` = `-mean(log sigmoid(D(G(z))))`: maximises the log
  probability of the fake being called real, which has strong gradients early in
  training where `log(1 - sigmoid(D(G(z))))` saturates.

  Args:
    fake_logits: Discriminator logits of generated images, any shape.

  Returns:
    float32 scalar.
  """
  return _mean(tf.nn.softplus(-tf.cast(fake_logits, tf.float32)))


def hinge_discriminator_loss(real_logits, fake_logits) -> tf.Tensor:
  """Hinge discriminator loss (Lim & Ye 2017; Miyato et al. 2018).

  `mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))))`.

  Args:
    real_logits: Discriminator logits of real images, any shape.
    fake_logits: Discriminator logits of generated images, any shape.

  Returns:
    float32 scalar.
  """
  return (_mean(tf.nn.relu(1.0 - tf.cast(real_logits, tf.float32))) +
          _mean(tf.nn.relu(1.0 + tf.cast(fake_logits, tf.float32))))


def hinge_generator_loss(fake_logits) -> tf.Tensor:
  """Hinge generator loss (Lim & Ye 2017; Miyato et al. 2018): `-mean(D(G(z)))`.

  Args:
    fake_logits: Discriminator logits of generated images, any shape.

  Returns:
    float32 scalar.
  """
  return -_mean(fake_logits)


def wasserstein_discriminator_loss(real_logits, fake_logits) -> tf.Tensor:
  """Wasserstein critic loss (Arjovsky et al. 2017; Gulrajani et al. 2017).

  `mean(D(G(z))) - mean(D(x))`: minus the critic's estimate of the Wasserstein-1
  distance. Needs a Lipschitz constraint on the critic, here `gradient_penalty`.

  Args:
    real_logits: Critic scores of real images, any shape.
    fake_logits: Critic scores of generated images, any shape.

  Returns:
    float32 scalar.
  """
  return _mean(fake_logits) - _mean(real_logits)


def wasserstein_generator_loss(fake_logits) -> tf.Tensor:
  """Wasserstein generator loss (Arjovsky et al. 2017): `-mean(D(G(z)))`.

  Args:
    fake_logits: Critic scores of generated images, any shape.

  Returns:
    float32 scalar.
  """
  return -_mean(fake_logits)


def gradient_penalty(critic_fn: Callable[[tf.Tensor], tf.Tensor], real, fake,
                     interpolation_weights, epsilon: float = 1e-10) -> tf.Tensor:
  """WGAN-GP two-sided gradient penalty (Gulrajani et al. 2017, eq. 3).

  `mean((||grad_x D(x_hat)||_2 - 1)^2)` with `x_hat = real + w * (fake - real)`.

  The per-sample gradients are taken as the gradient of the summed scores, which is
  exact only if each score depends on its own row alone: the critic must not use
  batch normalization. The norm is `sqrt(sum(g^2) + epsilon)` (as in TF-GAN) so that
  its own gradient stays finite where `g = 0`. Differentiable w.r.t. the critic's
  weights when called under an outer `GradientTape`.

  Args:
    critic_fn: Maps images of shape [batch, ...] to scores of shape [batch], e.g.
      `lambda x: discriminator(x, state, training=True)[0]` with the current step's
      discriminator state.
    real: Real images, shape [batch, ...].
    fake: Generated images, same shape.
    interpolation_weights: `w`, shape [batch, 1, 1, 1] (broadcastable to `real`),
      usually uniform in [0, 1]; drawn by the caller so that the penalty is
      deterministic given its inputs.
    epsilon: Added under the square root.

  Returns:
    float32 scalar.
  """
  real = tf.cast(real, tf.float32)
  fake = tf.cast(fake, tf.float32)
  weights = tf.cast(interpolation_weights, tf.float32)
  interpolated = real + weights * (fake - real)
  with tf.GradientTape() as tape:
    tape.watch(interpolated)
    scores = tf.cast(critic_fn(interpolated), tf.float32)   # [batch]
  gradients = tape.gradient(scores, interpolated)           # [batch, ...]
  axes = list(range(1, gradients.shape.rank))
  norms = tf.sqrt(tf.reduce_sum(tf.square(gradients), axis=axes) + epsilon)  # [batch]
  return tf.reduce_mean(tf.square(norms - 1.0))


def r1_penalty(critic_fn: Callable[[tf.Tensor], tf.Tensor], real) -> tf.Tensor:
  """Zero-centred gradient penalty on real data (R1, Mescheder et al. 2018, eq. 9).

  `mean(||grad_x D(x)||_2^2)` over the real images `x`; the trainer adds
  `r1_weight / 2` times it to the discriminator loss. It keeps the discriminator flat
  where the data is, which Mescheder et al. show makes GAN training converge locally
  where the unregularized game oscillates. As for `gradient_penalty`, the per-sample
  gradients are those of the summed scores: the critic must not couple the rows of a
  batch. Differentiable w.r.t. the critic's weights under an outer `GradientTape`.

  Args:
    critic_fn: Maps images of shape [batch, ...] to scores of shape [batch].
    real: Real images, shape [batch, ...].

  Returns:
    float32 scalar.
  """
  real = tf.cast(real, tf.float32)
  with tf.GradientTape() as tape:
    tape.watch(real)
    scores = tf.cast(critic_fn(real), tf.float32)   # [batch]
  gradients = tape.gradient(scores, real)           # [batch, ...]
  axes = list(range(1, gradients.shape.rank))
  return tf.reduce_mean(tf.reduce_sum(tf.square(gradients), axis=axes))


def lecam_penalty(real_logits, fake_logits, real_anchor, fake_anchor) -> tf.Tensor:
  """LeCam regularization (Tseng et al. 2021, eq. 3, as in their code).

  `mean(relu(D(x) - a_fake)^2) + mean(relu(a_real - D(G(z)))^2)`, where `a_real`
  and `a_fake` are moving averages of the discriminator's mean logits of real and
  generated images: it pulls each logit back towards the other side's recent mean
  once it has passed it, so the discriminator's scores cannot run away from each
  other on a small corpus; its minimiser is the LeCam divergence instead of the
  Jensen-Shannon one. The anchors are constants here.

  Args:
    real_logits: Discriminator logits of real images, any shape.
    fake_logits: Discriminator logits of generated images, any shape.
    real_anchor: `a_real`, a scalar.
    fake_anchor: `a_fake`, a scalar.

  Returns:
    float32 scalar.
  """
  real_logits = tf.cast(real_logits, tf.float32)
  fake_logits = tf.cast(fake_logits, tf.float32)
  return (_mean(tf.square(tf.nn.relu(real_logits - fake_anchor))) +
          _mean(tf.square(tf.nn.relu(real_anchor - fake_logits))))


class GanLoss(NamedTuple):
  """A generator loss and the discriminator loss it is trained against."""
  generator_loss: Callable[[tf.Tensor], tf.Tensor]
  discriminator_loss: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


LOSSES = {
    'nonsaturating': GanLoss(nonsaturating_generator_loss,
                             nonsaturating_discriminator_loss),
    'hinge': GanLoss(hinge_generator_loss, hinge_discriminator_loss),
    # The trainer adds `gradient_penalty` to the discriminator loss.
    'wgan_gp': GanLoss(wasserstein_generator_loss, wasserstein_discriminator_loss),
}
