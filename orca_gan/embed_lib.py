"""The discriminator as an embedding of raw audio (the library behind bin/embed).

Audio files (or make_tfrecords output) go in; one embedding per `window_s` window comes
out: a pooled convolution feature of the discriminator (`EmbedConfig.embedding`, by
default `default_embedding`: the second-to-last block's mean and standard deviation over
time, `conv3_time_mean_std` at 128 px), or its LSTM output, `d_lstm_units` wide.
Windows that sound alike get nearby embeddings, so a short call clip can be used as a
query to find similar windows in hours of tape, and the whole corpus can be browsed in
TensorBoard's Projector.

The windows are the very ones the model was trained on: the transform comes from the
model's metadata, audio goes through `prepare_tfrecords.convert_file` with uint8 storage
and then `records.dequantize`, exactly as make_tfrecords + the reader do. Windows
computed from audio are therefore bit-identical to those read from (uint8) TFRecords made
with the same transform, and so are their embeddings.

Context (`EmbedConfig.context`):
* 'file': each file's windows run as one sequence through the LSTM from the zero state,
  the state carried from window to window (and from chunk to chunk, through the
  `discriminate_from_state` signature). A window's embedding then depends on what came
  before it in the file, as during training.
* 'window': every window is embedded from the zero state, independently of its
  neighbours. The first window of a file gets the same embedding in both modes.

A query clip is embedded the same way as the corpus: with 'window' context each of its
windows from the zero state; with 'file' context the clip is its own sequence from the
zero state. That is an asymmetry: corpus windows deep in a tape carry the context of the
windows before them, the query does not (pooled features have no context at all). A
clip shorter than a window fills its window as `EmbedConfig.short_clip` says (tiled by
default: zero padding is digital silence, unlike anything on a tape); a clip of several
windows is represented by the mean of its windows' embeddings. Similarity is the cosine
of the angle between embeddings.

Outputs in `output_dir`, each written under a temporary name and renamed when complete:
* `embeddings.npy`: float32 [N, embedding size], one row per window, in corpus order
  (TFRecord files in manifest order, then audio files in `--input` order; windows in time
  order).
* `metadata.tsv`: header `file<TAB>start_s<TAB>label`, then row i describes row i of
  embeddings.npy: the source file's path, the window's start in seconds from the file's
  start (`window_index * window_s`), and the call-type label found in the file name by
  `CALL_LABEL_RE` (empty if none). Tabs and line breaks in paths become spaces.
* `embeddings.tsv` + `projector_config.pbtxt`: for `tensorboard --logdir OUTPUT_DIR`
  (Projector tab). The Projector plugin reads TSV tensors whole into memory, so when N
  exceeds `projector_max_rows` (default 100 000 windows, about 83 h of audio)
  embeddings.tsv holds every k-th row only (k = ceil(N / projector_max_rows)) and
  `projector_metadata.tsv` the matching metadata rows; embeddings.npy and metadata.tsv
  always hold everything.
* `query_ranking.tsv` (with a query): header
  `rank<TAB>score<TAB>file<TAB>start_s<TAB>label`, then the `top_k` windows most
  similar to the query, best first (score: cosine similarity).

Memory stays bounded for hours of audio: files are decoded, transformed and embedded one
at a time (a few in flight, one per worker), embeddings are appended to a temporary raw
float32 file, and everything after that (the .npy, the ranking, the projector TSV) is
computed in blocks of rows.
"""

import contextlib
import dataclasses
import functools
import itertools
import math
import os
import re
import time

import numpy as np
import tensorflow as tf

from orca_gan import audio_io
from orca_gan import configs
from orca_gan import data
from orca_gan import fileio
from orca_gan import prepare_tfrecords
from orca_gan import records
from orca_gan import spectral
from orca_gan import workers

CONTEXTS = ('file', 'window')
SHORT_CLIP_MODES = ('zeros', 'tile', 'noise_floor')

