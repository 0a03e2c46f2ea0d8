#!/usr/bin/env python3
"""Where a generator's painted texture comes from: the lattice of its upsampling.

  .venv/bin/python benchmarks/speckle_lattice.py --model <run>/export_2400/generator \
      --tfrecords <records> [--seed N] [--num_sequences 64]

bin/evaluate's speckle (`metrics.speckle`, a pixel minus its 3x3 mean) of real windows
is random from window to window; a generator that paints one texture into every window
leaves it in the mean of its windows' speckle. This prints, for generated windows
(bin/evaluate's latents for `--seed`) and the kept real windows, how large that mean
speckle image is, how much of one window's speckle it explains, and which share of its
power (2-D Fourier, without the constant) sits on the frequencies of a P-pixel
lattice, P = 2, 4, 8, 16: a pattern that repeats every P pixels in time and frequency.
A stride-2 upsampling layer can make each pixel of a 2x2 cell with weights of its own
(a transposed convolution does), so k such layers stacked can paint a 2^k lattice.
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import bench_util  # noqa: E402
from orca_gan import evaluate_lib  # noqa: E402
from orca_gan import metrics  # noqa: E402

PERIODS = (2, 4, 8, 16)


def lattice_shares(image: np.ndarray) -> dict:
  """{period: share of `image`'s power (constant removed) on a period-pixel lattice}."""
  power = np.abs(np.fft.fft2(image - image.mean()))**2
  total = power.sum()
  shares = {}
  for period in PERIODS:
    step_f, step_t = image.shape[0] // period, image.shape[1] // period
    shares[period] = float(power[::step_f, ::step_t].sum() / total)
  return shares


def describe(name: str, windows: np.ndarray) -> str:
  """One line for a set of windows [N, H, W]."""
  texture = metrics.speckle(windows)
  mean = texture.mean(axis=0)
  flat = mean.ravel() - mean.mean()
  explained = np.mean([np.corrcoef(t.ravel(), flat)[0, 1] for t in texture])
  size = windows.shape[1] * windows.shape[2]
  shares = ', '.join(f'{p}: {s:.3f} ({p * p / size:.4f})'
                     for p, s in lattice_shares(mean).items())
  return (f'{name:9s} {len(windows):5d} windows; speckle {texture.std():.4f}, of their '
          f'mean {mean.std():.4f}, correlation of a window with it {explained:.2f}; '
          f'share of the mean on the P-pixel lattice (if spread evenly) {shares}')


def main():
  args = bench_util.generator_diagnostic_args(__doc__.splitlines()[0], 64).parse_args()
  generated, manifest, transform = bench_util.generated_and_records(args)
  print(describe('generated', generated))
  real = evaluate_lib.read_real(args.tfrecords, manifest, transform,
                                evaluate_lib.EvaluateConfig.top_fraction, args.seed)
  print(describe('real', real.kept_images))


if __name__ == '__main__':
  main()
