"""Spectrogram plots with real axes: time in seconds, frequency in kHz, power in dB.

`plot_sequences` draws sequences of spectrogram images (generated or real), one row per
sequence with its windows side by side, so the x axis is continuous time (bin/generate);
`evaluation_report` is bin/evaluate's report; `plot_probe` bin/probe's scores.

Figures are drawn with matplotlib's object-oriented API on an Agg canvas, never through
pyplot: no global backend switch, no window, no figure registry to leak into, so it
works headless and from several threads.
"""

import io

import numpy as np
from matplotlib import gridspec
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from orca_gan import fileio
from orca_gan import metrics
from orca_gan import spectral

_COLORMAP = 'magma'
_DPI = 100
_WINDOW_WIDTH_IN = 2.2   # Width of one window in a row, inches ...
_MAX_ROW_WIDTH_IN = 16.0  # ... up to this, for long sequences.
_ROW_HEIGHT_IN = 1.6


def images_to_db(images, transform: spectral.SpectrogramConfig) -> np.ndarray:
  """Image values in [-1, 1] -> band power in dB re full scale. Shape preserved."""
  images = np.asarray(images, np.float64)
  return transform.db_min + (images + 1.0) / 2.0 * (transform.db_max - transform.db_min)


def _as_rows(images, size: int) -> np.ndarray:
  """[n, T, H, W] or [n, T, H, W, 1] -> [n, H, T * W], windows side by side."""
  images = np.asarray(images)
  if images.ndim == 5 and images.shape[-1] == 1:
    images = images[..., 0]
  if images.ndim != 4 or images.shape[2:] != (size, size) or 0 in images.shape[:2]:
    raise ValueError(f'images must have shape [n, T, {size}, {size}] or '
                     f'[n, T, {size}, {size}, 1] with n, T >= 1, got {images.shape}')
  n, steps, height, width = images.shape
  return images.transpose(0, 2, 1, 3).reshape(n, height, steps * width)


def plot_sequences(images, transform: spectral.SpectrogramConfig, path: str,
                   title: str = '', row_labels=None) -> None:
  """Writes a PNG with one spectrogram row per sequence.

  Each row shows the sequence's windows side by side (dotted lines at the joins), time
  in seconds on the x axis, 0 .. sample_rate_hz / 2 in kHz on the y axis, and one
  colour bar in dB (image value v is `db_min + (v + 1) / 2 * (db_max - db_min)`). The
  file is written under a temporary name in the same folder and renamed.

  Args:
    images: Values in [-1, 1], shape [n, T, size (freq, low -> high), size (time)] or
      [n, T, size, size, 1].
    transform: The spectrogram transform of the images (axes and dB scale).
    path: The PNG to write; its folder must exist.
    title: Figure title.
    row_labels: One label per row (e.g. 'seq 0'), or None.

  Raises:
    ValueError: For images of the wrong shape, or a wrong number of row labels.
  """
  rows = _as_rows(images, transform.image_size)       # [n, H, T * W]
  n, _, columns = rows.shape
  steps = columns // transform.image_size
  if row_labels is not None and len(row_labels) != n:
    raise ValueError(f'{len(row_labels)} row labels for {n} rows')
  duration_s = steps * transform.window_s
  top_khz = transform.sample_rate_hz / 2.0 / 1000.0

  width_in = min(_WINDOW_WIDTH_IN * steps, _MAX_ROW_WIDTH_IN) + 1.6
  height_in = _ROW_HEIGHT_IN * n + (1.0 if title else 0.7)
  figure = Figure(figsize=(width_in, height_in), dpi=_DPI, layout='constrained')
  FigureCanvasAgg(figure)
  axes = figure.subplots(n, 1, sharex=True, squeeze=False)[:, 0]
  for i, (ax, row) in enumerate(zip(axes, rows)):
    image = ax.imshow(images_to_db(row, transform), origin='lower', aspect='auto',
                      interpolation='nearest', cmap=_COLORMAP,
                      extent=(0.0, duration_s, 0.0, top_khz),
                      vmin=transform.db_min, vmax=transform.db_max)
    for join in range(1, steps):
      ax.axvline(join * transform.window_s, color='white', linestyle=':',
                 linewidth=0.8, alpha=0.6)
    ax.set_ylabel('frequency (kHz)', fontsize='small')
    if row_labels is not None:
      ax.set_title(str(row_labels[i]), loc='left', fontsize='small')
    ax.tick_params(labelsize='small')
  axes[-1].set_xlabel('time (s)')
  colorbar = figure.colorbar(image, ax=list(axes), aspect=max(20, 12 * n),
                             pad=0.01)
  colorbar.set_label('band power (dBFS)')
  if title:
    figure.suptitle(title, fontsize='medium')
  _save_atomically(figure, path)