# A call type of the Ford-Osborne catalogue in a file name: S (southern resident) or
# N (northern resident), an optional '_' or '-', then the number; leading zeros are
# dropped. It must not follow a letter, and only the file's base name is searched, so
# 'S_1.wav', 'FO-S01.mp3', 'S_33_a.wav', 'S_33b.wav', 'FO-S33-RJ-a.mp3' and
# 'L_S_6_maybe.wav' give S1, S1, S33, S33, S33 and S6, while 'scene_02.mp3' and
# 'AIS_2.wav' give no label. Case-sensitive.
CALL_LABEL_RE = re.compile(r'(?<![A-Za-z])([SN])[_-]?(\d+)')

EMBEDDINGS_NPY = 'embeddings.npy'
METADATA_TSV = 'metadata.tsv'
EMBEDDINGS_TSV = 'embeddings.tsv'
PROJECTOR_METADATA_TSV = 'projector_metadata.tsv'
PROJECTOR_CONFIG = 'projector_config.pbtxt'
QUERY_RANKING_TSV = 'query_ranking.tsv'
_OUTPUTS = (EMBEDDINGS_NPY, METADATA_TSV, EMBEDDINGS_TSV, PROJECTOR_METADATA_TSV,
            PROJECTOR_CONFIG, QUERY_RANKING_TSV)
_METADATA_HEADER = 'file\tstart_s\tlabel\n'
_RANKING_HEADER = 'rank\tscore\tfile\tstart_s\tlabel\n'
# Rows per block when reading embeddings back (ranking, .npy and TSV writing).
_BLOCK_ROWS = 65536


UsageError = configs.UsageError  # The one usage error of every app.


class NothingEmbeddedError(RuntimeError):
  """No window could be embedded (every file was skipped); nothing is written."""


@dataclasses.dataclass(frozen=True)
class EmbedPaths:
  """What bin/embed reads and writes; its flags map 1:1 to these fields (beside
  `EmbedConfig`'s)."""
  model: str = configs.flag('',
      'Exported discriminator SavedModel folder (e.g. <logdir>/export/discriminator). '
      'Its metadata gives the transform.', required=True)
  input: tuple = configs.flag((),
      'Audio file, folder (searched recursively) or glob; repeatable. wav, flac, ogg '
      'and mp3 at any sample rate, mono or stereo.')
  tfrecords: str = configs.flag('',
      "A make_tfrecords folder made with the model's transform; its windows are "
      'embedded too (before --input files).')
  output_dir: str = configs.flag('',
      'Where embeddings.npy, metadata.tsv, the Projector files and query_ranking.tsv '
      'go (earlier ones replaced).', required=True)
  query: str = configs.flag('',
      'A clip to rank every corpus window against, by cosine similarity of embeddings: '
      'padded if shorter than a window, the mean over its windows if longer. Embedded '
      'like the corpus under --context (with file context, as its own sequence from '
      'the zero state).')

  def __post_init__(self):
    configs.check(self, UsageError)
    if not self.input and not self.tfrecords:
      raise UsageError('give audio with --input (a file, folder or glob; repeatable) '
                       'and/or a make_tfrecords folder with --tfrecords')


