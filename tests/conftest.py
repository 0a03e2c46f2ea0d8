"""Fixtures shared by the tests."""

import os

import pytest

from tests.helpers import SHARED_DATA


@pytest.fixture
def shared_data():
  """The shared real recordings, read in place; the test is skipped without them."""
  if not os.path.isdir(os.path.join(SHARED_DATA, 'orcasound')):
    pytest.skip(f'real recordings not found at {SHARED_DATA} (../shared is absent)')
  return SHARED_DATA

