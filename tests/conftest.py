"""Fixtures shared by the tests."""

import os

import keras
import pytest
import tensorflow as tf

from orca_gan import export_lib
from orca_gan import models
from tests.helpers import SHARED_DATA, TINY_MODEL, TINY_TRANSFORM


@pytest.fixture
def shared_data():
  """The shared real recordings, read in place; the test is skipped without them."""
  if not os.path.isdir(os.path.join(SHARED_DATA, 'orcasound')):
    pytest.skip(f'real recordings not found at {SHARED_DATA} (../shared is absent)')
  return SHARED_DATA



@pytest.fixture(scope='session')
def exported(tmp_path_factory):
  """{'generator': path, 'discriminator': path} of an untrained `TINY_MODEL` export."""
  keras.utils.set_random_seed(0)
  generator, discriminator = models.Generator(TINY_MODEL), models.Discriminator(TINY_MODEL)
  size = TINY_MODEL.image_size
  z = tf.zeros([1, TINY_MODEL.z_dim])
  generator(z, generator.start_state(z))
  discriminator(tf.zeros([1, size, size, 1]), discriminator.initial_state(1))
  return export_lib.export_models(generator, discriminator, TINY_MODEL, TINY_TRANSFORM,
                                  str(tmp_path_factory.mktemp('export')))
