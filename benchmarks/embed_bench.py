#!/usr/bin/env python3
"""Benchmark of bin/embed (whole process) next to bin/make_tfrecords on the same audio.

Run from anywhere:

  .venv/bin/python benchmarks/embed_bench.py [--copies 3] [--repeats 2]

Input: `--copies` symlinks (separate files) to `<repo>/../shared/data/bench/
orca_scene_10min.mp3` (10 min, 44.1 kHz mono mp3), so 3 copies = 30 min of audio.
Model: the demo discriminator `demo/run/export/discriminator` (`make demo` makes it).

Rows, each a fresh subprocess, so interpreter and TensorFlow start-up are counted and
peak RSS (`ru_maxrss` from `os.wait4`) is that process's own:
  baseline  bin/make_tfrecords: decode + spectrogram + shard writing, no model;
  pooled    bin/embed (the default embedding, a pooled feature of each window);
  file      bin/embed --embedding lstm --context file;
  window    bin/embed --embedding lstm --context window;
  records   bin/embed --tfrecords <the baseline's output>: start-up, model and reading
            stored windows, no decoding;
  startup   bin/embed on a 3-s clip: the fixed cost (imports, model load, tracing).
The realtime factor is audio seconds / wall seconds; the ratio column is wall time over
the baseline's, i.e. what the discriminator (and the embed outputs) add to decoding.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import wave

from bench_util import loadavg, run_child

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_MP3 = os.path.join(REPO, '..', 'shared', 'data', 'bench', 'orca_scene_10min.mp3')
DEMO_MODEL = os.path.join(REPO, 'demo', 'run', 'export', 'discriminator')
TARGET_RTF = 200.0


def best_of(repeats: int, argv_for, work: str, name: str, check=None) -> dict:
  """The fastest of `repeats` runs (peak RSS: the largest); `argv_for(out_dir)`."""
  best, peak = None, 0.0
  for r in range(repeats):
    out_dir = os.path.join(work, f'{name}_{r}')
    result = run_child(argv_for(out_dir), work, f'{name}_{r}', cwd=REPO)
    if check:
      check(out_dir)
    if not (name == 'baseline' and r == 0):  # Kept: the input of the 'records' row.
      shutil.rmtree(out_dir, ignore_errors=True)
    peak = max(peak, result['peak_rss_mb'])
    if best is None or result['wall_s'] < best['wall_s']:
      best = result
  assert best is not None
  best['peak_rss_mb'] = peak
  return best


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--copies', type=int, default=3,
                      help='Copies of the 10-min bench mp3 (3 = 30 min).')
  parser.add_argument('--repeats', type=int, default=2,
                      help='Runs of each row; the fastest is reported.')
  parser.add_argument('--num_workers', type=int, default=2)
  parser.add_argument('--model', default=DEMO_MODEL)
  parser.add_argument('--json_out', default=None, help='Also write results as JSON.')
  args = parser.parse_args()
  if not os.path.isfile(BENCH_MP3):
    sys.exit(f'error: benchmark input {os.path.normpath(BENCH_MP3)} is missing')
  if not os.path.isdir(args.model):
    sys.exit(f'error: no model at {args.model}: run `make demo` first (it trains and '
             'exports the demo model in a few minutes)')

  python = sys.executable
  work = tempfile.mkdtemp(prefix='embed_bench_')
  copies = os.path.join(work, 'audio')
  os.mkdir(copies)
  for i in range(args.copies):
    os.symlink(os.path.realpath(BENCH_MP3),
               os.path.join(copies, f'orca_scene_{i:02d}.mp3'))
  clip = os.path.join(work, 'clip.wav')
  with wave.open(clip, 'wb') as f:
    f.setnchannels(1)
    f.setsampwidth(2)
    f.setframerate(16000)
    f.writeframes(bytes(2 * 48000))
  records = os.path.join(work, 'baseline_0')
  embed = [python, os.path.join(REPO, 'bin', 'embed'), '--model', args.model,
           '--num_workers', str(args.num_workers)]
  rows = {
      'baseline': lambda out: [python, os.path.join(REPO, 'bin', 'make_tfrecords'),
                               '--input', copies, '--output_dir', out,
                               '--num_workers', str(args.num_workers)],
      'pooled': lambda out: embed + ['--input', copies, '--output_dir', out],
      'file': lambda out: embed + ['--input', copies, '--output_dir', out,
                                   '--embedding', 'lstm'],
      'window': lambda out: embed + ['--input', copies, '--output_dir', out,
                                     '--embedding', 'lstm', '--context', 'window'],
      'records': lambda out: embed + ['--tfrecords', records, '--output_dir', out],
      'startup': lambda out: embed + ['--input', clip, '--output_dir', out],
  }
  results = {'load_before': loadavg(), 'nproc': os.cpu_count(), 'copies': args.copies,
             'repeats': args.repeats, 'argv': sys.argv}
  print(f'embed_bench: {args.copies} x 10 min mp3, model {args.model}, '
        f'--num_workers {args.num_workers}, best of {args.repeats}; load average '
        f'before {results["load_before"]} (nproc {os.cpu_count()})', flush=True)
  expected = {}

  def check(name, out_dir):
    """Checks a run's output; the baseline's manifest gives the audio and windows."""
    if name == 'baseline':
      with open(os.path.join(out_dir, 'manifest.json')) as f:
        files = json.load(f)['files']
      expected['windows'] = sum(x['windows'] for x in files)
      expected['audio_s'] = sum(x['duration_s'] for x in files)
      return
    with open(os.path.join(out_dir, 'metadata.tsv')) as f:
      rows = sum(1 for _ in f) - 1
    if rows != (1 if name == 'startup' else expected['windows']):
      sys.exit(f'{name}: {rows} embedded windows, expected {expected["windows"]}')

  try:
    for name, argv_for in rows.items():
      print(f'... {name} (load {loadavg()})', flush=True)
      results[name] = best_of(args.repeats, argv_for, work, name,
                              lambda out_dir, name=name: check(name, out_dir))
    results['load_after'] = loadavg()
  finally:
    shutil.rmtree(work, ignore_errors=True)

  audio_s = expected['audio_s']
  base = results['baseline']['wall_s']
  print()
  header = (f'{"run":36s} {"audio h":>7s} {"wall s":>7s} {"x realtime":>10s} '
            f'{"vs base":>7s} {"CPU s":>6s} {"peak RSS":>8s} {"others":>6s}')
  print(header)
  print('-' * len(header))
  names = {'baseline': 'bin/make_tfrecords (baseline)',
           'pooled': 'bin/embed (default embedding)',
           'file': 'bin/embed --embedding lstm',
           'window': 'bin/embed lstm, --context window',
           'records': 'bin/embed --tfrecords (no decoding)',
           'startup': 'bin/embed on one 3-s clip'}
  for name, label in names.items():
    r = results[name]
    audio = 3.0 if name == 'startup' else audio_s
    r['audio_s'] = audio
    r['rtf'] = audio / r['wall_s']
    print(f'{label:36s} {audio / 3600:7.3f} {r["wall_s"]:7.2f} {r["rtf"]:9.0f}x '
          f'{r["wall_s"] / base:6.2f}x {r["cpu_s"]:6.1f} {r["peak_rss_mb"]:6.0f} MB '
          f'{100 * r["others_cpu_s"] / r["wall_s"]:5.0f}%')
  print('(wall = whole process incl. start-up; CPU = user+sys of that process; vs base = '
        'wall / baseline wall; others = CPU used meanwhile by other processes, % of one '
        'core)')
  worst = min(results[name]['rtf'] for name in ('pooled', 'file', 'window'))
  print(f'target >= {TARGET_RTF:.0f}x realtime for bin/embed on {audio_s / 60:.0f} min: '
        f'{"met" if worst >= TARGET_RTF else "NOT met"} (pooled '
        f'{results["pooled"]["rtf"]:.0f}x, lstm file {results["file"]["rtf"]:.0f}x, '
        f'window {results["window"]["rtf"]:.0f}x)')
  print(f'load average before {results["load_before"]}, after {results["load_after"]} '
        f'(nproc {os.cpu_count()}; above ~0.5 other work shared the cores)')
  if args.json_out:
    for name in names:
      results[name].pop('stdout', None)
      results[name]['stderr'] = results[name]['stderr'][-2000:]
    with open(args.json_out, 'w') as out:
      json.dump(results, out, indent=1)


if __name__ == '__main__':
  main()
