#!/usr/bin/env python3
"""Benchmark of bin/make_tfrecords against the naive decode -> resample -> STFT baseline.

Run from anywhere (see benchmarks/README.md):

  .venv/bin/python benchmarks/make_tfrecords_bench.py [--copies 6] [--baseline_copies 1]

Inputs are built in a temporary folder from `<repo>/../shared/data/bench/
orca_scene_10min.mp3` (a tagless 128 kb/s CBR mono mp3, 10 min at 44.1 kHz):

* `--copies` symlinks to it (default 6 -> one hour of audio in 6 files), and
* one 60-minute file made by byte-concatenating 6 copies (valid for a tagless CBR stream).

Every measured tool runs in a fresh subprocess, so interpreter and TensorFlow start-up
are counted, and peak RSS (from `os.wait4`, i.e. that one child's `ru_maxrss`) belongs to
that process alone. The parent never imports TensorFlow.

Rows:
  a. orca_gan, whole process, on the N copies (the headline realtime factor);
  b. the naive baseline (the issue's definition) on `--baseline_copies` copies, in a child
     (`naive_pipeline.py`); realtime factors are per audio second, so they are
     comparable although the baseline sees less audio;
  c. orca_gan on the single 60-minute file (peak-RSS target);
  d. an in-process breakdown (`make_tfrecords_breakdown.py`): start-up, the mp3
     frame-chain check, decode only, spectrogram only, convert_file and shard writing.
"""

import argparse
import datetime
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from bench_util import loadavg, run_child, wait_for_quiet

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BENCH_MP3 = os.path.join(REPO, '..', 'shared', 'data', 'bench', 'orca_scene_10min.mp3')
MAKE_TFRECORDS = os.path.join(REPO, 'bin', 'make_tfrecords')

TARGET_RTF = 500.0    # x realtime for one hour of mp3, whole process.
TARGET_RSS_MB = 1500  # peak RSS for the single 60-minute file.

# ----------------------------------------------------------------------------- helpers

def _fmt_mb(mb: float) -> str:
  return f'{mb / 1024:.2f} GB' if mb >= 1024 else f'{mb:.0f} MB'


