"""What every orca_gan command-line app shares: quiet TensorFlow, clean exits."""

import dataclasses
import os
import signal
import sys

from absl import app
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


def define_flags(config_class, exclude=()) -> None:
  """Defines one absl flag per field of a config dataclass, named as the field, with
  the help text, choices (an enum flag) and required mark of the field's metadata
  (`orca_gan.configs.flag`); a tuple field is a repeatable flag."""
  definers: dict = {int: flags.DEFINE_integer, float: flags.DEFINE_float,
                    bool: flags.DEFINE_boolean, str: flags.DEFINE_string}
  for field in dataclasses.fields(config_class):
    if field.name in exclude:
      continue
    meta, default = field.metadata, field.default
    assert default is not dataclasses.MISSING, field.name
    help_text = meta['help'] + (' (required)' if meta['required'] else '')
    if meta['choices']:
      flags.DEFINE_enum(field.name, default, list(meta['choices']), help_text)
    elif field.type is tuple:
      flags.DEFINE_multi_string(field.name, list(default), help_text)
    else:
      definers[field.type](field.name, default, help_text)


def config_from_flags(config_class, **values):
  """Builds a config dataclass from the flags of the same names (and `values`)."""
  for f in dataclasses.fields(config_class):
    if f.name not in values:
      value = getattr(flags.FLAGS, f.name)
      values[f.name] = tuple(value or ()) if f.type is tuple else value
  return config_class(**values)


def run(main, interrupted=lambda: 'interrupted') -> None:
  """absl's app.run with every failure reported on one line, `error: ...`:

  * a usage error (a bad flag, or a ValueError such as `configs.UsageError`: arguments
    that make the run impossible, found before any output) exits with status 2;
  * a failure while working (OSError: unreadable or damaged input, a full disk, a
    locked folder; RuntimeError: training failed) exits with status 1;
  * Ctrl-C or SIGTERM exits with status 130 and the message `interrupted()` returns.
  """
  def reported(argv):
    try:
      main(argv)
    except KeyboardInterrupt:
      fail(interrupted(), status=130)
    except ValueError as e:
      fail(str(e), status=2)
    except (OSError, RuntimeError) as e:
      fail(str(e), status=1)

  app.run(reported, flags_parser=_parse_flags)


def _parse_flags(argv):
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(str(e))
