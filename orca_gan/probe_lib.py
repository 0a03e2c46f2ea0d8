"""How good is an embedding? Labelled audio in, retrieval and classification scores out
(the library behind bin/probe).

Every labelled file becomes one vector per feature: the mean over its windows. The
features are measured side by side, from the same windows of the same files:

* `trained <embedding>`: every embedding the exported discriminator offers (bin/embed
  --embedding): its LSTM output (`lstm`) and pooled convolution features
  (`models.pooled_features`);
* `untrained <embedding>`: the same from the same architecture with fresh weights
  (from `--untrained_model`, or built here from the model's config and `--seed`);
* `spectral_profile`: each frequency band's mean and standard deviation over the
  window's time axis, from the spectrogram image itself;
* `raw_pixels`: the spectrogram image, flattened.

Each feature's dimensions are z-scored over all files (each dimension then weighs the
same), and files are compared by cosine similarity. The scores:

* retrieval (queries against a catalogue, e.g. call clips against other recordings of
  the same call types): precision@1, top-5 hit rate and mean reciprocal rank of the
  first catalogue file with the query's label;
* leave-one-file-out k-nearest-neighbour accuracy and, per label, the one-vs-rest ROC
  AUC of the label's score (a file's largest similarity to another file of that label
  minus its largest similarity to a file of another label), over the labels with two
  or more files (with `--labels_csv` every label must have two; labels from file names
  with one file count in retrieval only);
* a linear probe: multinomial logistic regression (numpy, L2-regularised), accuracy
  under k-fold cross-validation by file;
* per unit (the seed's "highly predictive neurons"): for each label the embedding
  dimensions with the highest one-vs-rest AUC.

Labels come from file names (`embed_lib.label_from_filename`) or a CSV of path,label.
"""

import collections
import csv
import dataclasses
import glob
import os

import keras
import numpy as np
import tensorflow as tf

from orca_gan import audio_io
from orca_gan import fileio
from orca_gan import configs
from orca_gan import data
from orca_gan import embed_lib
from orca_gan import export_lib
from orca_gan import models
from orca_gan import plotting
from orca_gan import records

UsageError = configs.UsageError  # The one usage error of every app.


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
  """Flags of bin/probe map 1:1 to these fields."""
  model: str = configs.flag('',
      'Exported discriminator SavedModel folder (e.g. <logdir>/export/discriminator).',
      required=True)
  untrained_model: str = configs.flag('',
      'The same architecture untrained (bin/train --steps 0); default: built here from '
      "--model's config and --seed.")
  queries: tuple = configs.flag((),
      'Query audio files or globs (labels from the file names, e.g. S_1.wav -> S1); '
      'repeatable.')
  catalogue: tuple = configs.flag((),
      'Audio files or globs each query is ranked against; repeatable.')
  labels_csv: str = configs.flag('',
      'A CSV with the header path,label (paths relative to it): more labelled files for '
      'the k-NN, AUC and linear scores, or labels for files named without one.')
  output_dir: str = configs.flag('probe', 'Where probe.json and probe.png go.')
  k: int = configs.flag(5, 'Neighbours voting in the leave-one-file-out k-NN.')
  folds: int = configs.flag(5, 'Cross-validation folds (by file) of the linear probe.')
  l2: float = configs.flag(1e-2, 'L2 weight of the linear probe.')
  top_units: int = configs.flag(5, 'Most predictive embedding units listed per label.')
  seed: int = configs.flag(0, 'Seed of the untrained baseline and the folds.')
  short_clip: str = configs.flag('tile',
      'How a file shorter than one window fills the rest of it (as bin/embed '
      '--short_clip).',
      choices=embed_lib.SHORT_CLIP_MODES)

  def __post_init__(self):
    if not self.model:
      raise UsageError('--model is required: an exported discriminator')
    if not (self.queries or self.labels_csv):
      raise UsageError('give --queries (and --catalogue) or --labels_csv')
    if self.queries and not self.catalogue and not self.labels_csv:
      raise UsageError('--queries needs --catalogue to be ranked against')
    for name in ('k', 'folds', 'top_units'):
      if getattr(self, name) < 1:
        raise UsageError(f'--{name} must be at least 1, got {getattr(self, name)}')
    if self.folds < 2:
      raise UsageError(f'--folds must be at least 2, got {self.folds}')
    configs.check(self, UsageError)
    if not self.l2 >= 0:
      raise UsageError(f'--l2 must be at least 0, got {self.l2}')


