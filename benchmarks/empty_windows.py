#!/usr/bin/env python3
"""Which windows make a generator's frequency spread: sounds, or windows with none.

  .venv/bin/python benchmarks/empty_windows.py --model <run>/export_2400/generator \
      --tfrecords <records> [--seed N] [--num_sequences 256]

bin/evaluate's frequency spread is the standard deviation, over windows, of the
frequency centroid of each window's loudest 1 % of pixels. In a window that holds no
sound those pixels are speckle spread over the whole image, and the centroid falls at
the image's centre (1.5 s, about 4 kHz), far from where calls sit. This splits the
windows, generated (bin/evaluate's latents for `--seed`) and real (every stored window),
at a centroid of `--split_khz` and prints for each side its share, its contrast
(`metrics.window_contrast_db`: how many dB its loudest sound stands out) and the spread
with and without the windows above the split. bin/evaluate reports the same kind of
split by contrast alone (`quiet_share`, `std_khz_sounding`).

Then, for the windows that hold sound (contrast at least bin/evaluate's `--quiet_db`),
where in frequency their loudest 1 % of pixels lie: the share in each band of
`--bands_khz`, the quartiles of their frequency centroids, and the share in the lowest
row of the image alone; and how loud their pixels are (mean and 99.9th percentile, in
image units). A generator that draws its sounds too low, or too faint to outshine the
lowest row, or misses the higher calls, shows it here.

Last, when the windows with no sound come: their share at every step of the generated
sequences, and the share of consecutive pairs (generated: steps t and t + 1 of a
sequence; real: neighbouring windows of a recording) in which both hold no sound.

`--from_step K` leaves the first K windows of every generated sequence out of the first
two parts (with `--seq_len` above K): the windows a generator draws once its LSTM state
has left its zero start.
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import bench_util  # noqa: E402
from orca_gan import evaluate_lib  # noqa: E402
from orca_gan import metrics  # noqa: E402

# The loudest pixels of a window, as bin/evaluate counts them by default.
_TOP_FRACTION = evaluate_lib.EvaluateConfig.top_fraction


def describe(name: str, centroids: np.ndarray, contrast: np.ndarray,
             split_khz: float) -> str:
  """One line for a set of windows, from their energy centroids and contrast (dB)."""
  above = centroids[:, 1] > split_khz

  def mean(x, digits=2):
    return f'{x.mean():.{digits}f}' if len(x) else '-'

  return (f'{name:9s} {len(centroids):5d} windows; above {split_khz:g} kHz: '
          f'{100 * above.mean():4.1f} %, contrast {mean(contrast[above], 1)} dB (others '
          f'{mean(contrast[~above], 1)}), centroid {mean(centroids[above, 0])} s '
          f'{mean(centroids[above, 1])} kHz; frequency spread {centroids[:, 1].std():.2f} '
          f'kHz, without them {centroids[~above, 1].std():.2f}')


def loud_bands(name: str, images: np.ndarray, centroids: np.ndarray, contrast: np.ndarray,
               transform, bands_khz) -> str:
  """One line: where the loudest 1 % of pixels (`metrics.loudest_pixels`, bin/evaluate's
  --top_fraction) of the windows with sound (`contrast`, dB, at least bin/evaluate's
  --quiet_db) lie, the quartiles of their frequency `centroids`, the lowest row's share
  of those pixels, and the level of all their pixels (mean and 99.9th percentile)."""
  sounding = contrast >= metrics.QUIET_DB
  sounding_images = images[sounding]
  loud = metrics.loudest_pixels(sounding_images, _TOP_FRACTION)
  per_row = loud.sum(axis=(0, 2)) / loud.sum()
  row_khz = (np.arange(len(per_row)) + 0.5) * transform.band_hz / 1000.0  # Centres.
  edges = [0.0, *bands_khz, np.inf]
  shares = ' '.join(
      f'{per_row[(row_khz >= lo) & (row_khz < hi)].sum():.3f}'
      for lo, hi in zip(edges[:-1], edges[1:]))
  quartiles = np.quantile(centroids[sounding, 1], [0.25, 0.5, 0.75])
  # The lowest row (0 Hz to band_hz) is bright in every window, so in a faint window it
  # takes a share of the loudest pixels that louder sounds elsewhere would win.
  return (f'{name:9s} {sounding.sum():5d} windows with sound; loudest 1 % of pixels by '
          f'band: {shares}; centroid quartiles {" ".join(f"{q:.2f}" for q in quartiles)} '
          f'kHz; in the lowest row (0-{transform.band_hz:g} Hz) {per_row[0]:.3f}; pixel '
          f'level mean {sounding_images.mean():.3f}, 99.9th percentile '
          f'{np.quantile(sounding_images, 0.999):.3f}')


def quiet_in_time(generated_quiet: np.ndarray, real) -> str:
  """One line: windows with no sound by step of the sequences [N, T], and in pairs of
  consecutive windows, generated and real."""
  quiet = real.contrast_db < metrics.QUIET_DB
  order = np.lexsort((real.window_indices, real.file_ids))
  ids, index, quiet = real.file_ids[order], real.window_indices[order], quiet[order]
  neighbours = (ids[:-1] == ids[1:]) & (index[:-1] + 1 == index[1:])
  real_pairs = (quiet[:-1] & quiet[1:])[neighbours]
  by_step = ' '.join(f'{100 * q:.1f}' for q in generated_quiet.mean(axis=0))
  pairs = generated_quiet[:, :-1] & generated_quiet[:, 1:]
  return (f'no sound by step of the generated sequences: {by_step} % (real, any window: '
          f'{100 * quiet.mean():.1f} %); consecutive windows both without sound: '
          f'generated {100 * pairs.mean():.1f} % of {pairs.size} pairs, real '
          f'{100 * real_pairs.mean():.1f} % of {real_pairs.size}')


def main():
  parser = bench_util.generator_diagnostic_args(__doc__.splitlines()[0], 256)
  parser.add_argument('--split_khz', type=float, default=2.0)
  parser.add_argument('--bands_khz', default='0.125,0.5,1,2',
                      help='Edges of the frequency bands of the second part, in kHz.')
  parser.add_argument('--from_step', type=int, default=0,
                      help='Leave the first windows of every sequence out of the first '
                      'two parts.')
  args = parser.parse_args()
  if not 0 <= args.from_step < args.seq_len:
    parser.error(f'--from_step must be in [0, --seq_len), got {args.from_step}')
  bands_khz = [float(b) for b in args.bands_khz.split(',')]
  generated, manifest, transform = bench_util.generated_and_records(args)
  contrast = metrics.window_contrast_db(generated, transform)
  kept_steps = np.arange(len(generated)) % args.seq_len >= args.from_step
  later, later_contrast = generated[kept_steps], contrast[kept_steps]
  centroids = metrics.energy_centroids(later, transform, _TOP_FRACTION)
  print(describe('generated', centroids, later_contrast, args.split_khz))
  # bin/evaluate's streaming pass over the records.
  real = evaluate_lib.read_real(args.tfrecords, manifest, transform, _TOP_FRACTION,
                                args.seed)
  print(describe('real', real.centroids, real.contrast_db, args.split_khz))
  edges = ['0', *args.bands_khz.split(','), 'top']
  print('bands (kHz): ' + ' '.join(f'{lo}-{hi}' for lo, hi in zip(edges[:-1], edges[1:])))
  print(loud_bands('generated', later, centroids, later_contrast, transform, bands_khz))
  kept = ('' if len(real.kept_images) == len(real.centroids) else
          f' ({len(real.kept_images)} of {len(real.centroids)} windows)')
  print(loud_bands('real', real.kept_images, real.centroids[real.kept_positions],
                   real.contrast_db[real.kept_positions], transform, bands_khz) + kept)
  quiet = contrast < metrics.QUIET_DB
  print(quiet_in_time(quiet.reshape(args.num_sequences, -1), real))


if __name__ == '__main__':
  main()
