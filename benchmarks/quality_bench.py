"""What training learns, measured against baselines in the same run.

Converts the real recordings `../shared/data/bench/orca_scene_10min.mp3` and
`../shared/data/orcasound/j_pod.wav` to records and, for every recipe (`--recipe`,
repeatable; default: bin/train's defaults, the seed-faithful baseline, and the
recommended `configs/cpu.flags`), trains bin/train, exporting the models at every step
of `--checkpoints` (by default steps 1200 and 2400; 2400 steps of `configs/cpu.flags`
take about 30 minutes of this 2-core CPU), and exports the same architecture untrained
(`--steps 0`). Then, for every export:

* bin/probe: the 36 `clips/S_*.wav` call clips queried against the 45
  `catalog/flac/FO-S*.flac` catalogue calls (other recordings of the same call types),
  with each embedding the discriminator offers, next to the spectrogram baselines, twice:
  clips tiled into their window (bin/probe's default) and padded with silence
  (`--short_clip zeros`, where the spectrogram is weakest);
* bin/evaluate of the generator on the training records (Fréchet and kernel distances
  with their real-vs-real floors, collapse and diversity), on `--eval_sequences`
  sequences of 4 windows: 1024 by default, as bin/evaluate's (with 256 a few windows
  without sound move the frequency spread; benchmarks/README.md).

It prints one table; `--json_out` keeps everything.

  .venv/bin/python benchmarks/quality_bench.py                    # two recipes to step 2400
  .venv/bin/python benchmarks/quality_bench.py --checkpoints 300,600 \\
      --recipe='--flagfile=configs/cpu.flags --loss=hinge'
"""

import argparse
import json
import os
import shlex
import sys
import tempfile

from bench_util import COLUMN
from bench_util import EMBEDDINGS
from bench_util import run_app
from bench_util import train_with_exports

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), 'shared', 'data')
DEFAULT_RECIPES = ('', '--flagfile=' + os.path.join(REPO, 'configs', 'cpu.flags'))


def measure(export: str, records: str, out: str, seed: int, eval_sequences: int,
            env: dict) -> dict:
  """bin/probe of the discriminator (clips tiled, then padded with silence) and
  bin/evaluate of the generator of one export."""
  result = {}
  for key, short_clip in (('probe', 'tile'), ('probe_zeros', 'zeros')):
    probe_dir = f'{out}_{key}'
    run_app('probe', '--model', os.path.join(export, 'discriminator'), '--queries',
            os.path.join(SHARED, 'orcasound', 'clips', 'S_*.wav'), '--catalogue',
            os.path.join(SHARED, 'orcasound', 'catalog', 'flac', 'FO-S*.flac'),
            '--output_dir', probe_dir, '--seed', str(seed), '--short_clip', short_clip,
            env=env)
    with open(os.path.join(probe_dir, 'probe.json')) as f:
      result[key] = json.load(f)['features']
  evaluate_dir = out + '_evaluate'
  run_app('evaluate', '--model', os.path.join(export, 'generator'), '--tfrecords',
          records, '--output_dir', evaluate_dir, '--seed', str(seed), '--num_sequences',
          str(eval_sequences), env=env)
  with open(os.path.join(evaluate_dir, 'metrics.json')) as f:
    result['evaluate'] = json.load(f)
  return result


def ratio_interval(evaluate: dict, name: str) -> list:
  """bin/evaluate's 90 % interval of generated / real for a spread (nan without)."""
  entry = evaluate['centroids'].get('intervals', {}).get(name, {})
  return entry.get('ratio') or [float('nan')] * 2