@dataclasses.dataclass(frozen=True)
class EmbedConfig:
  """How to embed. Flags of bin/embed map 1:1 to these fields.

  Attributes:
    embedding: The name of a pooled convolution feature
      (`models.pooled_feature_names`), which depends on its window alone, or 'lstm'
      (the discriminator's LSTM output). '' (the default): `default_embedding`.
    context: 'file' (each file one sequence, LSTM state carried) or 'window' (every
      window from the zero state); for 'lstm' only.
    pad_short: Keep recordings shorter than one window as one padded window.
    short_clip: How the rest of such a window is filled (`fill_short_window`).
    channel: 'mix' (mean of all channels) or a channel index ('0', '1', ...).
    num_workers: Audio files decoded and transformed at once.
    top_k: Windows listed in query_ranking.tsv.
    chunk_windows: Windows per discriminator call (bounds memory).
    projector_max_rows: At most this many rows in embeddings.tsv (see module doc).
  """
  embedding: str = configs.flag('',
      "lstm: the discriminator's LSTM output; or a pooled convolution feature of each "
      'window (conv<i>_time_mean: block i averaged over time; conv<i>_time_mean_std: '
      'its mean and standard deviation over time; conv_time_mean: all blocks averaged; '
      'conv_grid: every block max-pooled to 4x4). Default: the second-to-last '
      "block's mean and standard deviation (conv3_time_mean_std at 128 px; models "
      'exported without it: conv1_time_mean, then lstm). bin/probe measures which '
      'sorts your labels best.')
  context: str = configs.flag('file',
      "file: each file's windows are one sequence through the discriminator LSTM, its "
      'state carried window to window; window: every window from the zero state, '
      'independent of its neighbours.',
      choices=CONTEXTS)
  pad_short: bool = configs.flag(True,
      'Keep recordings shorter than one window as one padded window (call clips are '
      'short; see --short_clip) instead of skipping them.')
  short_clip: str = configs.flag('tile',
      'How a recording shorter than one window fills the rest of it: zeros (digital '
      'silence, as make_tfrecords pads), tile (the clip repeated) or noise_floor (each '
      "band at the clip's quietest level).",
      choices=SHORT_CLIP_MODES)
  channel: str = configs.flag('mix', "'mix' (mean of channels) or a channel index.")
  num_workers: int = configs.flag(2, 'Audio files decoded at once (one per core).')
  top_k: int = configs.flag(20, 'Windows listed in query_ranking.tsv.')
  chunk_windows: int = configs.flag(64,
      'Windows per discriminator call (bounds memory).')
  projector_max_rows: int = configs.flag(100_000,
      'Rows in embeddings.tsv for the TensorBoard Projector; a larger corpus gets every '
      'k-th row there (embeddings.npy holds all).')

  def __post_init__(self):
    configs.check(self, UsageError)
    if self.channel != 'mix' and not self.channel.isdigit():
      raise UsageError("--channel must be 'mix' or a channel index, got "
                       f'{self.channel!r}')
    for name in ('num_workers', 'top_k', 'chunk_windows', 'projector_max_rows'):
      if getattr(self, name) < 1:
        raise UsageError(f'--{name} must be at least 1, got {getattr(self, name)}')


@dataclasses.dataclass
class FileWindows:
  """The windows of one recording, in the storage dtype.

  Attributes:
    path: The recording.
    stored: Shape [windows, H (freq), W (time)]; uint8 from audio, the manifest's dtype
      from TFRecords. Window i starts at i * window_s.
    duration_s: Length of the recording.
  """
  path: str
  stored: np.ndarray
  duration_s: float


@dataclasses.dataclass
class RankedWindow:
  rank: int
  score: float
  file: str
  start_s: str
  label: str


@dataclasses.dataclass
class EmbedSummary:
  output_dir: str
  embedding: str = 'lstm'
  context: str = 'file'
  files: int = 0
  skipped: int = 0
  windows: int = 0
  units: int = 0
  audio_s: float = 0.0
  wall_s: float = 0.0
  projector_rows: int = 0
  query: str | None = None
  query_windows: int = 0
  ranking: list = dataclasses.field(default_factory=list)  # RankedWindow, best first.

  @property
  def realtime_factor(self) -> float:
    return self.audio_s / max(self.wall_s, 1e-9)

  def line(self) -> str:
    kind = (f'lstm, context {self.context}' if self.embedding == 'lstm' else
            self.embedding)
    return (f'embed: embedded {self.windows} windows ({self.units}-d {kind}) of '
            f'{self.files} files, skipped {self.skipped}, '
            f'{self.audio_s / 3600:.3f} h of audio at {self.realtime_factor:.0f}x '
            f'realtime -> {self.output_dir}; browse with: tensorboard --logdir '
            f'{self.output_dir}')


def label_from_filename(path: str) -> str:
  """The call-type label in a file's base name (see `CALL_LABEL_RE`), or ''."""
  stem = os.path.splitext(os.path.basename(path))[0]
  match = CALL_LABEL_RE.search(stem)
  return f'{match[1]}{int(match[2])}' if match else ''


# ------------------------------------------------------------------------ the model

def embedding_names(loaded_model) -> list:
  """The embeddings an exported discriminator offers: 'lstm' and its pooled features."""
  if 'features' not in loaded_model.signatures:  # Exported before pooled features.
    return ['lstm']
  return ['lstm'] + sorted(loaded_model.signatures['features'].structured_outputs)