# ---------------------------------------------------------------------- inputs

def expand(patterns, flag: str) -> list:
  """Paths from paths and glob patterns, in the order given, each once."""
  paths = []
  for pattern in patterns:
    matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
    if not matches or not all(os.path.isfile(p) for p in matches):
      raise UsageError(f'{flag} {pattern}: no such file')
    paths += [p for p in matches if p not in paths]
  return paths


def read_labels_csv(path: str) -> dict:
  """{path: label} from a CSV with the header `path,label` (paths relative to it)."""
  try:
    with open(path, newline='') as f:
      rows = list(csv.reader(f))
  except OSError as e:
    raise UsageError(f'--labels_csv {path}: {e.strerror or e}') from e
  if not rows or [c.strip() for c in rows[0]] != ['path', 'label']:
    raise UsageError(f'--labels_csv {path}: the first line must be path,label')
  labels = {}
  base = os.path.dirname(os.path.abspath(path))
  for number, row in enumerate(rows[1:], start=2):
    if len(row) != 2 or not row[0].strip() or not row[1].strip():
      raise UsageError(f'--labels_csv {path}: line {number} is not path,label')
    file_path = os.path.join(base, row[0].strip())
    if not os.path.isfile(file_path):
      raise UsageError(f'--labels_csv {path}: line {number}: no such file '
                       f'{row[0].strip()}')
    labels[file_path] = row[1].strip()
  return labels


def labelled_from_names(paths, flag: str) -> dict:
  labels = {p: embed_lib.label_from_filename(p) for p in paths}
  unlabelled = [p for p, label in labels.items() if not label]
  if unlabelled:
    raise UsageError(f'{flag}: no call-type label in the file name of {unlabelled[0]} '
                     '(use --labels_csv)')
  return labels


def check_classes(labels: dict, what: str) -> None:
  """At least two labels, each with at least two files."""
  counts = collections.Counter(labels.values())
  if len(counts) < 2:
    raise UsageError(f'{what}: every file has the label {next(iter(counts), "")!r}; '
                     'need at least two labels')
  single = sorted(label for label, n in counts.items() if n < 2)
  if single:
    raise UsageError(f'{what}: labels with fewer than two files: {", ".join(single)}')


# ---------------------------------------------------------------------- features

def spectral_profile(images: np.ndarray) -> np.ndarray:
  """[N, H, W] images in [-1, 1] -> [N, 2 H]: each band's mean and std over time."""
  return np.concatenate([images.mean(axis=2), images.std(axis=2)], axis=1)


def zscore(features: np.ndarray) -> np.ndarray:
  """Each column to mean 0, std 1 over the rows (constant columns to 0)."""
  std = features.std(axis=0)
  return (features - features.mean(axis=0)) / np.where(std > 0, std, 1.0)


def cosine_similarities(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  def unit(x):
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)
  return unit(a) @ unit(b).T


# ---------------------------------------------------------------------- scores