def print_table(recipes: dict, seed: int, records: str, eval_sequences: int) -> None:
  print(f'\nquality_bench: seed {seed}; records {records}')
  for recipe, r in recipes.items():
    print(f'  recipe {r["name"]}: bin/train {recipe or "(defaults)"}, '
          f'{r["train_min"]:.1f} min of training')
  for key, clips in (('probe', 'clips tiled'), ('probe_zeros', 'clips padded with silence')):
    print(f'\ncall-type retrieval, MRR (36 clips against 45 catalogue calls; {clips}):')
    print(f'  {"":22}' + ''.join(f'{e:>{COLUMN}}' for e in EMBEDDINGS))
    for r in recipes.values():
      for name, m in r['results'].items():
        print(f'  {r["name"] + " " + name:22}' + ''.join(
            f'{m[key][f"trained {e}"]["retrieval"]["mrr"]:{COLUMN}.3f}' for e in EMBEDDINGS))
    baseline = next(iter(recipes.values()))['results']['untrained'][key]
    for feature in ('spectral_profile', 'raw_pixels'):
      print(f'  {feature:22} {baseline[feature]["retrieval"]["mrr"]:{COLUMN - 1}.3f}'
            '  (baseline)')
  print(f'\ngenerator (bin/evaluate on the training records, {eval_sequences} sequences of '
        '4 windows; real in brackets):')
  print(f'  {"":22}{"FD same-size":>13}{"(floor)":>8}{"KID":>8}{"(floor)":>8}'
        f'{"unrelated corr":>15}{"(real)":>7}{"coarse":>7}{"(real)":>7}'
        f'{"spread s":>9}{"(real)":>7}'
        f'{"spread kHz":>11}{"(real)":>7}{"gen/real 90 %":>14}{"median kHz":>11}{"(real)":>7}'
        f'{"speckle":>8}{"(real)":>7}{"its corr":>9}{"(real)":>7}')
  for r in recipes.values():
    for name, m in r['results'].items():
      e = m['evaluate']
      fd, kid = e['frechet_distance'], e['kernel_distance']
      coherence, (gen, real) = (e['temporal_coherence'],
                                (e['centroids']['generated'], e['centroids']['real']))
      print(f'  {r["name"] + " " + name:22}{fd["generated_vs_real_same_size"]:13.3f}'
            f'{fd["real_vs_real_floor"]:8.3f}{kid["generated_vs_real"]:8.4f}'
            f'{kid["real_vs_real_floor"]:8.4f}{coherence["generated_unrelated"]:15.2f}'
            f'{coherence["real_unrelated"]:7.2f}'
            f'{coherence["generated_unrelated_coarse"]:7.2f}'
            f'{coherence["real_unrelated_coarse"]:7.2f}{gen["std_s"]:9.2f}{real["std_s"]:7.2f}'
            f'{gen["std_khz"]:11.2f}{real["std_khz"]:7.2f}'
            f'{"{:.2f}-{:.2f}".format(*ratio_interval(e, "std_khz")):>14}'
            f'{gen["quartiles_khz"][1]:11.2f}{real["quartiles_khz"][1]:7.2f}'
            f'{e["speckle"]["generated"]:8.3f}{e["speckle"]["real"]:7.3f}'
            f'{coherence["generated_unrelated_speckle"]:9.2f}'
            f'{coherence["real_unrelated_speckle"]:7.2f}')


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--checkpoints', default='1200,2400',
                      help='Steps at which the models are exported and measured; '
                      'training stops at the last.')
  parser.add_argument('--recipe', action='append',
                      help='bin/train flags of one recipe to compare (repeatable; '
                      "'' = the defaults). Default: the defaults and configs/cpu.flags.")
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--eval_sequences', type=int, default=256,
                      help="bin/evaluate's --num_sequences (4 windows each).")
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
  recipes, untrained = {}, {}
  for i, recipe in enumerate(args.recipe or DEFAULT_RECIPES):
    recipe_work = os.path.join(work, f'recipe_{i}')
    exports, train_min = train_with_exports(
        ['--tfrecords', records, '--seed', str(args.seed), *shlex.split(recipe)],
        recipe_work, checkpoints, f'quality_bench: {recipe or "(defaults)"}', env)
    with open(os.path.join(recipe_work, 'untrained', 'config.json')) as f:
      saved = json.load(f)
    architecture = json.dumps([saved['model'], saved['train']['seed']], sort_keys=True)
    results = {}
    for name, export in exports.items():
      if name == 'untrained' and architecture in untrained:
        results[name] = untrained[architecture]  # Same weights: measured already.
        continue
      results[name] = measure(export, records,
                              os.path.join(recipe_work, name.replace(' ', '_')),
                              args.seed, args.eval_sequences, env)
    untrained.setdefault(architecture, results['untrained'])
    recipes[recipe] = {'name': chr(ord('A') + i), 'train_min': train_min,
                       'results': results}
  print_table(recipes, args.seed, records, args.eval_sequences)
  if args.json_out:
    with open(args.json_out, 'w') as f:
      json.dump({'args': vars(args), 'recipes': recipes}, f, indent=1)


if __name__ == '__main__':
  main()
