"""Per-file work on threads, in order, with progress lines (make_tfrecords and embed)."""

import concurrent.futures
import datetime
import os
import sys
import time


def log_to_stderr(message: str) -> None:
  """The default `log` of the library entry points: one line on stderr."""
  print(message, file=sys.stderr, flush=True)


def ordered_map(fn, items, num_workers: int, ahead: int, errors=()):
  """Yields `(item, fn(item))` in the order of `items`, `num_workers` at once.

  Up to `ahead` items after the one being yielded are already submitted, so a slow item
  at the head does not leave the other workers idle. An exception of a type in `errors`
  raised by `fn` is yielded in place of the result; any other propagates. Items not yet
  started are cancelled when the caller stops early.
  """
  items = list(items)
  with concurrent.futures.ThreadPoolExecutor(num_workers) as pool:
    futures: dict = {}
    try:
      for i, item in enumerate(items):
        for j in range(i, min(i + ahead + 1, len(items))):
          if j not in futures:
            futures[j] = pool.submit(fn, items[j])
        try:
          result = futures.pop(i).result()
        except errors as e:
          result = e
        yield item, result
    finally:
      for future in futures.values():
        future.cancel()


def file_size(path: str) -> int:
  """Size in bytes, 0 for a file that cannot be read (it is reported elsewhere)."""
  try:
    return os.path.getsize(path)
  except OSError:
    return 0


class Progress:
  """Files done/total, audio hours, realtime factor and ETA (weighted by file size), at
  most every `every_s` seconds."""

  def __init__(self, total_files: int, total_bytes: int, log, every_s: float):
    self._total_files, self._total_bytes = total_files, max(total_bytes, 1)
    self._log, self._every_s = log, every_s
    self._start = time.monotonic()
    self._last = -float('inf')
    self.files = self.bytes = 0
    self.audio_s = 0.0

  def update(self, path: str, audio_s: float) -> None:
    self.files += 1
    self.bytes += file_size(path)
    self.audio_s += audio_s
    if time.monotonic() - self._last >= self._every_s:
      self.report()

  def report(self) -> None:
    now = time.monotonic()
    self._last = now
    elapsed = now - self._start
    fraction = self.bytes / self._total_bytes
    eta_text = (str(datetime.timedelta(seconds=round(elapsed * (1 - fraction) / fraction)))
                if fraction > 0 else '?')
    self._log(f'[{self.files}/{self._total_files} files] {self.audio_s / 3600:.3f} h '
              f'audio, {self.audio_s / max(elapsed, 1e-9):.0f}x realtime, ETA {eta_text}')