def default_embedding(loaded_model) -> str:
  """The embedding bin/embed uses unless told: the second-to-last convolution block's
  mean and standard deviation over time (`conv3_time_mean_std` at 128 px). On every
  abstraction_bench seed measured it told kinds of sound apart better than the
  spectrogram, and with tiled clips it retrieves call types as well as the spectrogram,
  which no other feature that good at kinds of sound does (benchmarks/README.md). For
  models exported before it: `conv1_time_mean`, then 'lstm'."""
  names = embedding_names(loaded_model)
  blocks = loaded_model.model_config.num_resolutions
  for name in (f'conv{max(blocks - 2, 0)}_time_mean_std', 'conv1_time_mean'):
    if name in names:
      return name
  return 'lstm'


def resolved_config(loaded_model, config: EmbedConfig | None) -> EmbedConfig:
  """`config` (default: `EmbedConfig()`) with its embedding named: '' becomes
  `default_embedding(loaded_model)`."""
  config = config or EmbedConfig()
  if config.embedding:
    return config
  return dataclasses.replace(config, embedding=default_embedding(loaded_model))


def check_embedding(loaded_model, embedding: str) -> None:
  """Raises UsageError unless the model offers `embedding`."""
  names = embedding_names(loaded_model)
  if embedding not in names:
    raise UsageError(f'--embedding {embedding}: the model offers {", ".join(names)}')


def embedding_size(loaded_model, embedding: str = 'lstm') -> int:
  if embedding == 'lstm':
    return loaded_model.model_config.d_lstm_units
  return int(loaded_model.signatures['features'].structured_outputs[embedding].shape[-1])


def embed_windows(loaded_model, images, context: str = 'file',
                  chunk_windows: int = 64, embedding: str = 'lstm') -> np.ndarray:
  """Embeds the consecutive windows of one recording.

  Args:
    loaded_model: An exported discriminator, from `export_lib.load`.
    images: Shape [N, H, W]: float32 in [-1, 1], or stored uint8 / float16 values
      (dequantized chunk by chunk with `records.dequantize`).
    context: 'file': the N windows are one sequence from the zero state, the LSTM state
      carried across chunks; 'window': each window from the zero state.
    chunk_windows: Windows per call of the model.
    embedding: 'lstm', or a pooled feature (then `context` does not matter).

  Returns:
    float32 embeddings, shape [N, embedding_size(loaded_model, embedding)].
  """
  if context not in CONTEXTS:
    raise ValueError(f'context must be one of {CONTEXTS}, got {context!r}')
  if embedding != 'lstm':
    return pooled_embeddings(loaded_model, images, chunk_windows)[embedding]
  units = embedding_size(loaded_model)
  count = len(images)
  embeddings = np.empty([count, units], np.float32)
  if context == 'window':
    serve = loaded_model.signatures['serving_default']
    for first in range(0, count, chunk_windows):
      x = data.to_model_input(images[first:first + chunk_windows])[:, None]  # [c, 1, H, W, 1]
      embeddings[first:first + len(x)] = serve(images=x)['embeddings'][:, 0].numpy()
    return embeddings
  from_state = loaded_model.signatures['discriminate_from_state']
  state_h = state_c = tf.zeros([1, units], tf.float32)
  for first in range(0, count, chunk_windows):
    x = data.to_model_input(images[first:first + chunk_windows])[None]  # [1, c, H, W, 1]
    result = from_state(images=x, state_h=state_h, state_c=state_c)
    embeddings[first:first + x.shape[1]] = result['embeddings'][0].numpy()
    state_h, state_c = result['state_h'], result['state_c']
  return embeddings


def pooled_embeddings(loaded_model, images, chunk_windows: int = 64) -> dict:
  """Every pooled convolution feature of every window, from one pass of the model.

  Args:
    loaded_model: An exported discriminator with the `features` signature.
    images: Shape [N, H, W], as for `embed_windows`.
    chunk_windows: Windows per call of the model.

  Returns:
    {name: float32 [N, size]} for every name of `models.pooled_feature_names`.
  """
  features = loaded_model.signatures['features']
  parts: dict = {}
  for first in range(0, len(images), chunk_windows):
    x = data.to_model_input(images[first:first + chunk_windows])[None]  # [1, c, H, W, 1]
    for name, value in features(images=x).items():
      parts.setdefault(name, []).append(value[0].numpy())
  return {name: np.concatenate(value) for name, value in parts.items()}


