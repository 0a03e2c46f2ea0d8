"""Writing outputs safely: whole files or nothing, and one writer per folder.

Every output is written under a temporary name in its own folder and renamed into place
when complete (`atomic_path`, `write_bytes_atomic`, `write_json_atomic`; `Staging` for
a set of files that appear together; `replace_folder` for a folder), so a reader never
sees a half-written file, whatever interrupts the writer.

`lock_folder` takes an exclusive OS lock (`flock`) on a file in an output folder for as
long as a command writes there. The kernel drops the lock with the process, however it
ends (even `kill -9`), so a lock is never stale; a second command writing to the same
folder is refused at once, with the holder's pid. The lock file (`.orca_gan.lock`) is
removed when the command ends; one left by a killed command holds no lock.
"""

import contextlib
import fcntl
import json
import os
import re
import shutil
import uuid

LOCK_FILE = '.orca_gan.lock'


class OutputError(OSError):
  """An output folder or file cannot be written now (another process holds the folder's
  lock, the disk is full, ...); the message says which and why."""


def os_reason(error: Exception) -> str:
  """The useful part of an error's message, on one line: an OSError's reason, or a
  TensorFlow op error's without its node, function and op decorations."""
  message = str(getattr(error, 'strerror', None) or getattr(error, 'message', None) or
                error).split('[Op:')[0]
  message = re.sub(r'\[\[\{\{node .*?\}\}\]\]', '', message)
  message = re.sub(r'\{\{function_node .*?\}\}', '', message)
  message = re.sub(r'^.*transformation with iterator: [\w:]+: ', '', message, flags=re.S)
  message = re.sub(r'^Function invocation produced \w+: ', '', message.strip())
  return ' '.join(message.split())


@contextlib.contextmanager
def lock_folder(folder: str, flag: str, command: str):
  """Holds the exclusive write lock of `folder` (created if missing) for the block.

  The lock file is removed at the end, and so is a folder this call created if it then
  holds nothing.

  Args:
    folder: The output folder.
    flag: How the user named it, for the message, e.g. '--output_dir'.
    command: What takes the lock, e.g. 'make_tfrecords'.

  Raises:
    OutputError: Another process holds the lock.
    OSError: The folder cannot be created or the lock file opened.
  """
  created = not os.path.isdir(folder)
  os.makedirs(folder, exist_ok=True)
  path = os.path.join(folder, LOCK_FILE)
  while True:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 200, 0).decode('ascii', 'replace').strip() or '?'
      os.close(fd)
      raise OutputError(
          f'{flag} {folder} is in use by another process ({holder}); wait for it to '
          'finish or choose another folder') from None
    # The holder before us may have removed the file between our open and our lock:
    # then the lock is on a file nobody else will find; take the one at `path`.
    if _same_file(fd, path):
      break
    os.close(fd)
  try:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f'{command}, pid {os.getpid()}\n'.encode('ascii'), 0)
    yield
  finally:
    with contextlib.suppress(FileNotFoundError):
      os.remove(path)
    os.close(fd)  # Releases the lock.
    if created and os.path.isdir(folder) and not os.listdir(folder):
      os.rmdir(folder)


def _same_file(fd: int, path: str) -> bool:
  try:
    found = os.stat(path)
  except FileNotFoundError:
    return False
  held = os.fstat(fd)
  return (held.st_dev, held.st_ino) == (found.st_dev, found.st_ino)


def remove_if_empty(folder: str) -> None:
  """Removes `folder` if it holds nothing but its lock file (call with the lock held:
  the lock then ends with the folder)."""
  if os.path.isdir(folder) and set(os.listdir(folder)) <= {LOCK_FILE}:
    with contextlib.suppress(FileNotFoundError):
      os.remove(os.path.join(folder, LOCK_FILE))
    os.rmdir(folder)


def temporary_name(path: str) -> str:
  """A new hidden name in `path`'s folder, for writing what becomes `path`."""
  folder, name = os.path.split(os.path.abspath(path))
  return os.path.join(folder, f'.{name}.{uuid.uuid4().hex[:12]}.tmp')


@contextlib.contextmanager
def atomic_path(path: str):
  """Yields a temporary name next to `path`, renamed to `path` if the block succeeds
  (and removed if it fails)."""
  temporary = temporary_name(path)
  try:
    yield temporary
    os.replace(temporary, path)
  finally:
    with contextlib.suppress(FileNotFoundError):
      os.remove(temporary)


def write_bytes_atomic(path: str, payload: bytes) -> None:
  """Writes `payload` to `path` through a temporary file in the same folder."""
  with atomic_path(path) as temporary:
    # Not mkstemp: its 0600 mode would survive the rename and hide the file from others.
    with open(temporary, 'xb') as f:
      f.write(payload)


def write_json_atomic(path: str, payload: dict) -> None:
  write_bytes_atomic(path, (json.dumps(payload, indent=1) + '\n').encode('utf-8'))


class Staging:
  """Temporary files in an output folder, renamed into place together by `commit`."""

  def __init__(self, folder: str):
    self._dir = folder
    self._paths: dict[str, str | None] = {}

  def path(self, name: str, scratch: bool = False) -> str:
    """A new empty temporary file that becomes `name` on `commit` (or, if `scratch`,
    is deleted then)."""
    tmp = temporary_name(os.path.join(self._dir, name))
    # Not mkstemp: its files are private (0600), whatever the umask, and TensorBoard
    # may run as another user.
    open(tmp, 'x').close()
    self._paths[tmp] = None if scratch else name
    return tmp

  def commit(self, stale=()) -> None:
    """Renames every staged file into place, then removes the files named in `stale`
    that this commit did not write (outputs of an earlier run that would describe
    something else)."""
    for tmp, name in self._paths.items():
      if name is None:
        os.remove(tmp)
      else:
        os.replace(tmp, os.path.join(self._dir, name))
    for name in set(stale) - set(self._paths.values()):
      if os.path.isfile(os.path.join(self._dir, name)):
        os.remove(os.path.join(self._dir, name))
    self._paths = {}

  def discard(self) -> None:
    for tmp in self._paths:
      if os.path.exists(tmp):
        os.remove(tmp)
    self._paths = {}


def replace_folder(new: str, final: str) -> None:
  """Renames folder `new` to `final`, replacing (and then deleting) any old `final`."""
  parent, name = os.path.split(final)
  old = None
  if os.path.exists(final):
    old = os.path.join(parent, f'.{name}.{uuid.uuid4().hex}.old')
    os.rename(final, old)
  try:
    os.rename(new, final)
  except BaseException:
    if old is not None:
      os.rename(old, final)
    raise
  if old is not None:
    shutil.rmtree(old)