def retrieval(similarity: np.ndarray, query_labels, catalogue_labels) -> dict:
  """Ranks the catalogue for each query whose label the catalogue holds.

  Args:
    similarity: [Q, C].
    query_labels: Q labels.
    catalogue_labels: C labels.

  Returns:
    precision_at_1, top_5 (hit rate) and mrr over the scored queries, and their count.
  """
  catalogue_labels = np.asarray(catalogue_labels)
  ranks = []
  for row, label in zip(similarity, query_labels):
    relevant = catalogue_labels == label
    if not relevant.any():
      continue
    order = np.argsort(-row, kind='stable')
    ranks.append(int(np.flatnonzero(relevant[order])[0]) + 1)
  if not ranks:
    return {'queries': 0, 'precision_at_1': None, 'top_5': None, 'mrr': None}
  rank = np.asarray(ranks)
  return {'queries': int(len(rank)), 'precision_at_1': float(np.mean(rank == 1)),
          'top_5': float(np.mean(rank <= 5)), 'mrr': float(np.mean(1.0 / rank))}


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
  """Area under the ROC curve (ties count half); None without both classes."""
  positive = np.asarray(positive, bool)
  n_pos, n_neg = positive.sum(), (~positive).sum()
  if not n_pos or not n_neg:
    return None
  order = np.argsort(scores, kind='stable')
  ranks = np.empty(len(scores))
  sorted_scores = np.asarray(scores)[order]
  # Average ranks over ties.
  _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
  average = first + (counts - 1) / 2.0 + 1
  ranks[order] = np.repeat(average, counts)
  return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def knn_and_auc(similarity: np.ndarray, labels, k: int) -> dict:
  """Leave-one-file-out k-NN accuracy and per-label one-vs-rest AUC.

  Args:
    similarity: [N, N] between the labelled files.
    labels: N labels.
    k: Neighbours voting (ties go to the label of the nearer neighbour).
  """
  labels = np.asarray(labels)
  similarity = similarity.copy()
  np.fill_diagonal(similarity, -np.inf)   # Leave the file itself out.
  correct = 0
  for i, row in enumerate(similarity):
    nearest = np.argsort(-row, kind='stable')[:k]
    votes: dict = {}
    for rank, j in enumerate(nearest):
      votes.setdefault(labels[j], [0, rank])[0] += 1
    predicted = max(votes, key=lambda label: (votes[label][0], -votes[label][1]))
    correct += predicted == labels[i]
  aucs = {}
  for label in sorted(set(labels)):
    members = labels == label
    # The nearest-neighbour margin: how much nearer the file's closest member of the
    # label is than its closest other file. The closest member alone ranks a label
    # with many members by its most generic one: every file of another label near it
    # scores high, and the AUC can fall below chance where k-NN is 0.85.
    nearest_member = np.where(members[None, :], similarity, -np.inf).max(axis=1)
    nearest_other = np.where(members[None, :], -np.inf, similarity).max(axis=1)
    aucs[label] = roc_auc(nearest_member - nearest_other, members)
  valid = [v for v in aucs.values() if v is not None]
  return {'knn_accuracy': correct / len(labels), 'k': k, 'auc': aucs,
          'mean_auc': float(np.mean(valid)) if valid else None}


def logistic_regression(x: np.ndarray, y: np.ndarray, num_classes: int, l2: float,
                        steps: int = 500) -> np.ndarray:
  """Multinomial logistic regression by full-batch gradient descent with momentum.

  Returns:
    Weights [D + 1, num_classes] (the last row is the bias).
  """
  x = np.concatenate([x, np.ones([len(x), 1])], axis=1)
  onehot = np.eye(num_classes)[y]
  w = np.zeros([x.shape[1], num_classes])
  velocity = np.zeros_like(w)
  # Step size from the curvature bound of the softmax loss: ||x||^2 / (2 n).
  rate = 1.0 / (np.sum(x * x) / len(x) / 2 + l2)
  for _ in range(steps):
    logits = x @ w
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    grad = x.T @ (p - onehot) / len(x) + l2 * np.vstack([w[:-1], np.zeros([1, num_classes])])
    velocity = 0.9 * velocity - rate * grad
    w += velocity
  return w


def linear_probe(features: np.ndarray, labels, folds: int, l2: float, seed: int) -> dict:
  """Accuracy of a linear classifier under k-fold cross-validation by file.

  Folds are stratified: each label's files are spread over the folds in turn, after a
  seeded shuffle. Features are z-scored on each training fold.
  """
  labels = np.asarray(labels)
  classes = sorted(set(labels))
  y = np.array([classes.index(label) for label in labels])
  rng = np.random.default_rng(seed)
  fold = np.empty(len(y), int)
  for c in range(len(classes)):
    members = rng.permutation(np.flatnonzero(y == c))
    fold[members] = (np.arange(len(members)) + rng.integers(folds)) % folds
  correct = 0
  for f in range(folds):
    train, test = fold != f, fold == f
    if not test.any():
      continue
    mean, std = features[train].mean(axis=0), features[train].std(axis=0)
    std = np.where(std > 0, std, 1.0)
    w = logistic_regression((features[train] - mean) / std, y[train], len(classes), l2)
    x_test = np.concatenate([(features[test] - mean) / std, np.ones([test.sum(), 1])],
                            axis=1)
    correct += int(np.sum((x_test @ w).argmax(axis=1) == y[test]))
  return {'accuracy': correct / len(y), 'folds': folds, 'l2': l2,
          'chance': float(np.max(np.bincount(y)) / len(y))}


