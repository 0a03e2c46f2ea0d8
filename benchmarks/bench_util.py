"""What the benchmark scripts share: running the repository's apps as children."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_app(name: str, *args, env: dict) -> str:
  """Runs bin/<name> in a fresh process; its stdout, or exits with its stderr's tail."""
  result = subprocess.run([sys.executable, os.path.join(REPO, 'bin', name), *args],
                          capture_output=True, text=True, env=env)
  if result.returncode:
    sys.exit(f'bin/{name} failed:\n{result.stderr[-3000:]}')
  return result.stdout
