"""One measurement of benchmarks/train_bench.py, in its own process (so that peak RSS
and compilation caches are its own). Prints one JSON line.

  train_bench_child.py step --tfrecords R --logdir L --config JSON --design compiled|per-time-step \
      [--jit true|false] [--steps_per_loop N] [--steps N] [--warmup N]
  train_bench_child.py checkpoint --tfrecords R --logdir L --config JSON
"""

import argparse
import json
import os
import resource
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def _legacy_step(trainer):
  """The per-time-step training step bin/train used before the compiled step."""
  import tensorflow as tf
  g, d = trainer.generator, trainer.discriminator
  g_opt, d_opt = trainer.g_optimizer, trainer.d_optimizer
  config = trainer.config

  def d_grads(real, z, g_state, d_real_state, d_fake_state):
    with tf.GradientTape() as tape:
      fake = tf.stop_gradient(g(z, g_state, training=True)[0])
      real_logits, _, new_real = d(real, d_real_state, training=True)
      fake_logits, _, new_fake = d(fake, d_fake_state, training=True)
      loss = trainer.discriminator_loss(real_logits, fake_logits)
    grads = tape.gradient(loss, d.trainable_variables)
    metrics = {'d_loss': loss, 'd_real': tf.reduce_mean(tf.sigmoid(real_logits)),
               'd_fake': tf.reduce_mean(tf.sigmoid(fake_logits))}
    return grads, metrics, new_real, new_fake

  def g_grads(z, g_state, d_fake_state):
    with tf.GradientTape() as tape:
      fake, new_g_state = g(z, g_state, training=True)
      loss = trainer.generator_loss(d(fake, d_fake_state, training=True)[0])
    return tape.gradient(loss, g.trainable_variables), {'g_loss': loss}, new_g_state

  d_grads = tf.function(d_grads, jit_compile=trainer.jit)
  g_grads = tf.function(g_grads, jit_compile=trainer.jit)

  @tf.function
  def time_step(real_seq, t, states):
    g_state, d_real_state, d_fake_state = states
    z = trainer._noise()['z'][0][:, t]
    grads, d_metrics, new_real, new_fake = d_grads(real_seq[:, t], z, g_state,
                                                   d_real_state, d_fake_state)
    d_opt.apply_gradients(zip(grads, d.trainable_variables))
    grads, g_metrics, new_g = g_grads(z, g_state, d_fake_state)
    g_opt.apply_gradients(zip(grads, g.trainable_variables))
    metrics = dict(d_metrics, **g_metrics, d_grad_norm=tf.linalg.global_norm(grads))
    return (new_g, new_real, new_fake), metrics

  dataset = iter(trainer.dataset)

  def step():
    real_seq = tf.cast(next(dataset), tf.float32)[..., None] / 127.5 - 1.0
    b = config.batch_size
    # The zero start state: this step predates --g_start_state.
    states = (g.start_state(tf.zeros([b, g.config.z_dim])), d.initial_state(b),
              d.initial_state(b))
    totals = {}
    for t in range(config.seq_len):
      states, metrics = time_step(real_seq, tf.constant(t), states)
      for name, value in metrics.items():
        totals[name] = totals.get(name, 0.0) + float(value)
    trainer.step.assign_add(1)
    return totals

  return step


def child(args):
  import tensorflow as tf
  from orca_gan import trainers
  overrides = json.loads(args.config)
  config = trainers.TrainConfig(tfrecords=args.tfrecords, logdir=args.logdir,
                                jit_compile=args.jit, steps=10**9,
                                steps_per_loop=args.steps_per_loop, **overrides)
  trainer = trainers.GanTrainer(config, log=lambda line: None)
  if args.design == 'compiled':
    def step(count):
      trainer.run(count)
  else:
    legacy = _legacy_step(trainer)

    def step(count):
      for _ in range(count):
        legacy()
  for _ in range(args.warmup):
    step(1)
  trainer.pop_metrics()
  calls = args.steps // args.steps_per_loop
  start = time.perf_counter()
  for _ in range(calls):
    step(args.steps_per_loop)
  trainer.pop_metrics()   # Waits for the queued steps; the loop reads them once too.
  total = time.perf_counter() - start
  steps = calls * args.steps_per_loop
  print(json.dumps({
      'step_s': total / steps,
      'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      'devices': [d.device_type for d in tf.config.list_physical_devices()],
  }))


def checkpoint_child(args):
  """Save time and size of a checkpoint with and without the input position."""
  import tensorflow as tf
  from orca_gan import trainers
  config = trainers.TrainConfig(tfrecords=args.tfrecords, logdir=args.logdir,
                                steps=10**9, **json.loads(args.config))
  trainer = trainers.GanTrainer(config, log=lambda line: None)
  trainer.run(2)
  trainer.pop_metrics()
  results = {}
  for name, checkpoint in (('with input position', trainer.checkpoint),
                           ('models and optimizers only', tf.train.Checkpoint(
                               step=trainer.step, generator=trainer.generator,
                               discriminator=trainer.discriminator,
                               g_optimizer=trainer.g_optimizer,
                               d_optimizer=trainer.d_optimizer))):
    prefix = os.path.join(args.logdir, name.replace(' ', '_'), 'ckpt')
    start = time.perf_counter()
    path = checkpoint.write(prefix)
    save_s = time.perf_counter() - start
    size = sum(os.path.getsize(os.path.join(os.path.dirname(path), f))
               for f in os.listdir(os.path.dirname(path)))
    start = time.perf_counter()
    checkpoint.read(path).assert_existing_objects_matched()
    trainer.run(1)   # A restored input pipeline refills before the next step.
    trainer.pop_metrics()
    results[name] = {'save_s': save_s, 'restore_s': time.perf_counter() - start,
                     'mb': size / 2**20}
  print(json.dumps(results))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('mode', choices=('step', 'checkpoint'))
  parser.add_argument('--tfrecords', required=True)
  parser.add_argument('--logdir', required=True)
  parser.add_argument('--config', default='{}')
  parser.add_argument('--design', default='compiled')
  parser.add_argument('--jit', default='false')
  parser.add_argument('--steps_per_loop', type=int, default=1)
  parser.add_argument('--steps', type=int, default=20)
  parser.add_argument('--warmup', type=int, default=3)
  args = parser.parse_args()
  if args.mode == 'step':
    child(args)
  else:
    checkpoint_child(args)


if __name__ == '__main__':
  main()