# ---------------------------------------------------------------------- the windows

def fill_short_window(stored: np.ndarray, covered_s: float, window_s: float,
                      mode: str) -> np.ndarray:
  """The one window of a clip shorter than a window, its uncovered columns filled.

  make_tfrecords pads a short clip with zeros: digital silence, the bottom of the dB
  range, which no tape holds, so a short clip's window looks mostly like nothing a
  model saw in training.

  Args:
    stored: [1, H, W] stored window (uint8) of the clip, starting with the clip.
    covered_s: The clip's duration.
    window_s: The window length.
    mode: 'zeros' (as stored), 'tile' (the clip's columns repeated across the window)
      or 'noise_floor' (each band's quietest covered value: the clip's own floor).

  Returns:
    [1, H, W], the same dtype.
  """
  if mode not in SHORT_CLIP_MODES:
    raise ValueError(f'short-clip mode must be one of {SHORT_CLIP_MODES}, got {mode!r}')
  width = stored.shape[-1]
  covered = min(width, max(1, int(math.ceil(covered_s / window_s * width))))
  if mode == 'zeros' or covered == width:
    return stored
  image = stored[0]
  if mode == 'tile':
    filled = image[:, np.arange(width) % covered]
  else:
    filled = image.copy()
    filled[:, covered:] = image[:, :covered].min(axis=1, keepdims=True)
  return filled[None]


def audio_windows(path: str, transform: spectral.SpectrogramConfig, channel: str = 'mix',
                  pad_short: bool = True, short_clip: str = 'zeros') -> FileWindows:
  """Decodes one audio file and computes its windows, exactly as make_tfrecords does;
  a file shorter than one window is filled as `short_clip` says (`fill_short_window`).

  Raises:
    audio_io.AudioError: The file cannot be used; the message says why.
  """
  converted = prepare_tfrecords.convert_file(path, prepare_tfrecords.PrepareConfig(
      transform=transform, channel=channel, pad_short=pad_short, storage_dtype='uint8'))
  stored = converted.stored
  if converted.padded:
    stored = fill_short_window(stored, converted.info.duration_s, transform.window_s,
                               short_clip)
  return FileWindows(path=path, stored=stored, duration_s=converted.info.duration_s)


def tfrecord_windows(tfrecord_dir: str, manifest: dict | None = None):
  """Yields the `FileWindows` of every file in a make_tfrecords folder, in order.

  A file's windows are consecutive in its one shard, so one file at a time is held.
  """
  manifest = manifest or records.read_manifest(tfrecord_dir)
  files = {f['file_id']: f for f in manifest['files']}
  dataset = (tf.data.TFRecordDataset(records.shard_paths(tfrecord_dir, manifest),
                                     compression_type=records.compression_type(manifest))
             .map(records.parse_fn(manifest), num_parallel_calls=tf.data.AUTOTUNE,
                  deterministic=True)
             .batch(256).prefetch(1))

  def finish(file_id, parts):
    entry = files[int(file_id)]
    return FileWindows(path=entry['path'], stored=np.concatenate(parts),
                       duration_s=float(entry['duration_s']))

  current = None
  parts: list = []
  with records.naming_bad_shards(tfrecord_dir, manifest):
    for batch in dataset.as_numpy_iterator():
      ids = batch[records.FILE_ID]
      splits = np.flatnonzero(np.diff(ids)) + 1
      for run_ids, run_images in zip(np.split(ids, splits),
                                     np.split(batch['image'], splits)):
        if run_ids[0] != current and parts:
          yield finish(current, parts)
          parts = []
        current = run_ids[0]
        parts.append(run_images)
  if parts:
    yield finish(current, parts)


def embed_clip(loaded_model, path: str, config: EmbedConfig | None = None):
  """The query embedding of a clip: the mean over its windows (filled if short).

  The clip is embedded like a corpus file under `config.context` (with 'file' context
  as its own sequence from the zero state).

  Returns:
    (float32 [embedding size], number of windows of the clip).

  Raises:
    audio_io.AudioError: The clip cannot be used.
  """
  config = resolved_config(loaded_model, config)
  clip = audio_windows(path, loaded_model.transform, config.channel,
                       pad_short=True, short_clip=config.short_clip)
  embeddings = embed_windows(loaded_model, clip.stored, config.context,
                             config.chunk_windows, config.embedding)
  return embeddings.mean(axis=0), len(embeddings)


