"""Does training learn the kinds of sound on a tape? k-NN and AUC by kind, against
baselines in the same run.

Synthesises hydrophone scenes (orca_gan.synth, as bin/synthesize_scene): `--train_scenes`
to train on, and `--probe_scenes` others (other seeds, never trained on) to probe. From
each probe scene's ground truth it cuts one 3-s clip per event during which no sound of
another kind plays (centred on the event), and clips of sea noise alone, labelled

  orca (whistle, pulsed call or click train), boat, speech, sea_noise.

It trains bin/train (`--train_flags`; default the recommended CPU recipe,
configs/cpu.flags) on the training scenes, exporting at every step of `--checkpoints`
(training stops at the last), exports the same architecture untrained, and runs
bin/probe --labels_csv on the clips for every export: leave-one-file-out k-NN
accuracy, one-vs-rest AUC per kind (orca vs rest among them) and the linear probe, for
every embedding the discriminator offers, next to the spectrogram baselines computed
from the same windows.

  .venv/bin/python benchmarks/abstraction_bench.py                  # about 12 minutes
"""

import argparse
import csv
import json
import os
import shlex
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from orca_gan import audio_io  # noqa: E402 (found through REPO)
from orca_gan import synth  # noqa: E402

from bench_util import COLUMN  # noqa: E402
from bench_util import EMBEDDINGS  # noqa: E402
from bench_util import run_app  # noqa: E402 (benchmarks/, the script's folder)
from bench_util import train_with_exports  # noqa: E402

CLIP_S = 3.0
LABELS = {'whistle': 'orca', 'pulsed_call': 'orca', 'clicks': 'orca', 'boat': 'boat',
          'speech': 'speech'}


def _overlaps(event, start_s, end_s) -> bool:
  return event.start_s < end_s and event.end_s > start_s


