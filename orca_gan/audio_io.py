"""Finding, checking, decoding and writing audio files (tensorflow-io for decoding).

Decoding goes through tensorflow-io's "readable" audio resource, which detects wav, flac,
ogg (vorbis) and mp3 by content, reports the sample rate, and reads any sample range, so
an hour-long tape is decoded in bounded memory, chunk by chunk, inside a tf.data pipeline.

tensorflow-io decodes a truncated or internally corrupt mp3 without complaint (it simply
returns fewer samples) and stops at an ID3 tag in the middle of a stream. `open_audio`
therefore checks an mp3's frame chain itself before decoding, so such files are reported
instead of silently shortened. A wav whose header claims more samples than the file holds
(a recorder that died mid-write) makes tensorflow-io fail when it reaches the end of the
data; `open_audio` reads the header itself and keeps the samples that are there.

File names are whatever the file system holds: a name that is not valid UTF-8 reaches
Python as a str with surrogate escapes (PEP 383), goes to TensorFlow as the original
bytes (`os.fsencode`), and is shown with the bad bytes escaped (`display_path`).
"""

import dataclasses
import glob
import os
import stat
import struct
import threading
import wave

import numpy as np
import tensorflow as tf
from tensorflow_io.python.ops import core_ops

from orca_gan import configs
from orca_gan import fileio

AUDIO_EXTENSIONS = ('.wav', '.flac', '.ogg', '.mp3')


class AudioError(Exception):
  """A file cannot be used; the message is the reason, fit for a report line."""


InputError = configs.UsageError  # An --input names nothing usable.


@dataclasses.dataclass(frozen=True)
class AudioInfo:
  """What an audio file holds; `note` says what was done about a defect ('' if none)."""
  path: str
  sample_rate_hz: int
  num_samples: int
  channels: int
  dtype: tf.DType
  format: str
  note: str = ''

  @property
  def duration_s(self) -> float:
    return self.num_samples / self.sample_rate_hz


def display_path(path: str) -> str:
  """The path as printable text: bytes that are not UTF-8 shown as \\xNN escapes."""
  return os.fsencode(path).decode('utf-8', 'backslashreplace')


def expand_inputs(inputs) -> list:
  """Resolves --input values (files, folders searched recursively, globs) to files.

  Folders contribute only files with an audio extension; a file named explicitly or
  matched by a glob is kept whatever its extension (it is then reported, not dropped).

  Args:
    inputs: Iterable of paths, folders or glob patterns.

  Returns:
    Absolute paths, in the order given (folders and globs sorted), without repeats.

  Raises:
    InputError: An input does not exist or a glob matches nothing.
  """
  found: list[str] = []
  for pattern in inputs:
    if os.path.isdir(pattern):
      matches: list[str] = []
      for root, dirs, files in os.walk(pattern):
        dirs.sort()
        matches.extend(os.path.join(root, f) for f in sorted(files)
                       if f.lower().endswith(AUDIO_EXTENSIONS))
    elif os.path.lexists(pattern):
      matches = [pattern]
    elif glob.has_magic(pattern):
      matches = sorted(glob.glob(pattern, recursive=True))
      matches = [m for m in matches if not os.path.isdir(m)]
      if not matches:
        raise InputError(f'--input {pattern}: the pattern matches no file')
    else:
      raise InputError(f'--input {pattern}: no such file or directory')
    found.extend(os.path.abspath(m) for m in matches)
  return list(dict.fromkeys(found))


