"""Fields of the frozen config dataclasses that the command-line apps are built from.

Each app defines one absl flag per field (`orca_gan.apps.common.define_flags`), named as
the field, with the help text, the choices (an enum flag) and whether it is required
taken from the field's metadata, so a setting is described once, next to its default.
"""

import dataclasses


class UsageError(ValueError):
  """Arguments that make a run impossible, raised before anything is written; the
  command-line apps report it in one line and exit with status 2."""


def flag(default, help: str, choices=None, required: bool = False):
  """A config field that is also a command-line flag.

  Args:
    default: The default value (a tuple default makes a repeatable flag).
    help: The flag's help text.
    choices: The allowed values (an enum flag), or None.
    required: Whether the flag must be given.
  """
  metadata = {'help': help, 'choices': tuple(choices) if choices else None,
              'required': required}
  if isinstance(default, (list, dict, set)):
    raise TypeError('use a tuple for a repeatable flag')
  return dataclasses.field(default=default, metadata=metadata)


def check(config, error_class) -> None:
  """Raises `error_class` with a one-line message for the first field, in order, that is
  required but empty (`--name is required`) or outside its choices."""
  for field in dataclasses.fields(config):
    value = getattr(config, field.name)
    if field.metadata.get('required') and not value:
      raise error_class(f'--{field.name} is required')
    choices = field.metadata.get('choices')
    if choices and value not in choices:
      raise error_class(f'--{field.name} must be one of {", ".join(choices)}, got '
                        f'{value!r}')