def _save_atomically(figure: Figure, path: str) -> None:
  png = io.BytesIO()
  figure.savefig(png, format='png')
  fileio.write_bytes_atomic(path, png.getvalue())


def plot_probe(scores: dict, path: str, title: str = '') -> None:
  """One panel per score, one horizontal bar per feature (bin/probe).

  Bars are grey for the baselines, blue for trained features and orange for untrained
  ones, so that each trained number sits beside what it has to beat.

  Args:
    scores: {feature: {score name: value in [0, 1] or None}}, in drawing order (top
      to bottom).
    path: The PNG to write (atomically).
    title: Figure title.
  """
  features = list(scores)
  names = list(next(iter(scores.values())))
  colors = ['tab:blue' if f.startswith('trained ') else
            'tab:orange' if f.startswith('untrained ') else 'tab:grey' for f in features]
  figure = Figure(figsize=(2.0 + 2.2 * len(names), 1.2 + 0.2 * len(features)), dpi=_DPI)
  FigureCanvasAgg(figure)
  rows = np.arange(len(features))
  for i, name in enumerate(names):
    axes = figure.add_subplot(1, len(names), i + 1)
    values = [scores[f][name] for f in features]
    axes.barh(rows, [0.0 if v is None else v for v in values], color=colors)
    for row, value in zip(rows, values):
      axes.text(0.01 if value is None else min(value, 0.8) + 0.01, row,
                'n/a' if value is None else f'{value:.2f}', va='center',
                fontsize='x-small')
    axes.set_yticks(rows, features if i == 0 else [''] * len(features),
                    fontsize='small')
    axes.set_ylim(len(features) - 0.5, -0.5)
    axes.set_xlim(0, 1)
    axes.set_title(name, fontsize='medium')
    axes.grid(axis='x', alpha=0.3)
  if title:
    figure.suptitle(title, fontsize='medium')
  figure.tight_layout()
  _save_atomically(figure, path)


def _draw_sequence_rows(fig, grid, sequences, transform, label, image_norm):
  """One row per sequence: its windows side by side, time in s, frequency in kHz."""
  axes = []
  for row, sequence in enumerate(sequences):
    ax = fig.add_subplot(grid[row])
    strip = np.concatenate(list(sequence), axis=1)           # [h, T * w]
    duration_s = len(sequence) * transform.window_s
    image = ax.imshow(images_to_db(strip, transform), origin='lower', aspect='auto',
                      cmap=_COLORMAP,
                      extent=[0, duration_s, 0, transform.sample_rate_hz / 2000.0],
                      vmin=transform.db_min, vmax=transform.db_max,
                      interpolation='nearest')
    for t in range(1, len(sequence)):
      ax.axvline(t * transform.window_s, color='white', lw=0.5, alpha=0.6)
    ax.set_ylabel(f'{label} {row + 1}\nkHz', fontsize=8)
    ax.tick_params(labelsize=7)
    axes.append(ax)
    image_norm.append(image)
  if axes:
    axes[-1].set_xlabel('time (s)', fontsize=8)
  return axes