def machine() -> dict:
  model = '?'
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          model = line.split(':', 1)[1].strip()
          break
  except OSError:
    pass
  mem_gb = float('nan')
  try:
    with open('/proc/meminfo') as f:
      for line in f:
        if line.startswith('MemTotal:'):
          mem_gb = int(line.split()[1]) / 1024 / 1024
  except OSError:
    pass
  try:
    nproc = subprocess.run(['nproc'], capture_output=True, text=True,
                           check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    nproc = str(len(os.sched_getaffinity(0)))
  versions = {}
  for name in ('tensorflow', 'tensorflow-io', 'numpy'):
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = 'not installed'
  return {'nproc': nproc, 'cpu_model': model, 'mem_gb': round(mem_gb, 1),
          'python': sys.version.split()[0], 'versions': versions}


def run_orca(inputs: str, work: str, name: str, num_workers: int, repeats: int,
             measure_startup: bool = False) -> dict:
  """bin/make_tfrecords as a user runs it; the fastest of `repeats` runs.

  Peak RSS is the largest over the repeats. With `measure_startup`, the same command is
  rerun once on the finished output folder, where it finds every file already converted
  and only starts up, lists inputs, reads the manifest and exits: its fixed cost.
  """
  best = None
  peak = 0.0
  startup = None
  for r in range(repeats):
    out_dir = os.path.join(work, f'out_{name}_{r}')  # Fresh: no "already converted".
    argv = [sys.executable, MAKE_TFRECORDS, '--input', inputs, '--output_dir', out_dir,
            '--num_workers', str(num_workers)]
    result = run_child(argv, work, f'{name}_{r}')
    last = result['stdout'].strip().splitlines()[-1]
    if not last.startswith('make_tfrecords:'):
      sys.exit(f'{name}: unexpected last stdout line {last!r}')
    with open(os.path.join(out_dir, 'manifest.json')) as f:
      manifest = json.load(f)
    result['audio_s'] = sum(f['duration_s'] for f in manifest['files'])
    result['files'] = len(manifest['files'])
    result['windows'] = sum(f['windows'] for f in manifest['files'])
    result['tool_line'] = last
    result['argv'] = argv
    if measure_startup and startup is None:
      startup = run_child(argv, work, f'{name}_startup')
      startup.update(audio_s=0.0, rtf=0.0, argv=argv,
                     tool_line=startup['stdout'].strip().splitlines()[-1])
    shutil.rmtree(out_dir, ignore_errors=True)
    peak = max(peak, result['peak_rss_mb'])
    if best is None or result['wall_s'] < best['wall_s']:
      best = result
  assert best is not None
  best['peak_rss_mb'] = peak
  best['rtf'] = best['audio_s'] / best['wall_s']
  best['repeats'] = repeats
  if startup:
    best['startup'] = startup
  return best


def _child_json(result: dict, tag: str) -> dict:
  for line in reversed(result['stdout'].splitlines()):
    if line.startswith(tag):
      return json.loads(line[len(tag):])
  sys.exit(f'child printed no {tag} line:\n{result["stdout"][-2000:]}\n'
           f'{result["stderr"][-2000:]}')


# ------------------------------------------------------------------------ the benchmark

def build_inputs(work: str, copies: int, baseline_copies: int):
  copies_dir = os.path.join(work, 'copies')
  base_dir = os.path.join(work, 'baseline_copies')
  os.makedirs(copies_dir)
  os.makedirs(base_dir)
  source = os.path.realpath(BENCH_MP3)
  for i in range(copies):
    os.symlink(source, os.path.join(copies_dir, f'orca_scene_{i:02d}.mp3'))
  base_files = []
  for i in range(baseline_copies):
    link = os.path.join(base_dir, f'orca_scene_{i:02d}.mp3')
    os.symlink(source, link)
    base_files.append(link)
  long_file = os.path.join(work, 'orca_scene_60min.mp3')
  with open(long_file, 'wb') as out:
    for _ in range(6):
      with open(source, 'rb') as f:
        shutil.copyfileobj(f, out)
  return copies_dir, base_files, long_file


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--copies', type=int, default=6,
                      help='Copies of the 10-min bench mp3 for row a (6 = one hour).')
  parser.add_argument('--baseline_copies', type=int, default=1,
                      help='Copies the naive baseline converts (it is slow); its '
                      'realtime factor is per audio second, so comparable.')
  parser.add_argument('--num_workers', type=int, default=2,
                      help='--num_workers for bin/make_tfrecords in rows a and c.')
  parser.add_argument('--profile_workers', default='1',
                      help='Comma-separated extra --num_workers values to run row a '
                      'with (profiling); empty for none.')
  parser.add_argument('--repeats', type=int, default=2,
                      help='Runs of each orca_gan row; the fastest is reported.')
  parser.add_argument('--inprocess_repeats', type=int, default=5,
                      help='Runs of each in-process part (row d); the least time is kept.')
  parser.add_argument('--quiet_wait', type=float, default=0.0,
                      help='Before each row, wait up to this many seconds for the '
                      'machine to be nearly idle (< 25%% busy over 2 s).')
  parser.add_argument('--skip', default='',
                      help='Comma-separated rows to skip: baseline,single,inprocess.')
  parser.add_argument('--work_dir', default=None,
                      help='Parent of the temporary folder (default: system temp).')
  parser.add_argument('--keep', action='store_true', help='Keep the temporary folder.')
  parser.add_argument('--json_out', default=None, help='Also write results as JSON.')
  args = parser.parse_args()

  if not os.path.isfile(BENCH_MP3):
    sys.exit(f'error: benchmark input {os.path.normpath(BENCH_MP3)} is missing; it is '
             'expected next to the repository as ../shared/data/bench/'
             'orca_scene_10min.mp3')
  if args.copies < 1 or args.baseline_copies < 0 or args.repeats < 1:
    sys.exit('error: --copies and --repeats must be >= 1, --baseline_copies >= 0')
  repo_real = os.path.realpath(REPO)
  skip = {s.strip() for s in args.skip.split(',') if s.strip()}
  profile_workers = [int(w) for w in args.profile_workers.split(',') if w.strip()]

  work = tempfile.mkdtemp(prefix='make_tfrecords_bench_', dir=args.work_dir)
  if os.path.realpath(work).startswith(repo_real + os.sep):
    shutil.rmtree(work)
    sys.exit('error: --work_dir must be outside the repository')

  info = machine()
  started = datetime.datetime.now().astimezone()
  load_before = loadavg()
  print(f'machine: nproc={info["nproc"]}, CPU {info["cpu_model"]}, '
        f'{info["mem_gb"]} GB RAM, Python {info["python"]}, '
        f'TF {info["versions"]["tensorflow"]}, tfio {info["versions"]["tensorflow-io"]}')
  print(f'started {started.isoformat(timespec="seconds")}, load average {load_before}')
  print(f'work dir {work}', flush=True)

  results = {'machine': info, 'started': started.isoformat(timespec='seconds'),
             'load_before': load_before, 'argv': sys.argv, 'loads': []}
  rows = []
  orca = baseline = single = inproc = None

  def progress(text):
    waited = wait_for_quiet(args.quiet_wait) if args.quiet_wait > 0 else 0.0
    load = loadavg()
    results['loads'].append(load)
    extra = f', waited {waited:.0f} s for a quiet machine' if waited >= 2.5 else ''
    print(f'... {text} (load {load}{extra})', flush=True)

  try:
    copies_dir, base_files, long_file = build_inputs(work, args.copies,
                                                     args.baseline_copies)
    progress(f'a. orca_gan on {args.copies} copies, --num_workers {args.num_workers}')
    orca = run_orca(copies_dir, work, 'orca_copies', args.num_workers, args.repeats,
                    measure_startup=True)
    results['orca'] = orca
    rows.append((f'a. orca_gan, {args.copies} files, {args.num_workers} workers', orca))
    results['orca_startup'] = orca['startup']
    rows.append(("a0. same command, nothing left to convert", orca['startup']))

    for w in profile_workers:
      if w == args.num_workers:
        continue
      progress(f"a'. orca_gan on {args.copies} copies, --num_workers {w}")
      r = run_orca(copies_dir, work, f'orca_copies_w{w}', w, args.repeats)
      results[f'orca_workers_{w}'] = r
      rows.append((f"a'. orca_gan, {args.copies} files, {w} worker(s)", r))

    if 'baseline' not in skip and base_files:
      progress(f'b. naive baseline on {len(base_files)} copies')
      argv = [sys.executable, os.path.join(HERE, 'naive_pipeline.py')] + base_files
      baseline = run_child(argv, work, 'baseline')
      detail = _child_json(baseline, 'BASELINE_RESULT ')
      baseline.update(audio_s=detail['audio_s'], files=detail['files'],
                      windows=detail['windows'], detail=detail, argv=argv)
      baseline['rtf'] = baseline['audio_s'] / baseline['wall_s']
      results['baseline'] = baseline
      rows.append((f'b. naive baseline, {len(base_files)} file(s)', baseline))

    if 'single' not in skip:
      progress('c. orca_gan on the single 60-minute file')
      single = run_orca(long_file, work, 'orca_single', args.num_workers, args.repeats)
      results['single'] = single
      rows.append(('c. orca_gan, one 60-min file', single))

    if 'inprocess' not in skip:
      progress('d. in-process breakdown on the 10-min file')
      argv = [sys.executable, os.path.join(HERE, 'make_tfrecords_breakdown.py'),
              os.path.realpath(BENCH_MP3), str(args.inprocess_repeats)]
      r = run_child(argv, work, 'inprocess')
      inproc = _child_json(r, 'INPROCESS_RESULT ')
      inproc['process_wall_s'] = r['wall_s']
      inproc['process_peak_rss_mb'] = r['peak_rss_mb']
      results['inprocess'] = inproc
    results['load_after'] = loadavg()
  finally:
    if args.keep:
      print(f'kept {work}')
    else:
      shutil.rmtree(work, ignore_errors=True)

  report(args, results, rows, orca, baseline, single, inproc)
  if args.json_out:
    for r in list(results.values()) + [orca.get('startup', {})]:
      if isinstance(r, dict) and 'stderr' in r:
        r.pop('stdout', None)
        r['stderr'] = r['stderr'][-2000:]
    with open(args.json_out, 'w') as f:
      json.dump(results, f, indent=1, default=str)


