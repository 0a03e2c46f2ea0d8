"""What every orca_gan command-line app shares: quiet TensorFlow, clean exits."""

import dataclasses
import os
import signal
import sys

from absl import flags

# TensorFlow's C++ start-up chatter (CUDA probes, CPU feature notes, and on CPU-only
# machines even "Unable to register cuDNN factory" at error level) buries the one-line
# reports a user needs. Op failures still reach Python as exceptions and are reported.
# Must be set before TensorFlow is imported; export TF_CPP_MIN_LOG_LEVEL=0 to see all.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')


def quiet_logs() -> None:
  """INFO lines from TensorFlow's Python side (checkpoint and SavedModel writing) off;
  `--verbosity 0` brings them back."""
  from absl import logging
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)


def start(argv, hint: str = '') -> None:
  """What every app's main does first: quiet logs, no positional arguments, and
  SIGTERM handled like Ctrl-C."""
  quiet_logs()
  if len(argv) > 1:
    fail(f'unexpected arguments {argv[1:]}{hint}')
  raise_on_sigterm()


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


def define_flags(config_class, help_texts: dict) -> None:
  """Defines one absl flag per field of a config dataclass (names map 1:1)."""
  definers: dict = {int: flags.DEFINE_integer, float: flags.DEFINE_float,
                    bool: flags.DEFINE_boolean, str: flags.DEFINE_string}
  for field in dataclasses.fields(config_class):
    definers[field.type](field.name, field.default, help_texts[field.name])


def config_from_flags(config_class):
  """Builds a config dataclass from the flags of the same names."""
  return config_class(**{f.name: getattr(flags.FLAGS, f.name)
                         for f in dataclasses.fields(config_class)})