def predictive_units(features: np.ndarray, labels, top: int) -> dict:
  """For each label, the `top` dimensions whose value best separates it from the rest
  (one-vs-rest AUC, either direction), as [unit, auc] pairs, best first."""
  labels = np.asarray(labels)
  result = {}
  for label in sorted(set(labels)):
    members = labels == label
    aucs = np.array([roc_auc(features[:, d], members) for d in range(features.shape[1])])
    strength = np.maximum(aucs, 1 - aucs)
    best = np.argsort(-strength, kind='stable')[:top]
    result[label] = [[int(d), float(aucs[d])] for d in best]
  return result


# ---------------------------------------------------------------------- the run

def _model_embedder(loaded_model):
  """[n, H, W] stored windows of one file -> {embedding: [n, D]} for every embedding
  an exported discriminator offers (LSTM with the file as one sequence)."""
  pooled = 'features' in loaded_model.signatures  # Exports before pooled features: no.

  def embedder(stored):
    result = {'lstm': embed_lib.embed_windows(loaded_model, stored)}
    if pooled:
      result.update(embed_lib.pooled_embeddings(loaded_model, stored))
    return result
  return embedder


def _untrained_embedder(model_config: models.ModelConfig, seed: int):
  """The same, for the architecture `model_config` with fresh weights, built here."""
  keras.utils.set_random_seed(seed)
  discriminator = models.Discriminator(model_config)

  @tf.function(reduce_retracing=True)
  def embed(images):                                           # [n, H, W, 1]
    _, lstm, _ = models.discriminate_sequence(discriminator, images[None])
    return dict(models.pooled_features(discriminator, images), lstm=lstm[0])

  def embedder(stored):
    return {name: value.numpy()
            for name, value in embed(data.to_model_input(stored)).items()}
  return embedder


def file_features(paths, transform, embedders: dict, log=print,
                  short_clip: str = 'tile') -> dict:
  """{feature: float32 [len(paths), D]}: each file's mean over its windows.

  Args:
    paths: Audio files.
    transform: The model's spectrogram transform.
    embedders: {prefix: function from `_model_embedder`/`_untrained_embedder`}; their
      features are named '<prefix> <embedding>'.
    log: Progress lines.
    short_clip: How files shorter than a window fill it (`embed_lib.fill_short_window`).
  """
  rows: dict = {}
  for number, path in enumerate(paths, start=1):
    try:
      clip = embed_lib.audio_windows(path, transform, pad_short=True,
                                     short_clip=short_clip)
    except audio_io.AudioError as e:
      raise UsageError(f'{path}: {e}') from e
    images = records.dequantize(clip.stored).numpy()            # [n, H, W]
    values = {'spectral_profile': spectral_profile(images),
              'raw_pixels': images.reshape(len(images), -1)}
    for prefix, embedder in embedders.items():
      for name, value in embedder(clip.stored).items():
        values[f'{prefix} {name}'] = value
    for name, value in values.items():
      rows.setdefault(name, []).append(value.mean(axis=0))
    if number % 20 == 0:
      log(f'probe: {number}/{len(paths)} files embedded')
  return {name: np.stack(r).astype(np.float32) for name, r in sorted(rows.items())}


def score(features: dict, paths, labels: dict, queries, catalogue,
          config: ProbeConfig, left_out=()) -> dict:
  """Every score of every feature (see the module doc); labels in `left_out` count in
  retrieval only."""
  index = {p: i for i, p in enumerate(paths)}
  names = [labels[p] for p in paths]
  kept = np.array([label not in left_out for label in names])
  kept_names = [n for n, k in zip(names, kept) if k]
  result = {}
  for name, values in features.items():
    z = zscore(values)
    entry = {}
    if queries and catalogue:
      q, c = [index[p] for p in queries], [index[p] for p in catalogue]
      entry['retrieval'] = retrieval(cosine_similarities(z[q], z[c]),
                                     [names[i] for i in q], [names[i] for i in c])
    entry.update(knn_and_auc(cosine_similarities(z[kept], z[kept]), kept_names,
                             config.k))
    entry['linear_probe'] = linear_probe(values[kept], kept_names, config.folds,
                                         config.l2, config.seed)
    if name in ('trained lstm', 'untrained lstm'):
      entry['predictive_units'] = predictive_units(values[kept], kept_names,
                                                   config.top_units)
    result[name] = entry
  return result


