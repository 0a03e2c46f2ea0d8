"""Training speed on this machine: XLA on vs off, input-pipeline share, peak RSS.

Each configuration runs in its own subprocess (peak RSS per process, no shared
compilation caches): it builds a Trainer on demo-sized records, runs warm-up steps
(tracing, XLA compilation), then times `--steps` steps, separating the time spent
waiting for the input pipeline from the time in the train step.

  .venv/bin/python benchmarks/train_bench.py            # demo CPU config
  .venv/bin/python benchmarks/train_bench.py --steps 30 --batch_size 16
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child(args):
  import tensorflow as tf
  from orca_gan import train_lib
  config = train_lib.TrainConfig(
      tfrecords=args.tfrecords, logdir=args.logdir, batch_size=args.batch_size,
      seq_len=args.seq_len, jit_compile=args.jit, steps=10**9)
  trainer = train_lib.Trainer(config, log=lambda line: None)
  dataset = train_lib.data.sequence_dataset(args.tfrecords, config.batch_size,
                                            config.seq_len, seed=0)
  iterator = iter(trainer.strategy.experimental_distribute_dataset(dataset))
  for _ in range(args.warmup):
    trainer.train_step(next(iterator))
  wait = compute = 0.0
  for _ in range(args.steps):
    start = time.perf_counter()
    batch = next(iterator)
    fetched = time.perf_counter()
    trainer.train_step(batch)   # Returns floats: the step has finished.
    wait += fetched - start
    compute += time.perf_counter() - fetched
  total = wait + compute
  print(json.dumps({
      'jit': trainer.jit, 'step_s': total / args.steps,
      'examples_per_s': args.steps * config.batch_size * config.seq_len / total,
      'input_share': wait / total,
      'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      'devices': [d.device_type for d in tf.config.list_physical_devices()],
  }))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--steps', type=int, default=20)
  parser.add_argument('--warmup', type=int, default=3)
  parser.add_argument('--batch_size', type=int, default=16)
  parser.add_argument('--seq_len', type=int, default=4)
  parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
  parser.add_argument('--tfrecords', help=argparse.SUPPRESS)
  parser.add_argument('--logdir', help=argparse.SUPPRESS)
  parser.add_argument('--jit', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    return child(args)

  work = tempfile.mkdtemp(prefix='train_bench_')
  python = sys.executable
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  subprocess.run([python, os.path.join(REPO, 'bin', 'synthesize_scene'),
                  '--output_dir', f'{work}/audio'], check=True, env=env,
                 stdout=subprocess.DEVNULL)
  subprocess.run([python, os.path.join(REPO, 'bin', 'make_tfrecords'), '--input',
                  f'{work}/audio', '--output_dir', f'{work}/records'], check=True,
                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  results = {}
  for jit in ('false', 'true'):
    out = subprocess.run(
        [python, __file__, '--child', '--tfrecords', f'{work}/records', '--logdir',
         f'{work}/run_{jit}', '--jit', jit, '--steps', str(args.steps), '--warmup',
         str(args.warmup), '--batch_size', str(args.batch_size), '--seq_len',
         str(args.seq_len)], check=True, env=env, capture_output=True, text=True)
    results[jit] = json.loads(out.stdout.strip().splitlines()[-1])

  cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo')
              if l.startswith('model name')), platform.processor())
  print(f'machine: {os.cpu_count()} cores, {cpu}; devices {results["false"]["devices"]}')
  print(f'config: demo CPU defaults (bin/train), batch {args.batch_size} x seq_len '
        f'{args.seq_len} of 128x128, {args.steps} timed steps after {args.warmup} '
        'warm-up steps')
  for jit, r in results.items():
    print(f'XLA {jit:5}: {r["step_s"] * 1000:7.1f} ms/step, {r["examples_per_s"]:6.1f} '
          f'windows/s, input pipeline {r["input_share"] * 100:4.1f}% of step time, '
          f'peak RSS {r["peak_rss_mb"]:.0f} MB')
  ratio = results['true']['step_s'] / results['false']['step_s']
  print(f'XLA / no XLA step time: {ratio:.2f}x -> --jit_compile=auto '
        f'{"is right to leave XLA off" if ratio > 1 else "should turn XLA on"} here')


if __name__ == '__main__':
  main()
