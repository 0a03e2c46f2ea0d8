"""Helpers for the tests: tiny audio writers and running the apps."""

import functools
import glob
import os
import pickle
import resource
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import wave

import numpy as np
import tensorflow as tf

from orca_gan import models
from orca_gan import spectral

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), 'shared', 'data')
# A model small enough to build, export and run in a second, and its transform.
TINY_MODEL = models.ModelConfig(image_size=32, z_dim=8, fast_z=8, g_lstm_units=16,
                                d_lstm_units=16, gf_dim=16, df_dim=8)
TINY_TRANSFORM = spectral.SpectrogramConfig(image_size=32)


def write_wav(path, audio, sample_rate_hz):
  """Writes float audio in [-1, 1], shape [samples] or [samples, channels], as 16-bit."""
  audio = np.asarray(audio, np.float64)
  if audio.ndim == 1:
    audio = audio[:, None]
  pcm = np.clip(np.round(audio * 32767), -32768, 32767).astype('<i2')
  with wave.open(str(path), 'wb') as f:
    f.setnchannels(audio.shape[1])
    f.setsampwidth(2)
    f.setframerate(sample_rate_hz)
    f.writeframes(pcm.tobytes())
  return str(path)


def tone(freq_hz, duration_s, sample_rate_hz, amplitude=0.5):
  t = np.arange(int(round(duration_s * sample_rate_hz))) / sample_rate_hz
  return amplitude * np.sin(2 * np.pi * freq_hz * t)


def run_app(name, *args, cwd=REPO, timeout=300, preexec_fn=None):
  """Runs bin/<name> in a new process; returns the CompletedProcess.

  The process is forked from a server that has imported the app once
  (tests/app_server.py), which saves TensorFlow's 2.5 s start-up per run; it gets this
  process's environment, `cwd`, and `preexec_fn` (picklable) before the app starts.
  """
  server = _app_server(name)
  with tempfile.TemporaryDirectory() as tmp:
    outputs = {k: os.path.join(tmp, k) for k in ('stdout', 'stderr')}
    server.request({'argv': [os.path.join(REPO, 'bin', name), *args], 'cwd': str(cwd),
                    'env': dict(os.environ), 'preexec_fn': preexec_fn, **outputs})
    pid = server.answer('started', 60)
    try:
      status = server.answer('exited', timeout)
    except subprocess.TimeoutExpired:
      os.kill(pid, signal.SIGKILL)
      server.answer('exited', 60)
      raise
    texts = {}
    for k, path in outputs.items():
      with open(path, errors='replace') as f:
        texts[k] = f.read()
  return subprocess.CompletedProcess(['bin/' + name, *args], status, **texts)


class _AppServer:
  """tests/app_server.py for one app, and the answers read from it so far."""

  def __init__(self, name):
    self.process = subprocess.Popen(
        [sys.executable, os.path.join(REPO, 'tests', 'app_server.py'), name],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO, bufsize=0)
    self._read = b''
    self.answer('ready', 120)

  def request(self, request: dict) -> None:
    payload = memoryview(pickle.dumps(request))
    while payload:
      payload = payload[self.process.stdin.write(payload):]

  def answer(self, kind: str, timeout: float) -> int:
    """The number of the server's next answer, which must be of `kind`."""
    deadline = time.monotonic() + timeout
    while b'\n' not in self._read:
      remaining = deadline - time.monotonic()
      if remaining <= 0 or not select.select([self.process.stdout], [], [], remaining)[0]:
        raise subprocess.TimeoutExpired(self.process.args, timeout)
      chunk = os.read(self.process.stdout.fileno(), 4096)
      if not chunk:
        raise RuntimeError(f'{self.process.args}: the app server ended')
      self._read += chunk
    line, self._read = self._read.split(b'\n', 1)
    got, number = line.decode().split()
    assert got == kind, (got, kind)
    return int(number)


_SERVERS: dict = {}


def _app_server(name):
  """The running app server of bin/<name>, started on first use."""
  server = _SERVERS.get(name)
  if server is None or server.process.poll() is not None:
    server = _SERVERS[name] = _AppServer(name)
  return server


def transform(audio, sample_rate_hz, config=None):
  """Runs the TF transform over all whole windows of `audio` (zeros outside)."""
  config = config or spectral.SpectrogramConfig()
  geometry = spectral.frame_geometry(config, sample_rate_hz)
  count = spectral.num_windows(len(audio), sample_rate_hz, config.window_s)
  start, stop = spectral.segment_bounds(0, count, geometry)
  segment = np.zeros(stop - start, np.float32)
  lo, hi = max(start, 0), min(stop, len(audio))
  segment[lo - start:hi - start] = audio[lo:hi]
  offsets = spectral.frame_offsets(0, count, config, geometry)
  return spectral.audio_to_images(tf.constant(segment), tf.constant(offsets), config,
                                  sample_rate_hz).numpy()


