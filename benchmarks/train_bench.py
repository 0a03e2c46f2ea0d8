"""Training speed on this machine: the compiled step against the per-time-step design.

Measured in one run, each configuration in its own subprocess (peak RSS per process, no
shared compilation caches):

* `compiled`: `GanTrainer.run`, the whole training step (every time step, both updates,
  the optimizer updates, reading the batch) in one call; `--steps_per_loop` steps per
  call; metrics stay on the device until a summary.
* `per-time-step`: the design bin/train had before, kept here only as the baseline:
  per time step one `tf.function` for the D loss and gradients and one for G (XLA on
  request), optimizer updates outside them, every metric read back as a float at every
  step, the batch read in Python.

Configurations: the dispatch-bound one (16x16 images, widths 8, batch 4, seq_len 12:
compute is cheap, so per-call overhead decides, as on a GPU), and the CPU demo defaults
of bin/train (128x128, batch 16 x seq_len 4). Then XLA (`--jit_compile=true`) on the
demo config, the checkpoint cost of the saved input position on 1000 shards, and
bin/train with `--strategy multi_worker` in 2 worker processes on localhost (the same
global batch) next to one process.

  .venv/bin/python benchmarks/train_bench.py
  .venv/bin/python benchmarks/train_bench.py --steps 30
  .venv/bin/python benchmarks/train_bench.py --sections workers
"""

import argparse
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

DISPATCH = dict(batch_size=4, seq_len=12, z_dim=8, g_lstm_units=8, d_lstm_units=8,
                gf_dim=8, df_dim=8)
DEMO: dict = {}  # bin/train's defaults.