def labelled_clips(audio, events, sample_rate_hz, rng, per_event=3):
  """[(label, start_s)] of non-overlapping 3-s clips where one kind of sound plays
  (besides sea noise), or none: for each event, up to `per_event` clips holding at least
  1 s of it (all of a shorter one) and nothing of another kind, nearest its middle
  first."""
  duration_s = len(audio) / sample_rate_hz
  chosen = []

  def free(start):
    return all(abs(start - s) >= CLIP_S for _, s in chosen)

  for event in events:
    label = LABELS[event.kind]
    inside = min(1.0, event.end_s - event.start_s)
    first = max(event.start_s - CLIP_S + inside, 0.0)
    last = min(event.end_s - inside, duration_s - CLIP_S)
    middle = (event.start_s + event.end_s - CLIP_S) / 2
    taken = 0
    for start in sorted(np.arange(first, last + 1e-9, 0.25), key=lambda s: abs(s - middle)):
      if taken == per_event:
        break
      if free(start) and all(LABELS[e.kind] == label for e in events
                             if _overlaps(e, start, start + CLIP_S)):
        chosen.append((label, float(start)))
        taken += 1
  quiet = [s for s in np.arange(0.0, duration_s - CLIP_S, CLIP_S)
           if free(s) and not any(_overlaps(e, s, s + CLIP_S) for e in events)]
  for start in rng.permutation(quiet)[:max(2, len(chosen) // 4)]:
    chosen.append(('sea_noise', float(start)))
  return chosen


def write_probe_set(folder, num_scenes, duration_s, seed, sample_rate_hz=44100):
  """Writes the labelled clips and labels.csv; returns {label: count}."""
  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(seed)
  rows = []
  for index in range(num_scenes):
    audio, events = synth.synthesize_scene(duration_s, sample_rate_hz,
                                           seed=seed * 1000 + index)
    for label, start_s in labelled_clips(audio, events, sample_rate_hz, rng):
      first = int(round(start_s * sample_rate_hz))
      name = f'scene{index:02d}_{start_s:07.2f}_{label}.wav'
      audio_io.write_audio(os.path.join(folder, name),
                           audio[first:first + int(CLIP_S * sample_rate_hz)],
                           sample_rate_hz)
      rows.append((name, label))
  with open(os.path.join(folder, 'labels.csv'), 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['path', 'label'])
    writer.writerows(rows)
  counts = {}
  for _, label in rows:
    counts[label] = counts.get(label, 0) + 1
  return counts


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--train_scenes', type=int, default=8)
  parser.add_argument('--probe_scenes', type=int, default=6)
  parser.add_argument('--scene_s', type=float, default=120.0)
  parser.add_argument('--checkpoints', default='400,1200',
                      help='Steps at which the model is exported and probed; training '
                      'stops at the last.')
  parser.add_argument('--train_flags',
                      default=f'--flagfile {os.path.join(REPO, "configs", "cpu.flags")}')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--work_dir', default='', help='Default: a temporary folder.')
  parser.add_argument('--json_out', default='')
  args = parser.parse_args()
  checkpoints = sorted(int(s) for s in args.checkpoints.split(','))
  work = args.work_dir or tempfile.mkdtemp(prefix='abstraction_bench_')
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')

  scenes = os.path.join(work, 'train_scenes')
  synth.make_demo_corpus(scenes, num_files=args.train_scenes, duration_s=args.scene_s,
                         seed=args.seed)
  probe_set = os.path.join(work, 'probe_set')
  counts = write_probe_set(probe_set, args.probe_scenes, args.scene_s, args.seed + 1)
  print(f'abstraction_bench: {args.train_scenes} x {args.scene_s:g} s training scenes; '
        f'probe clips {counts}', flush=True)
  records = os.path.join(work, 'records')
  run_app('make_tfrecords', '--input', scenes, '--output_dir', records, env=env)
  exports, _ = train_with_exports(
      ['--tfrecords', records, '--seed', str(args.seed), *shlex.split(args.train_flags)],
      work, checkpoints, 'abstraction_bench', env)

  results = {}
  for name, export in exports.items():
    out = os.path.join(work, f'probe_{name.replace(" ", "_")}')
    flags = ['--model', os.path.join(export, 'discriminator'), '--labels_csv',
             os.path.join(probe_set, 'labels.csv'), '--output_dir', out]
    if name != 'untrained':
      flags += ['--untrained_model', os.path.join(exports['untrained'], 'discriminator')]
    run_app('probe', *flags, env=env)
    with open(os.path.join(out, 'probe.json')) as f:
      results[name] = json.load(f)['features']

  print(f'\nabstraction_bench: bin/train {args.train_flags}, seed {args.seed}; '
        f'{sum(counts.values())} probe clips {counts}; work {work}')
  for title, key in (('k-NN accuracy (leave one clip out, k=5)', 'knn'),
                     ('orca-vs-rest AUC', 'orca'),
                     ('linear probe accuracy (5-fold)', 'linear')):
    print(f'\n{title}:')
    print(f'  {"":16}' + ''.join(f'{e:>{COLUMN}}' for e in EMBEDDINGS))
    for name, features in results.items():
      # Every row is the probed export ('trained' in bin/probe's report): the
      # untrained one is this run's `--steps 0` export, the network the trained
      # exports are compared against, not bin/probe's own untrained network.
      print(f'  {name:16}' + ''.join(
          f'{_score(features[f"trained {e}"], key):{COLUMN}.3f}' for e in EMBEDDINGS))
    baseline = results['untrained']
    for feature in ('spectral_profile', 'raw_pixels'):
      print(f'  {feature:16} {_score(baseline[feature], key):{COLUMN - 1}.3f}  (baseline)')
  last = results[f'step {checkpoints[-1]}']
  print('\nper-kind AUC at the last step:')
  kinds = sorted(last['spectral_profile']['auc'])
  print(f'  {"":28}' + ''.join(f'{k:>11}' for k in kinds))
  for feature in [f'trained {e}' for e in EMBEDDINGS] + ['spectral_profile',
                                                         'raw_pixels']:
    print(f'  {feature:28}' + ''.join(f'{last[feature]["auc"][k]:11.3f}' for k in kinds))
  if args.json_out:
    with open(args.json_out, 'w') as f:
      json.dump({'args': vars(args), 'counts': counts, 'results': results}, f, indent=1)


def _score(entry, key):
  if key == 'knn':
    return entry['knn_accuracy']
  if key == 'linear':
    return entry['linear_probe']['accuracy']
  return entry['auc']['orca']


if __name__ == '__main__':
  main()