def report(args, results, rows, orca, baseline, single, inproc) -> None:
  info = results['machine']
  print()
  header = (f'{"run":42s} {"audio h":>7s} {"wall s":>7s} {"x realtime":>10s} '
            f'{"CPU s":>6s} {"CPU %":>6s} {"peak RSS":>9s} {"others":>7s}')
  print(header)
  print('-' * len(header))
  for name, r in rows:
    rtf = f'{r["rtf"]:9.0f}x' if r['audio_s'] else f'{"-":>10s}'
    print(f'{name:42s} {r["audio_s"] / 3600:7.3f} {r["wall_s"]:7.2f} {rtf} '
          f'{r["cpu_s"]:6.1f} {100 * r["cpu_s"] / r["wall_s"]:5.0f}% '
          f'{_fmt_mb(r["peak_rss_mb"]):>9s} '
          f'{100 * (r["others_cpu_s"] + r["steal_s"]) / r["wall_s"]:6.0f}%')
  print('(wall = whole process incl. start-up; CPU = user+sys of that process, % of one '
        'core; peak RSS of that process; x realtime = audio s / wall s; others = CPU used '
        'by other processes + hypervisor steal meanwhile, % of one core)')
  print()

  summary = (f'orca_gan {orca["audio_s"] / 3600:.2f} h of mp3: {orca["rtf"]:.0f}x realtime '
             f'({orca["wall_s"]:.1f} s), peak RSS {_fmt_mb(orca["peak_rss_mb"])}')
  if baseline:
    summary += (f'; naive baseline: {baseline["rtf"]:.0f}x realtime, peak RSS '
                f'{_fmt_mb(baseline["peak_rss_mb"])}; speed-up '
                f'{orca["rtf"] / baseline["rtf"]:.1f}x')
    results['speedup'] = orca['rtf'] / baseline['rtf']
  print(summary)
  if baseline:
    d = baseline['detail']
    if abs(baseline['audio_s'] - orca['audio_s']) > 1:
      print(f'  baseline ran on {baseline["audio_s"] / 3600:.2f} h (--baseline_copies); '
            'realtime factors are per audio second, so they compare like with like, '
            f'except that its start-up ({d["import_s"]:.1f} s of imports) is spread over '
            'less audio')
    print(f'  baseline phases: imports {d["import_s"]:.1f} s, decode_mp3 '
          f'{d["decode_s"]:.1f} s, resample to 16 kHz {d["resample_s"]:.1f} s, '
          f'STFT + resize {d["stft_resize_s"]:.1f} s')
  own = re.search(r'at (\d+)x realtime', orca['tool_line'])
  if own:
    print(f'  (bin/make_tfrecords itself reports {own.group(1)}x for row a: its own clock '
          'starts after interpreter and TensorFlow start-up, which this benchmark counts)')
  hours = orca['audio_s'] / 3600
  note = '' if abs(hours - 1) < 0.02 else f', measured on {hours:.2f} h'
  met = orca['rtf'] >= TARGET_RTF
  print(f'target >= {TARGET_RTF:.0f}x realtime for one hour of mp3: '
        f'{"met" if met else "NOT met"} ({orca["rtf"]:.0f}x{note})')
  if single:
    met = single['peak_rss_mb'] < TARGET_RSS_MB
    print(f'target peak RSS < {TARGET_RSS_MB / 1000:.1f} GB for the 60-min file: '
          f'{"met" if met else "NOT met"} ({_fmt_mb(single["peak_rss_mb"])}; that run: '
          f'{single["rtf"]:.0f}x realtime in {single["wall_s"]:.1f} s, one file keeps '
          'one worker busy)')

  if inproc:
    a = inproc['audio_s']

    def x(name):
      wall, cpu = inproc[name + '_s'], inproc[name + '_cpu_s']
      return f'{wall:6.2f} s  CPU {cpu:6.2f} s  {a / max(wall, 1e-9):6.0f}x'

    print()
    print(f'd. in-process, one thread, the {a / 60:.0f}-min file at '
          f'{inproc["sample_rate_hz"]} Hz (frame = FFT length {inproc["frame_length"]}, '
          f'{inproc["num_bins"]} of {inproc["fft_length"] // 2 + 1} bins kept, '
          f'{inproc["chunks"]} chunks); least wall and CPU of {inproc["repeats"]} runs, x = '
          'realtime factor of that part alone (wall):')
    print(f'   import tensorflow                {inproc["import_tf_s"]:6.2f} s')
    print(f'   import tensorflow-io, orca_gan   {inproc["import_tfio_orca_s"]:6.2f} s')
    print(f'   mp3 frame-chain check (Python)   {x("mp3_check")}')
    print(f'   open_audio (check + reader init) {x("open_audio")}')
    print(f'   decode only: raw readable reads  {x("decode_raw")}')
    print(f'   decode only: tf.data pipeline    {x("decode_pipeline")}')
    print(f'   spectrogram only (tf.function)   {x("spectrogram")}   (first call, '
          f'tracing: {inproc["spectrogram_trace_s"]:.2f} s)')
    print(f'     of which frame gather + rfft   {x("spectrogram_gather_rfft")}')
    print(f'   convert_file (decode + spectro)  {x("convert_file")}')
    print(f'   shard writing (serialize + GZIP) {x("write_gzip")}')
    print(f'   tfio decode_mp3, whole file      {x("decode_mp3_whole")}')
    print(f'   whole child process              {inproc["process_wall_s"]:6.2f} s, peak '
          f'RSS {_fmt_mb(inproc["process_peak_rss_mb"])}')

    # CPU seconds, not wall: with every core busy, CPU time is what the cores must supply,
    # and it hardly depends on what else runs on the machine.
    decode, spectro = inproc['decode_pipeline_cpu_s'], inproc['spectrogram_cpu_s']
    write, check = inproc['write_gzip_cpu_s'], inproc['open_audio_cpu_s']
    per_file = decode + spectro + write + check
    startup = orca['startup']
    files = orca['files']
    # One worker converts one file at a time, so at most min(workers, files) cores work.
    cores = min(args.num_workers, files,
                int(info['nproc']) if info['nproc'].isdigit() else 1)
    scale = orca['audio_s'] / (files * a)  # Row a's files vs the in-process file.
    work_cpu = scale * files * per_file
    model = startup['wall_s'] + work_cpu / cores
    print()
    print('what bounds the speed (row a), in CPU seconds:')
    print(f'   per {a / 60:.0f} min of audio: decode {decode:.2f} s ({decode / per_file:.0%}), '
          f'spectrogram {spectro:.2f} s ({spectro / per_file:.0%}), shard writing '
          f'{write:.2f} s ({write / per_file:.0%}), open + mp3 check {check:.2f} s '
          f'-> {per_file:.2f} CPU s = {a / per_file:.0f}x realtime per core')
    print(f'   fixed cost (row a0): {startup["wall_s"]:.2f} s wall, {startup["cpu_s"]:.1f} '
          f'CPU s, mostly on one core ({inproc["import_tf_s"]:.1f} s of it is importing '
          f'TensorFlow); that is {startup["wall_s"] / orca["wall_s"]:.0%} of row a and '
          f'{startup["wall_s"] / (orca["audio_s"] / TARGET_RTF):.0%} of the '
          f'{orca["audio_s"] / TARGET_RTF:.1f} s a {TARGET_RTF:.0f}x run may take')
    print(f'   row a used {orca["cpu_s"]:.1f} CPU s; the parts add up to '
          f'{startup["cpu_s"] + work_cpu:.1f} (start-up {startup["cpu_s"]:.1f} + {files} '
          f'files x {scale * per_file:.2f})')
    print(f'   idle-machine model: {startup["wall_s"]:.2f} s + {work_cpu:.1f} CPU s / '
          f'{cores} cores = {model:.1f} s -> {orca["audio_s"] / model:.0f}x (measured '
          f'{orca["wall_s"]:.1f} s, {orca["rtf"]:.0f}x, with others using '
          f'{100 * (orca["others_cpu_s"] + orca["steal_s"]) / orca["wall_s"]:.0f}% of a '
          'core)')
    no_spectro = startup['wall_s'] + scale * files * (decode + write + check) / cores
    decode_only = scale * files * inproc['decode_raw_cpu_s'] / cores
    budget = (orca['audio_s'] / TARGET_RTF - startup['wall_s']) * cores / (scale * files)
    print(f'   ceilings on {cores} idle cores: spectrogram free -> '
          f'{orca["audio_s"] / no_spectro:.0f}x; raw decoding alone, no start-up -> '
          f'{orca["audio_s"] / decode_only:.0f}x')
    if budget > 0:
      print(f'   for {TARGET_RTF:.0f}x, after start-up each {a / 60:.0f}-min file may cost '
            f'{budget:.2f} CPU s; raw decoding alone costs '
            f'{inproc["decode_raw_cpu_s"]:.2f}')
    else:
      print(f'   for {TARGET_RTF:.0f}x, start-up alone exceeds the time budget of this '
            'much audio')

  print()
  print(f'load average before {results["load_before"]}, during '
        f'{", ".join(results["loads"])}, after {results.get("load_after", "?")} '
        f'(nproc {info["nproc"]}; a load above ~0.5 means other work shared the cores '
        'and every row is slower than on an idle machine)')


if __name__ == '__main__':
  main()