def rank_by_query(embeddings, query, top_k: int, block_rows: int = _BLOCK_ROWS):
  """The `top_k` rows most similar to `query` by cosine similarity, best first.

  Args:
    embeddings: Shape [N, units]; a numpy array or memmap, read `block_rows` at a time.
    query: Shape [units].
    top_k: How many rows to return (fewer if N is smaller).
    block_rows: Rows scored at once (bounds memory).

  Returns:
    (int64 row indices [k], float64 cosine similarities [k]); ties keep row order. A row
    (or query) of zeros has similarity 0.
  """
  query = np.asarray(query, np.float64)
  query = query / max(np.linalg.norm(query), 1e-30)
  best_rows = np.zeros([0], np.int64)
  best_scores = np.zeros([0], np.float64)
  for first in range(0, len(embeddings), block_rows):
    block = np.asarray(embeddings[first:first + block_rows], np.float64)
    scores = block @ query / np.maximum(np.linalg.norm(block, axis=1), 1e-30)
    rows = np.concatenate([best_rows, first + np.arange(len(block))])
    scores = np.concatenate([best_scores, scores])
    order = np.lexsort((rows, -scores))[:top_k]
    best_rows, best_scores = rows[order], scores[order]
  return best_rows, best_scores


# ---------------------------------------------------------------------- the outputs

def _format_seconds(seconds: float) -> str:
  return f'{seconds:.6f}'.rstrip('0').rstrip('.')


def _tsv_field(path: str) -> str:
  return re.sub(r'[\t\r\n]', ' ', audio_io.display_path(path))


def _metadata_lines(path: str, rows) -> dict:
  """{row: metadata line} for the given data rows of a metadata.tsv, read streaming."""
  wanted = set(int(r) for r in rows)
  found = {}
  with open(path) as f:
    next(f)  # Header.
    for row, line in enumerate(f):
      if row in wanted:
        found[row] = line
  return found