# MPEG audio frame header tables, indexed by [version][layer].
_MP3_BITRATES_KBPS = {
    (1, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (1, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (1, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (2, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (2, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (2, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_RATES_HZ = {1: (44100, 48000, 32000), 2: (22050, 24000, 16000),
                 25: (11025, 12000, 8000)}


def _mp3_frame_length(header: bytes):
  """Length in bytes of the MPEG frame whose 4-byte header is given, or None."""
  b1, b2 = header[1], header[2]
  if header[0] != 0xFF or (b1 & 0xE0) != 0xE0:
    return None
  version = {3: 1, 2: 2, 0: 25}.get((b1 >> 3) & 3)
  layer = {3: 1, 2: 2, 1: 3}.get((b1 >> 1) & 3)
  bitrate_index, rate_index, padding = b2 >> 4, (b2 >> 2) & 3, (b2 >> 1) & 1
  if version is None or layer is None or bitrate_index == 15 or rate_index == 3:
    return None
  if bitrate_index == 0:
    return 0  # Free format: length not in the header.
  bitrate = _MP3_BITRATES_KBPS[(min(version, 2), layer)][bitrate_index] * 1000
  rate = _MP3_RATES_HZ[version][rate_index]
  if layer == 1:
    return (12 * bitrate // rate + padding) * 4
  per_frame = 144 if (layer == 2 or version == 1) else 72
  return per_frame * bitrate // rate + padding


def check_mp3_stream(path: str) -> None:
  """Walks an mp3's frame chain; raises AudioError if it is truncated or broken.

  Leading ID3v2 and trailing ID3v1/APE tags and trailing zero padding are allowed. A
  free-format stream (no frame lengths in its headers) is not checked.
  """
  with open(path, 'rb') as f:
    data = f.read()
  size = len(data)
  pos = 0
  if data[:3] == b'ID3' and size >= 10:
    tag = data[6:10]
    pos = 10 + (tag[0] << 21 | tag[1] << 14 | tag[2] << 7 | tag[3])
    pos += 10 if data[5] & 0x10 else 0
  end = size
  if end - pos >= 128 and data[end - 128:end - 125] == b'TAG':
    end -= 128
  if end - pos >= 32 and data[end - 32:end - 24] == b'APETAGEX':
    end -= 32 + int.from_bytes(data[end - 20:end - 16], 'little')
  frames = 0
  while pos < end:
    length = _mp3_frame_length(data[pos:pos + 4]) if end - pos >= 4 else None
    if length == 0:
      return
    if length is None:
      if not data[pos:end].strip(b'\0'):
        break
      if data[pos:pos + 3] == b'ID3':
        raise AudioError(
            f'ID3 tag inside the stream at byte {pos} of {size} (concatenated tagged '
            'files?): tensorflow-io stops decoding there')
      if frames == 0:
        raise AudioError('not an mp3 stream: no MPEG audio frame at its start')
      raise AudioError(f'corrupt mp3: frame sync lost at byte {pos} of {size} '
                       f'after {frames} frames')
    if pos + length > end:
      raise AudioError(f'truncated mp3: last frame at byte {pos} needs {length} bytes, '
                       f'{end - pos} remain')
    pos += length
    frames += 1


def wav_data_frames(path: str):
  """(frames the header claims, frames the file holds) of a RIFF/WAVE file.

  Returns None when the file is not a plain RIFF/WAVE file with a fmt and a data chunk
  (tensorflow-io then reports what is wrong) or when it is RF64 or streamed (size
  0xFFFFFFFF: the header makes no claim).
  """
  with open(path, 'rb') as f:
    if f.read(4) != b'RIFF' or len(f.read(4)) != 4 or f.read(4) != b'WAVE':
      return None
    block_align = None
    while True:
      header = f.read(8)
      if len(header) < 8:
        return None
      chunk, size = header[:4], struct.unpack('<I', header[4:])[0]
      if chunk == b'fmt ' and size >= 16:
        fmt = f.read(size + size % 2)
        block_align = struct.unpack('<H', fmt[12:14])[0]
      elif chunk == b'data':
        if not block_align or size == 0xFFFFFFFF:
          return None
        held = os.fstat(f.fileno()).st_size - f.tell()
        return size // block_align, min(size, max(held, 0)) // block_align
      else:
        f.seek(size + size % 2, os.SEEK_CUR)


def open_audio(path: str):
  """Opens an audio file for chunked decoding.

  The reader stays valid until the same thread opens the next file: finish reading a
  file (`segment_dataset`) before opening another one on that thread.

  Returns:
    (resource, AudioInfo): the tensorflow-io readable resource and what it holds.

  Raises:
    AudioError: The file cannot be used; the message says why.
  """
  ext = os.path.splitext(path)[1].lower()
  if ext not in AUDIO_EXTENSIONS:
    raise AudioError(f"unknown extension '{ext}' (expected one of "
                     f"{', '.join(AUDIO_EXTENSIONS)})")
  try:
    mode = os.stat(path).st_mode
  except OSError as e:
    raise AudioError(f'cannot read: {e.strerror}') from e
  if not stat.S_ISREG(mode):
    kind = ('a folder' if stat.S_ISDIR(mode) else 'a named pipe' if stat.S_ISFIFO(mode)
            else 'a socket' if stat.S_ISSOCK(mode) else 'a device')
    # Opening a pipe would wait for a writer forever.
    raise AudioError(f'not a regular file ({kind})')
  frames = None
  try:
    with open(path, 'rb') as f:
      empty = not f.read(1)
    if ext == '.mp3' and not empty:
      check_mp3_stream(path)
    if ext == '.wav' and not empty:
      frames = wav_data_frames(path)
  except OSError as e:
    raise AudioError(f'cannot read: {e.strerror}') from e
  if empty:
    raise AudioError('empty file (0 bytes)')
  try:
    # The init op's kernel owns one reader and re-opens it on every call; TensorFlow
    # caches eager kernels by their attributes, so two threads calling it with the same
    # attributes would share (and clobber) one reader. A name per thread gives each
    # thread its own, reused file after file, so nothing accumulates.
    resource = core_ops.io_audio_readable_init(
        os.fsencode(path), shared_name=f'orca_gan_audio_reader_{threading.get_ident()}')
    shape, dtype, rate = core_ops.io_audio_readable_spec(resource)
  except tf.errors.OpError as e:
    raise AudioError(f'not a decodable {ext[1:]} file (tensorflow-io: '
                     f'{fileio.os_reason(e)})') from e
  num_samples, channels = (int(v) for v in shape.numpy())
  note = ''
  if frames and frames[1] < min(frames[0], num_samples):
    note = (f'truncated: the header claims {frames[0]} samples, the file holds '
            f'{frames[1]}; kept those')
    num_samples = frames[1]
  info = AudioInfo(path=path, sample_rate_hz=int(rate.numpy()), num_samples=num_samples,
                   channels=channels, dtype=tf.as_dtype(dtype.numpy()), format=ext[1:],
                   note=note)
  if info.sample_rate_hz <= 0 or num_samples <= 0 or channels <= 0:
    raise AudioError(f'no audio in the stream ({num_samples} samples, {channels} '
                     f'channels at {info.sample_rate_hz} Hz)')
  return resource, info


def op_error_reason(error: tf.errors.OpError) -> str:
  return f'decoding failed (tensorflow-io: {fileio.os_reason(error)})'


def _to_float(samples: tf.Tensor) -> tf.Tensor:
  """Integer or float PCM -> float32 in [-1, 1]."""
  if samples.dtype == tf.int16:
    return tf.cast(samples, tf.float32) / 32768.0
  if samples.dtype == tf.int32:
    return tf.cast(samples, tf.float32) / 2147483648.0
  if samples.dtype == tf.uint8:
    return (tf.cast(samples, tf.float32) - 128.0) / 128.0
  return tf.cast(samples, tf.float32)


def channel_selector(channel: str, info: AudioInfo):
  """Returns a function [samples, channels] -> [samples] for --channel=mix|0|1|...

  Raises:
    AudioError: The file has no such channel.
  """
  if channel == 'mix':
    return lambda x: tf.reduce_mean(x, axis=1)
  index = int(channel)
  if index >= info.channels:
    raise AudioError(f'has {info.channels} channel(s); --channel={channel} needs '
                     f'{index + 1}')
  return lambda x: x[:, index]


def segment_dataset(resource, info: AudioInfo, bounds, channel: str) -> tf.data.Dataset:
  """A tf.data pipeline decoding mono float32 segments of one file.

  Args:
    resource: From `open_audio`.
    info: From `open_audio`.
    bounds: int64 array [num_segments, 2] of sample ranges `[start, stop)`; parts outside
      the recording come back as zeros.
    channel: 'mix' (mean of channels) or a channel index as a string.

  Returns:
    Dataset of float32 [stop - start] segments, in order (NaN and Inf samples of a float
    file included).
  """
  select = channel_selector(channel, info)
  num_samples = info.num_samples

  def read(bound):
    start, stop = bound[0], bound[1]
    lo = tf.clip_by_value(start, 0, num_samples)
    hi = tf.clip_by_value(stop, 0, num_samples)
    samples = core_ops.io_audio_readable_read(resource, lo, hi, dtype=info.dtype)
    mono = select(_to_float(samples))
    return tf.pad(mono, [[lo - start, stop - hi]])

  bounds = np.asarray(bounds, np.int64).reshape(-1, 2)
  # A sequential map: the decoder behind the resource is sequential. tf.data's
  # automatic prefetch reads one segment ahead, which overlaps decoding with the
  # caller's spectrogram; the iterator (and any read in flight) is gone once the caller
  # returns, before its thread opens the next file. Parallelism across files comes
  # from one file per thread.
  return tf.data.Dataset.from_tensor_slices(bounds).map(read)


# ------------------------------------------------------------------------- writing

def write_audio(path: str, audio: np.ndarray, sample_rate_hz: int) -> None:
  """Writes mono float audio in [-1, 1] as 16-bit PCM .wav or .flac.

  The format is chosen by the extension (case-insensitive). Values beyond [-1, 1] are
  clipped. The file is written under a temporary name in the same folder and then
  renamed, so readers never see a partial file.

  Args:
    path: Destination, ending in '.wav' or '.flac'.
    audio: Samples, shape [samples].
    sample_rate_hz: Sample rate stored in the file.

  Raises:
    ValueError: For an unknown extension (the message names `path`), audio that is not
      one-dimensional or not finite, a non-positive sample rate, or empty FLAC audio.
  """
  extension = os.path.splitext(path)[1].lower()
  if extension not in ('.wav', '.flac'):
    raise ValueError(f'cannot write audio to {path!r}: unknown extension '
                     f'{extension!r} (use .wav or .flac)')
  audio = np.asarray(audio, dtype=np.float64)
  if audio.ndim != 1:
    raise ValueError(f'audio for {path!r} must be mono, shape [samples], got '
                     f'{audio.shape}')
  if not np.all(np.isfinite(audio)):
    raise ValueError(f'audio for {path!r} contains NaN or infinity')
  if int(sample_rate_hz) != sample_rate_hz or sample_rate_hz <= 0:
    raise ValueError(f'sample_rate_hz must be a positive integer, got {sample_rate_hz}')
  pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype('<i2')
  with fileio.atomic_path(path) as temporary:
    if extension == '.wav':
      with wave.open(temporary, 'wb') as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(int(sample_rate_hz))
        f.writeframes(pcm.tobytes())
    else:
      if pcm.size == 0:
        raise ValueError(f'cannot write empty audio to {path!r} as FLAC')
      import tensorflow_io as tfio
      encoded = tfio.audio.encode_flac(tf.constant(pcm[:, None]),
                                       rate=int(sample_rate_hz))
      with open(temporary, 'wb') as f:
        f.write(encoded.numpy())