def _real_and_generated_histograms(ax, real, generated, colours: dict, xlabel: str,
                                   title: str, from_zero: bool = False) -> None:
  """Step histograms of a per-window value, real and generated, on shared bins
  (reaching 0 with `from_zero`); an empty set is left out."""
  values = {'real': np.asarray(real), 'generated': np.asarray(generated)}
  present = [v for v in values.values() if len(v)]
  low = min([v.min() for v in present] + ([0.0] if from_zero or not present else []))
  high = max([v.max() for v in present] + [low])
  bins = np.linspace(low, high + 1e-9, 30)
  for name, v in values.items():
    if len(v):
      ax.hist(v, bins=bins, histtype='step', density=True, color=colours[name],
              label=name)
  ax.set_xlabel(xlabel)
  ax.set_title(title, fontsize=9)
  ax.legend(fontsize=7)


def evaluation_report(path_or_file, result: dict, arrays: dict, gen_shown: np.ndarray,
                      real_shown: np.ndarray, transform, title: str) -> Figure:
  """Writes bin/evaluate's PNG report to `path_or_file` (a path or a binary file).

  Args:
    result: The metrics (as metrics.json holds them).
    arrays: The per-window arrays behind them (`evaluate_lib.compute_metrics`).
    gen_shown: [n, T, H, W] generated sequences to draw.
    real_shown: [m, T, H, W] real sequences to draw.
    transform: The spectrogram transform (axes and dB scale).
    title: The figure's first title line.

  Returns:
    The figure written.
  """
  rows = len(gen_shown) + len(real_shown)
  fig = Figure(figsize=(19, 8 + 1.3 * rows))
  FigureCanvasAgg(fig)
  outer = gridspec.GridSpec(2, 1, height_ratios=[8, 1.3 * rows], hspace=0.12,
                            figure=fig, top=0.93, bottom=0.04)
  stats = gridspec.GridSpecFromSubplotSpec(2, 4, subplot_spec=outer[0], hspace=0.45,
                                           wspace=0.3)
  colours = {'generated': 'tab:orange', 'real': 'tab:blue'}

  ax = fig.add_subplot(stats[0, 0])
  for name, key in (('real', 'real_centroids'), ('generated', 'gen_centroids')):
    c = arrays[key]
    ax.scatter(c[:, 0], c[:, 1], s=8, alpha=0.5, color=colours[name], label=name)
  ax.set_xlim(0, transform.window_s)
  ax.set_ylim(0, transform.sample_rate_hz / 2000.0)
  ax.set_xlabel('time in window (s)')
  ax.set_ylabel('frequency (kHz)')
  c = result['centroids']
  ax.set_title(f"Energy centroids (top {100 * c['top_fraction']:g}% pixels)\n"
               f"energy distance {c['energy_distance']:.3g}, p={c['p_value']:.3g}",
               fontsize=9)
  ax.legend(fontsize=7)

  ax = fig.add_subplot(stats[0, 1])
  finite = [arrays[k][np.isfinite(arrays[k])] for k in
            ('gen_to_real', 'gen_to_gen', 'real_to_real')]
  top = max([x.max() for x in finite if len(x)] + [1e-6])
  bins = np.linspace(0, top, 40)
  labels = ('generated -> real', 'generated -> generated', 'real -> real')
  for values, label, colour in zip(finite, labels,
                                   ('tab:orange', 'tab:red', 'tab:blue')):
    ax.hist(values, bins=bins, histtype='step', density=True, color=colour, label=label)
  p01 = result['nearest_neighbour']['train_to_train_p01']
  if p01 is not None and np.isfinite(p01):
    ax.axvline(p01, color='k', ls=':', lw=1, label='real 1st percentile')
  ax.set_xlabel('nearest-neighbour distance (features)')
  ax.set_title('Nearest neighbours (memorisation, collapse)', fontsize=9)
  ax.legend(fontsize=7)

  ax = fig.add_subplot(stats[0, 2])
  bins = np.linspace(-1, 1, 41)
  for key, label, colour, style in (
      ('gen_consecutive', 'generated, consecutive', 'tab:orange', '-'),
      ('real_consecutive', 'real, consecutive', 'tab:blue', '-'),
      ('gen_unrelated', 'generated, unrelated', 'tab:orange', ':'),
      ('real_unrelated', 'real, unrelated', 'tab:blue', ':')):
    if len(arrays[key]):
      ax.hist(arrays[key], bins=list(bins), histtype='step', density=True, color=colour,
              ls=style, label=label)
  ax.set_xlabel('Pearson correlation of two windows')
  ax.set_title('Temporal coherence', fontsize=9)
  ax.legend(fontsize=7)

  names = metrics.feature_names(transform.image_size)
  bands = [i for i, n in enumerate(names) if n.startswith('profile_')]
  ax = fig.add_subplot(stats[1, 0])
  edges = np.array([int(n.split('_')[2]) for n in np.array(names)[bands]] +
                   [transform.image_size])
  centres_khz = (edges[:-1] + edges[1:]) / 2.0 * transform.band_hz / 1000.0
  for name, key in (('real', 'real_features'), ('generated', 'gen_features')):
    profile = arrays[key][:, bands]
    mean, std = profile.mean(0), profile.std(0)
    ax.plot(centres_khz, mean, color=colours[name], label=name)
    ax.fill_between(centres_khz, mean - std, mean + std, color=colours[name], alpha=0.2)
  ax.set_xlabel('frequency (kHz)')
  ax.set_ylabel('mean image value')
  ax.set_title('Spectral profile (mean +- std)', fontsize=9)
  ax.legend(fontsize=7)

  for column, feature in ((1, 'envelope_std'), (2, 'flux_mean')):
    index = names.index(feature)
    _real_and_generated_histograms(
        fig.add_subplot(stats[1, column]), arrays['real_features'][:, index],
        arrays['gen_features'][:, index], colours, feature.replace('_', ' '),
        f'Feature {feature}')
  # The pixel-scale texture: how much of it (real windows carry about 3 dB) and
  # whether it is random, as in recordings, or painted alike into unrelated windows.
  _real_and_generated_histograms(
      fig.add_subplot(stats[0, 3]), arrays['real_unrelated_speckle'],
      arrays['gen_unrelated_speckle'], colours,
      'Pearson correlation of two windows\' speckle',
      'Speckle of unrelated windows (painted or random)', from_zero=True)
  _real_and_generated_histograms(
      fig.add_subplot(stats[1, 3]), arrays['real_speckle'], arrays['gen_speckle'],
      colours, 'std of a pixel minus its 3x3 mean (image units)',
      'Speckle (pixel-scale texture)', from_zero=True)

  if rows:
    strips = gridspec.GridSpecFromSubplotSpec(rows, 1, subplot_spec=outer[1],
                                              hspace=0.15)
    images: list = []
    axes = _draw_sequence_rows(fig, [strips[i] for i in range(len(gen_shown))], gen_shown,
                           transform, 'generated', images)
    axes += _draw_sequence_rows(
        fig, [strips[len(gen_shown) + i] for i in range(len(real_shown))], real_shown,
        transform, 'real', images)
    for ax in axes[:-1]:
      ax.tick_params(labelbottom=False)
      ax.set_xlabel('')
    bar = fig.colorbar(images[0], ax=fig.axes[-rows:], fraction=0.02, pad=0.01)
    bar.set_label('dB re full scale', fontsize=8)
  fd = result['frechet_distance']
  kd = result['kernel_distance']
  fig.suptitle(f"{title}\nFD {fd['generated_vs_real']:.3g} (same-size "
               f"{fd['generated_vs_real_same_size']:.3g}, real-vs-real floor "
               f"{fd['real_vs_real_floor']:.3g}; {fd['windows']['same_size']} windows "
               f"each, halves by {fd['floor_split']}), KID "
               f"{kd['generated_vs_real']:.3g} (floor {kd['real_vs_real_floor']:.3g})",
               fontsize=11)
  fig.savefig(path_or_file, dpi=80, format='png')
  return fig
