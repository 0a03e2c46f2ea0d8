"""Writing outputs safely: one writer per folder.

`lock_folder` takes an exclusive OS lock (`flock`) on a file in an output folder for as
long as a command writes there. The kernel drops the lock with the process, however it
ends (even `kill -9`), so a lock is never stale; a second command writing to the same
folder is refused at once, with the holder's pid. The lock file (`.orca_gan.lock`) is
removed when the command ends; one left by a killed command holds no lock.
"""

import contextlib
import fcntl
import os

LOCK_FILE = '.orca_gan.lock'


class OutputError(OSError):
  """An output folder or file cannot be written now; the message says which and why."""


class FolderInUseError(OutputError):
  """Another process holds the folder's lock."""


class WriteError(OutputError):
  """An output could not be written (e.g. the disk is full)."""


def os_reason(error: Exception) -> str:
  """The one-line reason of an OSError or a TensorFlow op error."""
  reason = getattr(error, 'strerror', None) or getattr(error, 'message', None) or str(error)
  return ' '.join(str(reason).split('[Op:')[0].split())


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
    FolderInUseError: Another process holds the lock.
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
      raise FolderInUseError(
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
