#!/usr/bin/env python3
"""make_tfrecords on Apache Beam's DirectRunner against the local converter.

  .venv/bin/python benchmarks/beam_bench.py [--copies 6 24] [--repeats 3]

Each input is N symlinks to `../shared/data/bench/orca_scene_10min.mp3` (6: one hour of
mp3 in 6 files; 24: four hours). For each size, each repeat runs, in fresh processes and
alternating so that drifts in the machine's speed hit both alike:

  local: bin/make_tfrecords (2 threads, the default);
  beam:  bin/make_tfrecords --runner DirectRunner (2 worker processes, multi_processing,
         the default for that runner);
  beam_threads: the same with --direct_running_mode=multi_threading (one process).

Whole-process wall time counts interpreter, TensorFlow and Beam start-up (and Beam's
shut-down); with two sizes, the speed on the hours between them (the difference of the
wall times) is printed too: what a long job runs at once the fixed costs are paid. Peak RSS is
`ru_maxrss` from `os.wait4` of the command, which on Linux is the largest of the
process and every descendant it waited for: the Beam workers included.
The outputs of local and beam are compared byte for byte.
"""

import argparse
import filecmp
import os
import shutil
import statistics
import sys
import tempfile

from bench_util import REPO, loadavg, run_child, wait_for_quiet

BENCH_MP3 = os.path.join(REPO, '..', 'shared', 'data', 'bench', 'orca_scene_10min.mp3')
MODES = {
    'local': [],
    'beam': ['--runner', 'DirectRunner'],
    'beam_threads': ['--runner', 'DirectRunner', '--pipeline_options',
                     '--direct_running_mode=multi_threading'],
}


def same_output(a: str, b: str) -> bool:
  names = sorted(os.listdir(a))
  if names != sorted(os.listdir(b)):
    return False
  shards = [n for n in names if n.startswith('shard-')]
  _, mismatch, errors = filecmp.cmpfiles(a, b, shards, shallow=False)
  return not mismatch and not errors


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--copies', type=int, nargs='+', default=[6, 24])
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args()
  work = tempfile.mkdtemp(prefix='beam_bench.')
  print(f'machine: {os.cpu_count()} cores, load {loadavg()}; waited '
        f'{wait_for_quiet(120):.0f} s for a quiet machine', flush=True)
  medians = {}
  try:
    for copies in args.copies:
      medians[copies] = measure(work, copies, args.repeats)
  finally:
    shutil.rmtree(work, ignore_errors=True)
  if len(args.copies) == 2:
    small, large = sorted(args.copies)
    hours = (large - small) / 6
    print(f'\nthe {hours:.2f} h between {small} and {large} copies (difference of the '
          'median wall times):')
    local = medians[large]['local'] - medians[small]['local']
    for mode in MODES:
      wall = medians[large][mode] - medians[small][mode]
      print(f'  {mode:12s} {wall:6.2f} s  {hours * 3600 / wall:5.0f}x realtime  '
            f'speed vs local {local / wall:.2f}')


def measure(work: str, copies: int, repeats: int) -> dict:
  """Runs every mode `repeats` times on `copies` copies; returns median wall times."""
  inputs = os.path.join(work, f'audio{copies}')
  os.makedirs(inputs)
  for i in range(copies):
    os.symlink(os.path.abspath(BENCH_MP3), os.path.join(inputs, f'copy{i}.mp3'))
  results: dict = {mode: [] for mode in MODES}
  for r in range(repeats):
    outs = {}
    for mode, flags in MODES.items():
      outs[mode] = os.path.join(work, f'{mode}_{r}')
      argv = [sys.executable, os.path.join(REPO, 'bin', 'make_tfrecords'), '--input',
              inputs, '--output_dir', outs[mode], *flags]
      result = run_child(argv, work, f'{mode}_{r}')
      results[mode].append(result)
      print(f'{copies} copies, repeat {r} {mode:12s}: {result["wall_s"]:6.2f} s wall, peak RSS '
            f'{result["peak_rss_mb"]:.0f} MB, other CPU {result["others_cpu_s"]:.1f} s',
            flush=True)
    if not same_output(outs['local'], outs['beam']):
      sys.exit(f'repeat {r}: the Beam output differs from the local output')
    for out in outs.values():
      shutil.rmtree(out)
  audio_h = copies / 6
  print(f'\n{audio_h:.2f} h of mp3 in {copies} files, {repeats} alternating repeats; '
        'median wall time; outputs of local and beam byte-equal', flush=True)
  medians = {mode: statistics.median(r['wall_s'] for r in results[mode])
             for mode in MODES}
  for mode, wall in medians.items():
    peak = max(r['peak_rss_mb'] for r in results[mode])
    print(f'  {mode:12s} {wall:6.2f} s  {audio_h * 3600 / wall:5.0f}x realtime  '
          f'speed vs local {medians["local"] / wall:.2f}  peak RSS (any process) '
          f'{peak:.0f} MB', flush=True)
  return medians


if __name__ == '__main__':
  main()