def write_float_wav(path, audio, sample_rate_hz):
  """Writes mono audio as a 32-bit float wav (format 3), NaN and Inf kept."""
  payload = np.asarray(audio, '<f4').tobytes()
  header = (b'RIFF' + struct.pack('<I', 36 + len(payload)) + b'WAVE' +
            b'fmt ' + struct.pack('<IHHIIHH', 16, 3, 1, sample_rate_hz,
                                  4 * sample_rate_hz, 4, 32) +
            b'data' + struct.pack('<I', len(payload)))
  with open(path, 'wb') as f:
    f.write(header + payload)
  return str(path)


def hostile_folder(folder, sample_rate_hz=16000, duration_s=40.0):
  """A folder of what archives hold besides good audio; returns {kind: path}.

  good: a 16-bit wav; lying_header: a 16-bit wav whose header claims twice the samples
  the file holds; float32: a float wav; nan: a float wav with NaN samples at 20 s and
  an Inf near the end;
  not_utf8: a good wav whose name is not valid UTF-8; fifo: a named pipe called *.wav.
  """
  os.makedirs(folder, exist_ok=True)
  audio = tone(1000, duration_s, sample_rate_hz, 0.3)
  paths = {
      'good': write_wav(os.path.join(folder, 'good.wav'), audio, sample_rate_hz),
      'lying_header': write_wav(os.path.join(folder, 'lying.wav'), audio,
                                sample_rate_hz),
      'float32': write_float_wav(os.path.join(folder, 'float.wav'), audio,
                                 sample_rate_hz),
  }
  os.truncate(paths['lying_header'], 44 + len(audio))  # Half of the 2-byte samples.
  bad = audio.copy()  # 100 NaN samples at 20 s, one Inf near the end.
  bad[20 * sample_rate_hz:20 * sample_rate_hz + 100], bad[-5] = np.nan, np.inf
  paths['nan'] = write_float_wav(os.path.join(folder, 'nan.wav'), bad, sample_rate_hz)
  paths['not_utf8'] = write_wav(os.fsdecode(os.path.join(os.fsencode(folder),
                                                         b'caf\xe9.wav')),
                                audio, sample_rate_hz)
  paths['fifo'] = os.path.join(folder, 'pipe.wav')
  os.mkfifo(paths['fifo'])
  return paths


def make_bad_files(folder, shared_bench_mp3=None):
  """Writes one file per kind of bad input; returns {name: expected reason regex}."""
  folder = str(folder)
  expected = {}

  def put(name, data, reason):
    with open(os.path.join(folder, name), 'wb') as f:
      f.write(data)
    expected[name] = reason

  put('empty.mp3', b'', r'empty file \(0 bytes\)')
  put('text.mp3', b'these are field notes, not audio\n' * 20, 'not an mp3 stream')
  put('text.wav', b'these are field notes, not audio\n' * 20, 'not a decodable wav')
  put('image.flac', b'\x89PNG\r\n\x1a\n' + bytes(range(256)) * 20, 'not a decodable flac')
  put('notes.txt', b'hello', "unknown extension '.txt'")
  write_wav(os.path.join(folder, 'short.wav'), tone(440, 1.0, 16000), 16000)
  expected['short.wav'] = r'shorter than one window \(1.00 s < 3 s'
  if shared_bench_mp3:
    with open(shared_bench_mp3, 'rb') as f:
      head = f.read(200_000)
    put('truncated.mp3', head[:150_001], 'truncated mp3')
    corrupt = bytearray(head)
    corrupt[50_000:60_000] = np.random.default_rng(0).integers(0, 256, 10_000,
                                                               dtype=np.uint8).tobytes()
    put('corrupt.mp3', bytes(corrupt), 'corrupt mp3: frame sync lost')
  return expected


def scene(duration_s, sample_rate_hz, seed):
  """Tones that change every second plus noise: every window differs."""
  rng = np.random.default_rng(seed)
  parts = [tone(rng.uniform(300, 7500), 1.0, sample_rate_hz, rng.uniform(0.05, 0.5))
           for _ in range(int(duration_s))]
  audio = np.concatenate(parts)
  return (audio + rng.normal(0, 0.01, audio.shape)).astype(np.float32)


def damaged_records(record_dir, dest, how):
  """A copy of a make_tfrecords folder whose first shard is damaged; returns the shard.

  how: 'flip' (bytes in the middle inverted) or 'truncate' (cut to half its size).
  """
  shutil.copytree(record_dir, dest)
  shard = sorted(glob.glob(os.path.join(dest, 'shard-*')))[0]
  with open(shard, 'r+b') as f:
    payload = bytearray(f.read())
    if how == 'flip':
      middle = len(payload) // 2
      payload[middle:middle + 64] = bytes(255 - b for b in payload[middle:middle + 64])
    else:
      payload = payload[:len(payload) // 2]
    f.seek(0)
    f.truncate()
    f.write(payload)
  return shard


def _limit_file_size(size):
  signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
  resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def limit_file_size(size):
  """A `preexec_fn` capping the size of every file the child writes: a write past it
  fails with EFBIG, as one on a full disk fails with ENOSPC."""
  return functools.partial(_limit_file_size, size)
