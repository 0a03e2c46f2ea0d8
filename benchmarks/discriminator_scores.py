#!/usr/bin/env python3
"""How a run's discriminator scores windows with sound and windows with none.

  .venv/bin/python benchmarks/discriminator_scores.py --model <run>/export_2400/generator \
      --tfrecords <records> [--seed N] [--num_sequences 256]

Draws bin/evaluate's generated sequences for `--seed` and as many real sequences of
consecutive windows from the records (the training pipeline's sampler, seeded), and
runs the exported discriminator beside the generator (`<export>/discriminator`) over
each from its zero state, so every window is judged in the context of its own
sequence as in training. Splits the windows by `metrics.window_contrast_db` at
bin/evaluate's `--quiet_db` (`metrics.QUIET_DB`) and prints, for generated and real
windows, the share with no sound, the mean logit of each side, the mean logit at each
step of the sequences, and the share of windows with no sound among the tenth the
discriminator scores highest. If the generator's windows with no sound score above its
windows with sound, they are its least fake-looking output.
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import bench_util  # noqa: E402
from orca_gan import data  # noqa: E402
from orca_gan import export_lib  # noqa: E402
from orca_gan import metrics  # noqa: E402

_BATCH = 32


def judge(discriminator, sequences: np.ndarray) -> np.ndarray:
  """Logits [N, T] of sequences [N, T, H, W], each from the zero state."""
  import tensorflow as tf
  serve = discriminator.signatures['serving_default']
  return np.concatenate([
      serve(images=tf.constant(sequences[i:i + _BATCH, ..., None], tf.float32))
      ['logits'].numpy() for i in range(0, len(sequences), _BATCH)])


def describe(name: str, sequences: np.ndarray, logits: np.ndarray, transform) -> str:
  """One line of scores for sequences [N, T, H, W] and their logits [N, T]."""
  quiet = metrics.window_contrast_db(sequences.reshape(-1, *sequences.shape[-2:]),
                                     transform) < metrics.QUIET_DB
  flat = logits.ravel()
  top = np.argsort(-flat)[:max(1, len(flat) // 10)]

  def mean(x):
    return f'{x.mean():+.2f}' if len(x) else '-'

  return (f'{name:9s} {len(flat):5d} windows, {100 * quiet.mean():4.1f} % with no sound; '
          f'mean logit: no sound {mean(flat[quiet])}, with sound {mean(flat[~quiet])}; by '
          f'step {" ".join(f"{x:+.2f}" for x in logits.mean(axis=0))}; no sound among '
          f'the highest-scored tenth: {100 * quiet[top].mean():.1f} %')


def main():
  parser = bench_util.generator_diagnostic_args(__doc__.splitlines()[0], 256)
  args = parser.parse_args()
  generated, manifest, transform = bench_util.generated_and_records(args)
  generated = generated.reshape(args.num_sequences, args.seq_len, *generated.shape[-2:])
  discriminator = export_lib.load(
      os.path.join(os.path.dirname(os.path.abspath(args.model)), 'discriminator'),
      'discriminator')
  batches = -(-args.num_sequences // _BATCH)
  real_batches = data.sequence_dataset(args.tfrecords, _BATCH, args.seq_len,
                                       seed=args.seed, manifest=manifest).take(batches)
  real = np.concatenate([b.numpy()[..., 0] for b in real_batches])[:args.num_sequences]
  for name, sequences in (('generated', generated), ('real', real)):
    print(describe(name, sequences, judge(discriminator, sequences), transform))


if __name__ == '__main__':
  main()
