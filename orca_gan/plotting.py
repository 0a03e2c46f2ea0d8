"""Spectrogram plots with real axes: time in seconds, frequency in kHz, power in dB.

`plot_sequences` draws sequences of spectrogram images (generated or real), one row per
sequence with its windows side by side, so the x axis is continuous time. Used by
bin/generate.

Figures are drawn with matplotlib's object-oriented API on an Agg canvas, never through
pyplot: no global backend switch, no window, no figure registry to leak into, so it
works headless and from several threads.
"""

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from orca_gan import fileio
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
  """Grouped bars: one group per score, one bar per feature (bin/probe).

  Args:
    scores: {feature: {score name: value in [0, 1] or None}}, in drawing order.
    path: The PNG to write (atomically).
    title: Figure title.
  """
  features = list(scores)
  names = list(next(iter(scores.values())))
  figure = Figure(figsize=(1.6 + 1.4 * len(names), 3.6), dpi=_DPI)
  FigureCanvasAgg(figure)
  axes = figure.add_subplot(1, 1, 1)
  width = 0.8 / len(features)
  for i, feature in enumerate(features):
    values = [scores[feature][n] if scores[feature][n] is not None else 0.0
              for n in names]
    axes.bar(np.arange(len(names)) + (i - (len(features) - 1) / 2) * width, values,
             width, label=feature)
  axes.set_xticks(np.arange(len(names)), names)
  axes.set_ylim(0, 1)
  axes.set_ylabel('score (higher is better)')
  axes.legend(fontsize='small', loc='upper left', bbox_to_anchor=(1.0, 1.0))
  if title:
    axes.set_title(title, fontsize='medium')
  figure.tight_layout()
  _save_atomically(figure, path)
