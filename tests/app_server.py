"""Runs one app many times without paying its start-up each time (for `helpers.run_app`).

Started as `python tests/app_server.py NAME`, it imports `orca_gan.apps.NAME` (and with
it TensorFlow: 2.5 s of every command-line test) once, then for each request read from
stdin forks a child that runs the app's `run()` exactly as `bin/NAME` does, with the
request's argv, working folder, environment and output files. The child is a new
process whose TensorFlow runtime starts afresh: nothing but imported modules is shared,
and the server never runs a TensorFlow op. It answers with the child's pid when it
starts and its exit status when it ends.

Requests are pickles on stdin; answers are lines ('started PID', 'exited STATUS') on
the file descriptor that was stdout.
"""

import importlib
import os
import pickle
import sys


def _serve(name: str):
  """Answers requests until stdin closes; returns a request in a forked child."""
  requests = sys.stdin.buffer
  answers = os.fdopen(os.dup(1), 'wb')
  devnull = os.open(os.devnull, os.O_RDWR)
  os.dup2(devnull, 1)  # Nothing but answers goes to the parent's pipe.
  importlib.import_module(f'orca_gan.apps.{name}')
  _answer(answers, 'ready', os.getpid())
  while True:
    try:
      request = pickle.load(requests)
    except EOFError:
      return None
    pid = os.fork()
    if pid == 0:
      answers.close()
      os.dup2(devnull, 0)
      return request
    _answer(answers, 'started', pid)
    _, status = os.waitpid(pid, 0)
    _answer(answers, 'exited', os.waitstatus_to_exitcode(status))


def _answer(answers, kind: str, number: int) -> None:
  answers.write(f'{kind} {number}\n'.encode())
  answers.flush()


def main():
  name = sys.argv[1]
  # Requests may carry functions of tests.helpers (`limit_file_size`).
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  request = _serve(name)
  if request is None:
    return
  # The child: become `bin/NAME args...`; the interpreter's normal exit ends it.
  os.chdir(request['cwd'])
  os.environ.clear()
  os.environ.update(request['env'])
  for fd, path in ((1, request['stdout']), (2, request['stderr'])):
    os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
  if request['preexec_fn']:
    request['preexec_fn']()
  sys.argv = request['argv']
  importlib.import_module(f'orca_gan.apps.{name}').run()


if __name__ == '__main__':
  main()