def _run(python, env, *args):
  out = subprocess.run([python, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                              'train_bench_child.py'), *args],
                       check=True, env=env,
                       capture_output=True, text=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def _records(python, env, work, name, *make_flags, num_files=6, duration_s=120):
  audio = f'{work}/audio_{name}'
  subprocess.run([python, os.path.join(REPO, 'bin', 'synthesize_scene'), '--output_dir',
                  audio, '--num_files', str(num_files), '--duration_s', str(duration_s)],
                 check=True, env=env, stdout=subprocess.DEVNULL)
  subprocess.run([python, os.path.join(REPO, 'bin', 'make_tfrecords'), '--input', audio,
                  '--output_dir', f'{work}/{name}', *make_flags], check=True, env=env,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  return f'{work}/{name}'


def _many_shards(records_dir, out, count):
  """A folder whose manifest lists `count` copies of the first shard: an archive's
  number of shards (about one per tape), without converting days of audio."""
  import shutil
  os.makedirs(out)
  with open(os.path.join(records_dir, 'manifest.json')) as f:
    manifest = json.load(f)
  first = manifest['shards'][0]
  shards = []
  for i in range(count):
    path = f'copy-{i:05d}-{first["path"]}'
    shutil.copyfile(os.path.join(records_dir, first['path']), os.path.join(out, path))
    shards.append(dict(first, path=path))
  manifest['shards'] = shards
  with open(os.path.join(out, 'manifest.json'), 'w') as f:
    json.dump(manifest, f)
  return out


def _steps_per_s(stdout: str) -> float:
  """The median steps/s of bin/train's summaries, the first (tracing) left out."""
  rates = [float(m.group(1)) for m in re.finditer(r'steps_per_s ([0-9.e+-]+)', stdout)]
  return statistics.median(rates[1:])


def _train_processes(python, env, records, logdir, workers, flags):
  """bin/train in `workers` processes (multi_worker on localhost when more than one)."""
  ports = []
  for _ in range(workers):
    with socket.socket() as s:
      s.bind(('localhost', 0))
      ports.append(s.getsockname()[1])
  argv = [python, os.path.join(REPO, 'bin', 'train'), '--tfrecords', records, '--logdir',
          logdir, *flags]
  processes = []
  for index in range(workers):
    worker_env = dict(env)
    if workers > 1:
      worker_env['TF_CONFIG'] = json.dumps({
          'cluster': {'worker': [f'localhost:{p}' for p in ports]},
          'task': {'type': 'worker', 'index': index}})
    processes.append(subprocess.Popen(
        argv + (['--strategy', 'multi_worker'] if workers > 1 else []),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=worker_env))
  outputs = [p.communicate() for p in processes]
  for p, (_, err) in zip(processes, outputs):
    if p.returncode:
      sys.exit(f'bin/train failed:\n{err[-3000:]}')
  return _steps_per_s(outputs[0][0])


def workers_section(python, env, work, records, steps):
  """bin/train on 1 process against 2 worker processes, the same global batch."""
  flags = ['--steps', str(steps), '--summary_every', '10', '--save_every', str(steps),
           '--image_every', str(steps)]
  one = _train_processes(python, env, records, f'{work}/one_worker', 1, flags)
  two = _train_processes(python, env, records, f'{work}/two_workers', 2, flags)
  print(f'bin/train, demo config (batch 16 x 4), {steps} steps: 1 process '
        f'{one:.2f} steps/s; 2 worker processes (--strategy multi_worker on localhost, '
        f'sharing these cores) {two:.2f} steps/s: {two / one:.2f}x')


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--steps', type=int, default=20)
  parser.add_argument('--warmup', type=int, default=3)
  parser.add_argument('--sections', nargs='+', default=['steps', 'checkpoints', 'workers'],
                      choices=['steps', 'checkpoints', 'workers'])
  args = parser.parse_args()

  work = tempfile.mkdtemp(prefix='train_bench_')
  python = sys.executable
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  cpu = next((line.split(':', 1)[1].strip() for line in open('/proc/cpuinfo')
              if line.startswith('model name')), platform.processor())
  print(f'machine: {os.cpu_count()} cores, {cpu}')
  demo_records = _records(python, env, work, 'demo')
  small_records = _records(python, env, work, 'small', '--image_size', '16')

  def measure(records, config, design, jit='false', steps_per_loop=1, steps=None):
    steps = steps or args.steps
    name = f'{design}_{jit}_{steps_per_loop}_{len(config)}'
    return _run(python, env, 'step', '--tfrecords', records, '--logdir',
                f'{work}/run_{name}', '--config', json.dumps(config), '--design', design,
                '--jit', jit, '--steps_per_loop', str(steps_per_loop), '--steps',
                str(steps), '--warmup', str(args.warmup))

  if 'steps' in args.sections:
    steps_section(args, measure, small_records, demo_records)
  if 'checkpoints' in args.sections:
    checkpoints_section(python, env, work, _many_shards(small_records, f'{work}/many',
                                                        1000))
  if 'workers' in args.sections:
    workers_section(python, env, work, demo_records, steps=60)


def steps_section(args, measure, small_records, demo_records):
  """The compiled step against the per-time-step design, with and without XLA."""
  rows = []
  for label, records, config, steps in (
      ('dispatch-bound (16x16, widths 8, batch 4 x 12)', small_records, DISPATCH,
       args.steps * 5),
      ('demo CPU defaults (128x128, batch 16 x 4)', demo_records, DEMO, args.steps)):
    legacy = measure(records, config, 'per-time-step', steps=steps)
    compiled = measure(records, config, 'compiled', steps=steps)
    looped = measure(records, config, 'compiled', steps_per_loop=10, steps=steps)
    rows.append((label, legacy, compiled, looped))
    print(f'{label}:')
    print(f'  per-time-step design        {legacy["step_s"] * 1000:8.1f} ms/step, '
          f'peak RSS {legacy["peak_rss_mb"]:.0f} MB')
    for name, r in (('compiled step', compiled), ('compiled, --steps_per_loop 10', looped)):
      print(f'  {name:27} {r["step_s"] * 1000:8.1f} ms/step, peak RSS '
            f'{r["peak_rss_mb"]:.0f} MB: {legacy["step_s"] / r["step_s"]:.2f}x the '
            'steps/s of the per-time-step design')
  # The GPU path compiles with XLA: the same comparison with both designs compiled.
  steps = args.steps * 5
  legacy = measure(small_records, DISPATCH, 'per-time-step', jit='true', steps=steps)
  compiled = measure(small_records, DISPATCH, 'compiled', jit='true', steps=steps)
  print(f'dispatch-bound with --jit_compile=true: per-time-step design '
        f'{legacy["step_s"] * 1000:.1f} ms/step (peak RSS {legacy["peak_rss_mb"]:.0f} MB), '
        f'compiled step {compiled["step_s"] * 1000:.1f} ms/step (peak RSS '
        f'{compiled["peak_rss_mb"]:.0f} MB): {legacy["step_s"] / compiled["step_s"]:.2f}x '
        'the steps/s')
  xla = measure(demo_records, DEMO, 'compiled', jit='true')
  compiled = rows[1][2]
  print(f'demo config, --jit_compile=true (XLA on this CPU): {xla["step_s"] * 1000:.1f} '
        f'ms/step, {xla["step_s"] / compiled["step_s"]:.2f}x the step time without XLA '
        f'-> --jit_compile=auto '
        f'{"leaves XLA off" if xla["step_s"] > compiled["step_s"] else "should turn XLA on"} '
        'on a CPU')


def checkpoints_section(python, env, work, many_records):
  """What the saved input position costs in each checkpoint."""
  for seq_len, buffer in ((4, 256), (12, 256), (12, 1024)):
    config = dict(DISPATCH, seq_len=seq_len, shuffle_buffer=buffer)
    result = _run(python, env, 'checkpoint', '--tfrecords', many_records,
                  '--logdir', f'{work}/ckpt_{seq_len}_{buffer}', '--config',
                  json.dumps(config))
    print(f'checkpoint, 1000 shards of 16x16, seq_len {seq_len}, shuffle_buffer '
          f'{buffer}: ' + '; '.join(
              f'{name} {r["mb"]:.2f} MB, save {r["save_s"] * 1000:.0f} ms, restore and '
              f'one step {r["restore_s"] * 1000:.0f} ms' for name, r in result.items()))
  print('at 128x128 the saved buffer is 64x larger per window: shuffle_buffer x seq_len '
        'x 16 KiB (256 x 4: 16 MiB)')


if __name__ == '__main__':
  main()
