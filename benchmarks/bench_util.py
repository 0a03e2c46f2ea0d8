"""What the benchmark scripts share: running children and measuring them and the machine."""

import argparse
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The discriminator embeddings the quality benchmarks print (bin/probe's JSON holds
# them all): bin/embed's previous default, the best measured for short clips padded
# with silence, bin/embed's default (at 128 px), all blocks averaged, the DCGAN grid,
# and the LSTM output.
EMBEDDINGS = ('conv1_time_mean', 'conv0_time_mean_std', 'conv3_time_mean_std',
              'conv_time_mean', 'conv_grid', 'lstm')
COLUMN = max(map(len, EMBEDDINGS)) + 2


def run_app(name: str, *args, env: dict) -> str:
  """Runs bin/<name> in a fresh process; its stdout, or exits with its stderr's tail."""
  result = subprocess.run([sys.executable, os.path.join(REPO, 'bin', name), *args],
                          capture_output=True, text=True, env=env)
  if result.returncode:
    sys.exit(f'bin/{name} failed:\n{result.stderr[-3000:]}')
  return result.stdout


def train_with_exports(train_flags: list, work: str, checkpoints, label: str,
                       env: dict) -> tuple:
  """Exports bin/train's model untrained (`--steps 0`), then trains it in
  `<work>/run`, exporting at every step of `checkpoints`.

  Args:
    train_flags: bin/train flags (records, seed, the recipe), without --logdir/--steps.
    work: Folder of the run, the untrained run and the exports.
    checkpoints: Increasing steps.
    label: Start of the progress lines.
    env: Environment of the children.

  Returns:
    ({'untrained' or 'step N': export folder}, minutes spent training).
  """
  train = [*train_flags, '--logdir', os.path.join(work, 'run')]
  run_app('train', *train, '--steps', '0', '--logdir', os.path.join(work, 'untrained'),
          env=env)
  exports = {'untrained': os.path.join(work, 'untrained', 'export')}
  start = time.monotonic()
  for step in checkpoints:
    export = os.path.join(work, f'export_{step}')
    run_app('train', *train, '--steps', str(step), '--export_dir', export, env=env)
    exports[f'step {step}'] = export
    print(f'{label}: trained to step {step} ({(time.monotonic() - start) / 60:.1f} min '
          'of training)', flush=True)
  return exports, (time.monotonic() - start) / 60


def loadavg() -> str:
  try:
    with open('/proc/loadavg') as f:
      return ' '.join(f.read().split()[:3])
  except OSError:
    return '?'


def cpu_ticks():
  """(busy, steal) CPU seconds of the whole machine so far, from /proc/stat."""
  try:
    with open('/proc/stat') as f:
      fields = [int(v) for v in f.readline().split()[1:]]
  except (OSError, ValueError):
    return None
  hz = os.sysconf('SC_CLK_TCK')
  idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
  # Fields 8+ (guest) are already included in user time.
  total = sum(fields[:8])
  steal = fields[7] if len(fields) > 7 else 0
  return (total - idle - steal) / hz, steal / hz


def wait_for_quiet(max_wait_s: float, busy_below: float = 0.25) -> float:
  """Waits (at most max_wait_s) until the machine is nearly idle; returns the wait."""
  start = time.monotonic()
  while time.monotonic() - start < max_wait_s:
    before = cpu_ticks()
    time.sleep(2.0)
    after = cpu_ticks()
    if before is None or after is None:
      break
    cores = os.cpu_count() or 1
    if (after[0] - before[0]) / 2.0 / cores < busy_below:
      break
  return time.monotonic() - start


def run_child(argv, log_dir: str, name: str, env=None, cwd=None) -> dict:
  """Runs argv to completion; returns wall, CPU, this child's peak RSS and its output.

  Also returns `others_cpu_s`: CPU time the rest of the machine used meanwhile (busy time
  from /proc/stat minus this child's), and `steal_s` (time the hypervisor took away).
  """
  out_path = os.path.join(log_dir, name + '.stdout')
  err_path = os.path.join(log_dir, name + '.stderr')
  with open(out_path, 'w') as out, open(err_path, 'w') as err:
    ticks = cpu_ticks()
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=cwd)
    # wait4 gives the rusage of exactly this child (RUSAGE_CHILDREN would be the maximum
    # over all children waited for so far).
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    ticks_after = cpu_ticks()
    proc.returncode = os.waitstatus_to_exitcode(status)
  cpu = usage.ru_utime + usage.ru_stime
  others = steal = float('nan')
  if ticks and ticks_after:
    others = max(0.0, ticks_after[0] - ticks[0] - cpu)
    steal = ticks_after[1] - ticks[1]
  with open(out_path) as f:
    stdout = f.read()
  with open(err_path) as f:
    stderr = f.read()
  if proc.returncode != 0:
    sys.exit(f'{name} failed (exit {proc.returncode}): {" ".join(argv)}\n'
             f'--- stderr tail ---\n{stderr[-3000:]}')
  return {'wall_s': wall, 'cpu_s': cpu, 'others_cpu_s': others, 'steal_s': steal,
          'peak_rss_mb': usage.ru_maxrss / 1024, 'stdout': stdout, 'stderr': stderr}


def generator_diagnostic_args(description: str, num_sequences: int):
  """The parser of a script that draws windows from an exported generator and reads
  its training records: --model, --tfrecords, --seed, --num_sequences, --seq_len."""
  parser = argparse.ArgumentParser(description=description)
  parser.add_argument('--model', required=True, help='An exported generator.')
  parser.add_argument('--tfrecords', required=True, help='Its training records.')
  parser.add_argument('--seed', type=int, default=0, help="bin/evaluate's --seed.")
  parser.add_argument('--num_sequences', type=int, default=num_sequences,
                      help='Generated sequences.')
  parser.add_argument('--seq_len', type=int, default=4,
                      help="Windows per generated sequence (bin/evaluate's 4).")
  return parser


def generated_and_records(args) -> tuple:
  """(generated windows [N, H, W] with bin/evaluate's latents for --seed, the records'
  manifest, their spectrogram transform) for `generator_diagnostic_args`' flags."""
  from orca_gan import evaluate_lib
  from orca_gan import records
  loaded = evaluate_lib.load_generator(args.model)
  manifest = records.read_manifest(args.tfrecords)
  generated = evaluate_lib.generate(loaded, args.num_sequences, args.seq_len, args.seed)
  return (generated.reshape(-1, *generated.shape[-2:]), manifest,
          records.manifest_config(manifest))