def _write_npy(raw_path: str, npy_path: str, rows: int, units: int) -> None:
  """Raw float32 rows -> an .npy file, block by block."""
  out = np.lib.format.open_memmap(npy_path, mode='w+', dtype=np.float32,
                                  shape=(rows, units))
  with open(raw_path, 'rb') as f:
    for first in range(0, rows, _BLOCK_ROWS):
      block = np.fromfile(f, np.float32, min(_BLOCK_ROWS, rows - first) * units)
      out[first:first + len(block) // units] = block.reshape(-1, units)
  out.flush()
  del out


def _write_projector(staging: fileio.Staging, embeddings, metadata_path: str,
                     max_rows: int) -> int:
  """Writes embeddings.tsv, projector_config.pbtxt (and projector_metadata.tsv).

  Returns:
    Rows in embeddings.tsv.
  """
  stride = max(1, math.ceil(len(embeddings) / max_rows))
  with open(staging.path(EMBEDDINGS_TSV), 'w') as f:
    for first in range(0, len(embeddings), _BLOCK_ROWS * stride):
      np.savetxt(f, embeddings[first:first + _BLOCK_ROWS * stride:stride], fmt='%.7g',
                 delimiter='\t')
  rows = range(0, len(embeddings), stride)
  projector_metadata = METADATA_TSV
  if stride > 1:
    projector_metadata = PROJECTOR_METADATA_TSV
    lines = _metadata_lines(metadata_path, rows)
    with open(staging.path(PROJECTOR_METADATA_TSV), 'w') as f:
      f.write(_METADATA_HEADER)
      f.writelines(lines[r] for r in rows)
  with open(staging.path(PROJECTOR_CONFIG), 'w') as f:
    f.write('# Open with: tensorboard --logdir <this folder>, Projector tab.\n'
            'embeddings {\n'
            '  tensor_name: "discriminator embeddings"\n'
            f'  tensor_path: "{EMBEDDINGS_TSV}"\n'
            f'  metadata_path: "{projector_metadata}"\n'
            '}\n')
  return len(rows)


def _write_ranking(staging: fileio.Staging, embeddings, metadata_path: str, query,
                   top_k: int) -> list:
  indices, scores = rank_by_query(embeddings, query, top_k)
  lines = _metadata_lines(metadata_path, indices)
  ranking = []
  with open(staging.path(QUERY_RANKING_TSV), 'w') as f:
    f.write(_RANKING_HEADER)
    for rank, (row, score) in enumerate(zip(indices, scores), start=1):
      file, start_s, label = lines[int(row)].rstrip('\n').split('\t')
      f.write(f'{rank}\t{score:.6f}\t{file}\t{start_s}\t{label}\n')
      ranking.append(RankedWindow(rank, float(score), file, start_s, label))
  return ranking


# ------------------------------------------------------------------------ the corpus

def _check_transform(tfrecord_dir: str, manifest: dict,
                     transform: spectral.SpectrogramConfig, model_path: str) -> None:
  theirs = records.manifest_config(manifest)
  if theirs == transform:
    return
  raise UsageError(f'--tfrecords {tfrecord_dir} was made with another transform than '
                   f'the model {model_path} was trained on '
                   f'({theirs.differences(transform)}; tfrecords vs model): remake them '
                   'with make_tfrecords, or give the audio with --input')


def _audio_sources(paths, transform, config: EmbedConfig):
  """Yields (path, FileWindows or AudioError), in order, `num_workers` files at once (a
  few files ahead keep every worker busy while the model runs)."""
  return workers.ordered_map(
      functools.partial(audio_windows, transform=transform, channel=config.channel,
                        pad_short=config.pad_short, short_clip=config.short_clip),
      paths, config.num_workers, ahead=config.num_workers, errors=audio_io.AudioError)


def _checked_sources(inputs, tfrecord_dir: str | None, transform: spectral.SpectrogramConfig,
                     model_path: str, log):
  """Resolves and checks the inputs; returns (audio paths, manifest or None)."""
  inputs = list(inputs or [])
  if not inputs and not tfrecord_dir:
    raise UsageError('nothing to embed: give audio with --input or a make_tfrecords '
                     'folder with --tfrecords')
  paths = audio_io.expand_inputs(inputs)
  if inputs and not paths:
    raise UsageError('--input: no audio files (.wav, .flac, .ogg, .mp3) found')
  if not tfrecord_dir:
    return paths, None
  manifest = records.read_manifest(tfrecord_dir)
  _check_transform(tfrecord_dir, manifest, transform, model_path)
  in_records = {f['path'] for f in manifest['files']}
  duplicates = sum(p in in_records for p in paths)
  if duplicates:
    log(f'{duplicates} --input files are in --tfrecords {tfrecord_dir}: their windows '
        'are read from there')
  return [p for p in paths if p not in in_records], manifest


def _embed_all(loaded_model, paths, tfrecord_dir: str | None, manifest: dict | None,
               config: EmbedConfig, raw, metadata, summary: EmbedSummary, log,
               progress_every_s: float) -> None:
  """Embeds every file, appending float32 rows to `raw` and TSV rows to `metadata`."""
  transform = loaded_model.transform
  record_paths = [f['path'] for f in manifest['files']] if manifest else []
  # make_tfrecords' progress line, its ETA weighted by (source audio) file size.
  sizes = [workers.file_size(p) for p in record_paths + paths]
  progress = workers.Progress(len(sizes), sum(sizes), log, progress_every_s)
  stored = (((w.path, w) for w in tfrecord_windows(tfrecord_dir, manifest))
            if tfrecord_dir and manifest else iter(()))
  decoded = _audio_sources(paths, transform, config)
  with contextlib.closing(decoded):
    for path, windows in itertools.chain(stored, decoded):
      if isinstance(windows, audio_io.AudioError):
        log(f'skipping {audio_io.display_path(path)}: {windows}')
        summary.skipped += 1
        progress.update(path, 0.0)
        continue
      embeddings = embed_windows(loaded_model, windows.stored, config.context,
                                 config.chunk_windows, config.embedding)
      raw.write(embeddings.tobytes())
      file, label = _tsv_field(path), label_from_filename(path)
      metadata.writelines(f'{file}\t{_format_seconds(i * transform.window_s)}\t{label}\n'
                          for i in range(len(embeddings)))
      summary.files += 1
      summary.windows += len(embeddings)
      summary.audio_s += windows.duration_s
      progress.update(path, windows.duration_s)
  if sizes:
    progress.report()


def embed_corpus(loaded_model, output_dir: str, inputs=(), tfrecord_dir: str | None = None,
                 query: str | None = None, config: EmbedConfig | None = None,
                 model_path: str = 'the model', log=workers.log_to_stderr,
                 progress_every_s: float = 5.0) -> EmbedSummary:
  """Embeds every window of the corpus and writes the outputs to `output_dir`.

  Everything is checked (inputs, TFRecord transform, the query clip) before
  `output_dir` is created; outputs appear only when complete.

  Args:
    loaded_model: An exported discriminator, from `export_lib.load`.
    output_dir: Where the outputs go (see the module doc); created if missing; outputs
      of an earlier run there are replaced.
    inputs: Audio files, folders (searched recursively) or glob patterns.
    tfrecord_dir: A make_tfrecords folder whose transform equals the model's. Audio
      files it holds are taken from it, not decoded again.
    query: A clip to rank the corpus windows against (query_ranking.tsv).
    config: How to embed.
    model_path: Names the model in messages.
    log: Called with each progress or report line.
    progress_every_s: Minimum time between progress lines.

  Returns:
    What was done.

  Raises:
    UsageError: Before any output, when the arguments make the run impossible.
    audio_io.InputError: Before any output, when an input names nothing.
    records.ManifestError: Before any output, when `tfrecord_dir` is unusable.
    NothingEmbeddedError: Every file was skipped; nothing written, and `output_dir`
      removed again if this call created it.
  """
  start = time.monotonic()
  config = resolved_config(loaded_model, config)
  check_embedding(loaded_model, config.embedding)
  paths, manifest = _checked_sources(inputs, tfrecord_dir, loaded_model.transform,
                                     model_path, log)
  if os.path.exists(output_dir) and not os.path.isdir(output_dir):
    raise UsageError(f'--output_dir {output_dir}: exists and is not a folder')
  summary = EmbedSummary(output_dir=output_dir, embedding=config.embedding,
                         context=config.context,
                         units=embedding_size(loaded_model, config.embedding),
                         query=query)
  query_embedding = None
  if query:
    try:
      query_embedding, summary.query_windows = embed_clip(loaded_model, query, config)
    except audio_io.AudioError as e:
      raise UsageError(f'--query {query}: {e}') from e

  created = not os.path.isdir(output_dir)
  try:
    os.makedirs(output_dir, exist_ok=True)
  except OSError as e:
    raise UsageError(f'--output_dir {output_dir}: cannot create ({e.strerror})') from e
  with fileio.lock_folder(output_dir, '--output_dir', 'embed'):
    staging = fileio.Staging(output_dir)
    try:
      try:
        raw_path = staging.path('embeddings.raw', scratch=True)
      except OSError as e:
        raise UsageError(f'--output_dir {output_dir}: not writable ({e.strerror})') from e
      metadata_path = staging.path(METADATA_TSV)
      with open(raw_path, 'wb') as raw, open(metadata_path, 'w') as metadata:
        metadata.write(_METADATA_HEADER)
        _embed_all(loaded_model, paths, tfrecord_dir, manifest, config, raw, metadata,
                   summary, log, progress_every_s)
      if summary.windows == 0:
        raise NothingEmbeddedError('no file was embedded (see the reasons above)'
                                   if summary.skipped else
                                   f'--tfrecords {tfrecord_dir} holds no windows')
      npy_path = staging.path(EMBEDDINGS_NPY)
      _write_npy(raw_path, npy_path, summary.windows, summary.units)
      embeddings = np.load(npy_path, mmap_mode='r')
      summary.projector_rows = _write_projector(staging, embeddings, metadata_path,
                                                config.projector_max_rows)
      if query_embedding is not None:
        summary.ranking = _write_ranking(staging, embeddings, metadata_path,
                                         query_embedding, config.top_k)
      del embeddings  # Closes the memmap before the rename.
      staging.commit(stale=_OUTPUTS)
    except BaseException:
      staging.discard()
      if created:
        fileio.remove_if_empty(output_dir)
      raise
  summary.wall_s = time.monotonic() - start
  return summary