def table(result: dict) -> str:
  """The scores as an aligned text table, one row per feature."""
  def fmt(x):
    return '   n/a' if x is None else f'{x:6.3f}'
  width = max(len('feature'), *map(len, result))
  lines = [f'{"feature":{width}} {"P@1":>6} {"top-5":>6} {"MRR":>6} {"kNN":>6} {"AUC":>6} '
           f'{"linear":>6}']
  for name, entry in result.items():
    r = entry.get('retrieval', {})
    lines.append(f'{name:{width}} {fmt(r.get("precision_at_1"))} {fmt(r.get("top_5"))} '
                 f'{fmt(r.get("mrr"))} {fmt(entry["knn_accuracy"])} '
                 f'{fmt(entry["mean_auc"])} {fmt(entry["linear_probe"]["accuracy"])}')
  return '\n'.join(lines)


def run(config: ProbeConfig, log=print) -> dict:
  """Loads, embeds, scores and writes probe.json and probe.png; returns the report.

  Raises:
    UsageError: Bad inputs (before anything is written).
  """
  queries = expand(config.queries, '--queries')
  catalogue = expand(config.catalogue, '--catalogue')
  labels = labelled_from_names(queries, '--queries')
  labels.update(labelled_from_names(catalogue, '--catalogue'))
  if config.labels_csv:
    labels.update(read_labels_csv(config.labels_csv))
  left_out = []
  if config.labels_csv:
    check_classes(labels, '--labels_csv')
  else:
    # A call type recorded once cannot be classified leave-one-out; it still counts
    # in retrieval.
    counts = collections.Counter(labels.values())
    left_out = sorted(label for label, n in counts.items() if n < 2)
    check_classes({p: lab for p, lab in labels.items() if lab not in left_out},
                  '--queries/--catalogue (labels with two or more files)')
  if queries and not set(labels[p] for p in queries) & set(labels[p] for p in catalogue):
    raise UsageError('--queries and --catalogue share no label: nothing to retrieve')
  try:
    model = export_lib.load(config.model, 'discriminator')
  except ValueError as e:
    raise UsageError(f'--model {e}') from e
  if config.untrained_model:
    try:
      baseline = export_lib.load(config.untrained_model, 'discriminator')
    except ValueError as e:
      raise UsageError(f'--untrained_model {e}') from e
    if baseline.model_config != model.model_config:
      raise UsageError(f'--untrained_model {config.untrained_model}: another '
                       'architecture than --model')
    untrained = _model_embedder(baseline)
  else:
    untrained = _untrained_embedder(model.model_config, config.seed)
  paths = list(labels)
  features = file_features(paths, model.transform,
                           {'trained': _model_embedder(model), 'untrained': untrained},
                           log, config.short_clip)
  report: dict = {
      'model': config.model, 'step': model.metadata.get('step'),
      'files': len(paths), 'labels': sorted(set(labels.values())),
      'short_clip': config.short_clip,
      'queries': len(queries), 'catalogue': len(catalogue),
      'similarity': 'cosine after z-scoring each dimension over all files; a file is '
                    'the mean of its windows',
      'classification_left_out': left_out,
      'features': score(features, paths, labels, queries, catalogue, config,
                        left_out),
  }
  os.makedirs(config.output_dir, exist_ok=True)
  fileio.write_json_atomic(os.path.join(config.output_dir, 'probe.json'), report)
  bars = {name: {'MRR': e.get('retrieval', {}).get('mrr'), 'kNN accuracy':
                 e['knn_accuracy'], 'mean AUC': e['mean_auc'],
                 'linear probe': e['linear_probe']['accuracy']}
          for name, e in report['features'].items()}
  plotting.plot_probe(bars, os.path.join(config.output_dir, 'probe.png'),
                      title=f'{config.model} (step {report["step"]}), {len(paths)} files')
  return report
