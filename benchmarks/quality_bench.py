"""What training learns, measured against baselines in the same run.

Converts the real recordings `../shared/data/bench/orca_scene_10min.mp3` and
`../shared/data/orcasound/j_pod.wav` to records, trains bin/train with the given flags
(default: bin/train's CPU defaults) for `--steps` steps, exporting the models at
`--checkpoints`, and exports the same architecture untrained (`--steps 0`). Then, for
every export:

* bin/probe: the 36 `clips/S_*.wav` call clips queried against the 45
  `catalog/flac/FO-S*.flac` catalogue calls (other recordings of the same call types),
  with each embedding the discriminator offers, next to the spectrogram baselines
  (clips tiled into their window, bin/probe's default);
* bin/evaluate of the generator on the training records (Fréchet and kernel distances
  with their real-vs-real floors, collapse and diversity).

It prints one table; `--json_out` keeps everything.

  .venv/bin/python benchmarks/quality_bench.py                    # about 10 minutes
  .venv/bin/python benchmarks/quality_bench.py --steps 600 --checkpoints 300,600 \\
      --train_flags='--loss=hinge'
"""

import argparse
import json
import os
import shlex
import sys
import tempfile
import time

from bench_util import run_app

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), 'shared', 'data')
EMBEDDINGS = ('conv1_time_mean', 'conv_time_mean', 'conv_grid', 'lstm')


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--steps', type=int, default=1200)
  parser.add_argument('--checkpoints', default='400,800,1200',
                      help='Steps at which the models are exported and measured.')
  parser.add_argument('--train_flags', default='',
                      help='More bin/train flags, e.g. a recipe to compare.')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--work_dir', default='', help='Default: a temporary folder.')
  parser.add_argument('--json_out', default='')
  args = parser.parse_args()
  checkpoints = sorted(int(s) for s in args.checkpoints.split(','))
  if not os.path.isdir(os.path.join(SHARED, 'orcasound')):
    sys.exit(f'the real recordings are not at {SHARED}')
  work = args.work_dir or tempfile.mkdtemp(prefix='quality_bench_')
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  records = os.path.join(work, 'records')
  run_app('make_tfrecords', '--input', os.path.join(SHARED, 'bench', 'orca_scene_10min.mp3'),
       '--input', os.path.join(SHARED, 'orcasound', 'j_pod.wav'), '--output_dir',
       records, env=env)
  logdir = os.path.join(work, 'run')
  train = ['--tfrecords', records, '--logdir', logdir, '--seed', str(args.seed),
           *shlex.split(args.train_flags)]
  exports, train_s = {}, 0.0
  run_app('train', *train, '--steps', '0', '--logdir', os.path.join(work, 'untrained'),
       env=env)
  exports['untrained'] = os.path.join(work, 'untrained', 'export')
  for step in checkpoints:
    start = time.monotonic()
    export = os.path.join(work, f'export_{step}')
    run_app('train', *train, '--steps', str(step), '--export_dir', export, env=env)
    train_s += time.monotonic() - start
    exports[f'step {step}'] = export
    print(f'quality_bench: trained to step {step} ({train_s / 60:.1f} min of training)',
          flush=True)

  results = {}
  for name, export in exports.items():
    out = os.path.join(work, 'probe_' + name.replace(' ', '_'))
    run_app('probe', '--model', os.path.join(export, 'discriminator'), '--queries',
         os.path.join(SHARED, 'orcasound', 'clips', 'S_*.wav'), '--catalogue',
         os.path.join(SHARED, 'orcasound', 'catalog', 'flac', 'FO-S*.flac'),
         '--output_dir', out, '--seed', str(args.seed), env=env)
    with open(os.path.join(out, 'probe.json')) as f:
      probe = json.load(f)['features']
    evaluation = os.path.join(work, 'evaluate_' + name.replace(' ', '_'))
    run_app('evaluate', '--model', os.path.join(export, 'generator'), '--tfrecords',
         records, '--output_dir', evaluation, '--seed', str(args.seed), env=env)
    with open(os.path.join(evaluation, 'metrics.json')) as f:
      metrics = json.load(f)
    results[name] = {'probe': probe, 'evaluate': metrics}

  baseline = results['untrained']['probe']
  print(f'\nquality_bench: bin/train {" ".join(shlex.split(args.train_flags)) or "(defaults)"}, '
        f'seed {args.seed}, {train_s / 60:.1f} min of training; records {records}')
  print('\ncall-type retrieval, MRR (36 clips against 45 catalogue calls; clips tiled):')
  print(f'  {"":16}' + ''.join(f'{e:>17}' for e in EMBEDDINGS))
  for name, r in results.items():
    print(f'  {name:16}' + ''.join(
        f'{r["probe"][f"trained {e}"]["retrieval"]["mrr"]:17.3f}' for e in EMBEDDINGS))
  for feature in ('spectral_profile', 'raw_pixels'):
    print(f'  {feature:16} {baseline[feature]["retrieval"]["mrr"]:16.3f}  (baseline)')
  print('\ngenerator (bin/evaluate on the training records):')
  print(f'  {"":16}{"FD same-size":>14}{"FD floor":>10}{"KID":>9}{"KID floor":>10}'
        f'{"unrelated corr":>16}{"real":>6}{"time spread s":>15}{"real":>6}')
  for name, r in results.items():
    m = r['evaluate']
    fd, kid = m['frechet_distance'], m['kernel_distance']
    coherence, centroids = m['temporal_coherence'], m['centroids']
    print(f'  {name:16}{fd["generated_vs_real_same_size"]:14.3f}'
          f'{fd["real_vs_real_floor"]:10.3f}{kid["generated_vs_real"]:9.4f}'
          f'{kid["real_vs_real_floor"]:10.4f}{coherence["generated_unrelated"]:16.2f}'
          f'{coherence["real_unrelated"]:6.2f}'
          f'{centroids["generated"]["std_s"]:15.2f}'
          f'{centroids["real"]["std_s"]:6.2f}')
  if args.json_out:
    with open(args.json_out, 'w') as f:
      json.dump({'args': vars(args), 'train_s': train_s, 'results': results}, f,
                indent=1)


if __name__ == '__main__':
  main()
