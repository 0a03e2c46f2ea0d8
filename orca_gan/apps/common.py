"""What every orca_gan command-line app shares: quiet TensorFlow, clean exits."""

import os
import signal
import sys

# TensorFlow's C++ start-up chatter (CUDA probes, CPU feature notes) hides the lines a
# user needs; errors still show. Must be set before TensorFlow is imported.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


def fail(message: str, status: int = 2):
  """Prints a one-line error and exits."""
  print(f'error: {message}', file=sys.stderr, flush=True)
  sys.exit(status)


def raise_on_sigterm() -> None:
  """Turns SIGTERM into KeyboardInterrupt, so the same clean-up runs as for Ctrl-C."""

  def handler(signum, frame):
    del signum, frame
    raise KeyboardInterrupt

  signal.signal(signal.SIGTERM, handler)
