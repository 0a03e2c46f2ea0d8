"""Is this working tree slower than an earlier revision? Alternating runs of one command.

Checks the revision out into a temporary git worktree, then runs the same bin/ command
with that revision's `orca_gan` and with this tree's, alternately (A B A B ...), each in
a fresh process, and prints every wall time, the means and medians and their ratio.
Alternating spreads slow phases of a shared machine over both sides.

  .venv/bin/python benchmarks/revision_ab.py --rev 885f7dc --repeats 4 -- \\
      make_tfrecords --input /tmp/tape_copies --output_dir {out}

`{out}` in the command becomes a fresh, empty folder for every run.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs bin/<app> with the orca_gan found at the given folder, not the installed one.
_LAUNCHER = '''
import runpy, sys
sys.meta_path = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]
root, app = sys.argv[1], sys.argv[2]
sys.path.insert(0, root)
import orca_gan
assert orca_gan.__file__.startswith(root), orca_gan.__file__
sys.argv = [app] + sys.argv[3:]
runpy.run_path(f'{root}/bin/{app}', run_name='__main__')
'''


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--rev', required=True, help='The earlier revision (any git rev).')
  parser.add_argument('--repeats', type=int, default=4)
  parser.add_argument('command', nargs=argparse.REMAINDER,
                      help='-- APP FLAGS...: a bin/ app and its flags.')
  args = parser.parse_args()
  command = [c for c in args.command if c != '--']
  if not command:
    sys.exit('give the command after --, e.g. -- make_tfrecords --input ...')
  work = tempfile.mkdtemp(prefix='revision_ab_')
  old = os.path.join(work, 'old')
  try:
    subprocess.run(['git', '-C', REPO, 'worktree', 'add', '--detach', old, args.rev],
                   check=True, capture_output=True)
    times = {args.rev: [], 'working tree': []}
    for _ in range(args.repeats):
      for name, root in ((args.rev, old), ('working tree', REPO)):
        out = os.path.join(work, 'out')
        shutil.rmtree(out, ignore_errors=True)
        argv = [c.replace('{out}', out) for c in command]
        start = time.monotonic()
        result = subprocess.run([sys.executable, '-c', _LAUNCHER, root, *argv],
                                capture_output=True, text=True)
        elapsed = time.monotonic() - start
        if result.returncode:
          sys.exit(f'{name}: exit {result.returncode}\n{result.stderr[-2000:]}')
        times[name].append(elapsed)
        print(f'{name:>14}: {elapsed:7.2f} s', flush=True)
    means = {name: statistics.mean(t) for name, t in times.items()}
    for name, t in times.items():
      print(f'{name:>14}: mean {means[name]:.2f} s, median {statistics.median(t):.2f} s, '
            f'range {min(t):.2f}-{max(t):.2f} s')
    print(f'working tree / {args.rev}: {means["working tree"] / means[args.rev]:.3f} '
          '(mean wall time)')
  finally:
    subprocess.run(['git', '-C', REPO, 'worktree', 'remove', '--force', old],
                   capture_output=True)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
  main()
