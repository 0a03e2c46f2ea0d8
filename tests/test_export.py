"""Tests of orca_gan.export_lib with tiny models.

The exported SavedModels are run in a child process in which orca_gan and keras
cannot be imported, and compared with the in-memory models.
"""

import dataclasses
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import orca_gan
from orca_gan import export_lib
from orca_gan import models
from orca_gan import spectral
from tests.helpers import run_app, write_wav

# With noise inputs (their hash must survive export and run without orca_gan) and a
# learned start state (the export must carry it).
TINY = models.ModelConfig(image_size=16, z_dim=8, fast_z=5, g_lstm_units=16,
                          d_lstm_units=16, gf_dim=16, df_dim=8, noise_inputs=True,
                          noise_rate=0.5, upsample='resize', start_state='latent')
TRANSFORM = spectral.SpectrogramConfig(image_size=16, window_s=1.0)
# (batch_size, seq_len): every case also runs in two chunks split at seq_len // 2.
CASES = [(1, 2), (1, 5), (3, 2), (3, 5)]
_QUIET_ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')

# Loads both exports with orca_gan and keras blocked, runs every case whole and in
# two chunks through the signatures, and writes the outputs as .npy files.
_CHILD = textwrap.dedent('''\
    import sys
    sys.modules['orca_gan'] = None
    sys.modules['keras'] = None

    import json
    import os

    import numpy as np
    import tensorflow as tf

    for name in ('orca_gan', 'keras'):
      try:
        __import__(name)
      except ImportError:
        continue
      sys.exit(f'{name} is importable in the child')

    export_dir, io_dir, *cases = sys.argv[1:]
    SIGNATURES = {'generator': ('z', 'generate_from_state'),
                  'discriminator': ('images', 'discriminate_from_state')}


    def save(prefix, outputs):
      for key, value in outputs.items():
        np.save(os.path.join(io_dir, f'{prefix}.{key}.npy'), value.numpy())


    for kind, (input_name, from_state) in SIGNATURES.items():
      loaded = tf.saved_model.load(os.path.join(export_dir, kind))
      metadata = loaded.signatures['metadata']()['json'].numpy().decode()
      with open(os.path.join(io_dir, f'{kind}.metadata.json'), 'w') as f:
        json.dump({'signature': metadata,
                   'variable': loaded.metadata_json.numpy().decode(),
                   'trainable': loaded.metadata_json.trainable}, f)
      units = json.loads(metadata)['model_config'][f'{kind[0]}_lstm_units']
      for case in cases:
        x = tf.constant(np.load(os.path.join(io_dir, f'{case}.{input_name}.npy')))
        save(f'{case}.{kind}', loaded.signatures['serving_default'](**{input_name: x}))
        split = x.shape[1] // 2
        if kind == 'generator':
          start = loaded.signatures['start_state'](z=x[:, 0])
          save(f'{case}.generator_start', start)
        else:
          start = {'state_h': tf.zeros([x.shape[0], units])}
          start['state_c'] = start['state_h']
        first = loaded.signatures[from_state](**{input_name: x[:, :split], **start})
        second = loaded.signatures[from_state](
            **{input_name: x[:, split:], 'state_h': first['state_h'],
               'state_c': first['state_c']})
        chunked = {key: tf.concat([first[key], second[key]], axis=1)
                   for key in first if not key.startswith('state_')}
        save(f'{case}.{kind}_chunked',
             dict(chunked, state_h=second['state_h'], state_c=second['state_c']))
    ''')


def _trained_models(seed):
  """Tiny built models whose batch-norm moving statistics are not the initial 0 / 1,
  and whose noise strengths are not the initial 0.

  Serving must use (and so export) the moving statistics: with the initial ones a
  missing variable could go unnoticed.
  """
  keras.utils.set_random_seed(seed)
  generator, discriminator = models.Generator(TINY), models.Discriminator(TINY)
  z = tf.zeros([1, TINY.z_dim])
  generator(z, generator.start_state(z))
  discriminator(tf.zeros([1, 16, 16, 1]), discriminator.initial_state(1))
  rng = np.random.default_rng(seed)
  assert generator.non_trainable_variables
  for variable in generator.non_trainable_variables:  # Means and variances.
    variable.assign(rng.uniform(0.5, 1.5, variable.shape).astype(np.float32))
  generator.noise_strength.assign(0.3)  # Trained noise is not silent.
  return generator, discriminator


def _case_name(batch_size, seq_len):
  return f'b{batch_size}_t{seq_len}'


def _inputs(batch_size, seq_len):
  z = models.sample_latents(tf.constant([batch_size, seq_len]), batch_size, seq_len,
                            TINY)
  images = tf.random.stateless_uniform([batch_size, seq_len, 16, 16, 1],
                                       [batch_size, seq_len], -1.0, 1.0)
  return z.numpy(), images.numpy()


def _assert_close(actual, expected):
  np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5)


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  """(generator, discriminator, export_dir) exported once for the module."""
  generator, discriminator = _trained_models(seed=0)
  export_dir = str(tmp_path_factory.mktemp('export'))
  export_lib.export_models(generator, discriminator, TINY, TRANSFORM, export_dir,
                           extra_metadata={'step': 7})
  return generator, discriminator, export_dir


@pytest.fixture(scope='module')
def child_outputs(exported, tmp_path_factory):
  """Runs `_CHILD` on every case once; returns the folder of its .npy files."""
  _, _, export_dir = exported
  io_dir = tmp_path_factory.mktemp('io')
  for batch_size, seq_len in CASES:
    z, images = _inputs(batch_size, seq_len)
    np.save(io_dir / f'{_case_name(batch_size, seq_len)}.z.npy', z)
    np.save(io_dir / f'{_case_name(batch_size, seq_len)}.images.npy', images)
  script = io_dir / 'child.py'
  script.write_text(_CHILD)
  result = subprocess.run(
      [sys.executable, str(script), export_dir, str(io_dir),
       *[_case_name(*case) for case in CASES]],
      capture_output=True, text=True, cwd=io_dir, env=_QUIET_ENV, timeout=120)
  assert result.returncode == 0, result.stderr
  return io_dir


@pytest.mark.slow
@pytest.mark.parametrize('batch_size, seq_len', CASES)
def test_loaded_signatures_match_in_memory_models(exported, child_outputs, batch_size,
                                                  seq_len):
  generator, discriminator, _ = exported
  case = child_outputs / _case_name(batch_size, seq_len)
  z, images = _inputs(batch_size, seq_len)

  expected_images, _ = models.generate_sequence(generator, z)
  _assert_close(np.load(f'{case}.generator.images.npy'), expected_images)
  for got, want in zip(('state_h', 'state_c'), generator.start_state(z[:, 0])):
    assert np.abs(want).max() > 1e-3  # Learned, not the zero state.
    _assert_close(np.load(f'{case}.generator_start.{got}.npy'), want)
  logits, embeddings, _ = models.discriminate_sequence(discriminator, images)
  _assert_close(np.load(f'{case}.discriminator.logits.npy'), logits)
  _assert_close(np.load(f'{case}.discriminator.embeddings.npy'), embeddings)


@pytest.mark.slow
@pytest.mark.parametrize('batch_size, seq_len', CASES)
def test_two_chunks_from_state_equal_one_call(exported, child_outputs, batch_size,
                                              seq_len):
  generator, discriminator, _ = exported
  case = child_outputs / _case_name(batch_size, seq_len)
  z, images = _inputs(batch_size, seq_len)

  _assert_close(np.load(f'{case}.generator_chunked.images.npy'),
                np.load(f'{case}.generator.images.npy'))
  _, (h, c) = models.generate_sequence(generator, z)
  _assert_close(np.load(f'{case}.generator_chunked.state_h.npy'), h)
  _assert_close(np.load(f'{case}.generator_chunked.state_c.npy'), c)

  for key in ('logits', 'embeddings'):
    _assert_close(np.load(f'{case}.discriminator_chunked.{key}.npy'),
                  np.load(f'{case}.discriminator.{key}.npy'))
  _, _, (h, c) = models.discriminate_sequence(discriminator, images)
  _assert_close(np.load(f'{case}.discriminator_chunked.state_h.npy'), h)
  _assert_close(np.load(f'{case}.discriminator_chunked.state_c.npy'), c)


@pytest.mark.slow
@pytest.mark.parametrize('kind', export_lib.KINDS)
def test_metadata_readable_without_orca_gan(exported, child_outputs, kind):
  with open(child_outputs / f'{kind}.metadata.json') as f:
    found = json.load(f)
  assert found['signature'] == found['variable']
  assert not found['trainable']
  expected = {'kind': kind, 'model_config': dataclasses.asdict(TINY),
              'transform': TRANSFORM.to_dict(),
              'orca_gan_version': orca_gan.__version__, 'step': 7}
  assert json.loads(found['variable']) == expected
  assert export_lib.read_metadata(os.path.join(exported[2], kind)) == expected


@pytest.mark.slow
@pytest.mark.parametrize('kind, names', [
    ('generator', ['serving_default', 'generate_from_state', 'start_state', 'metadata',
                   "inputs['z']", "inputs['state_h']", "inputs['state_c']",
                   "outputs['images']", "outputs['json']"]),
    ('discriminator', ['serving_default', 'discriminate_from_state', 'features',
                       'metadata', "inputs['images']", "inputs['state_h']",
                       "outputs['logits']", "outputs['embeddings']",
                       "outputs['conv_time_mean']", "outputs['conv_grid']"]),
])
def test_saved_model_cli_lists_signatures(exported, kind, names):
  cli = os.path.join(os.path.dirname(sys.executable), 'saved_model_cli')
  result = subprocess.run(
      [cli, 'show', '--all', '--dir', os.path.join(exported[2], kind)],
      capture_output=True, text=True, env=_QUIET_ENV, timeout=60)
  assert result.returncode == 0, result.stderr
  for name in names:
    assert name in result.stdout


def _save_plain_module(path, metadata_json=None):
  module = tf.Module()
  module.weight = tf.Variable(1.0)
  if metadata_json is not None:
    module.metadata_json = tf.Variable(metadata_json, trainable=False)
  tf.saved_model.save(module, str(path))
  return str(path)


def _write_junk_saved_model(path):
  (path / 'saved_model.pb').write_bytes(b'junk')
  return str(path)


@pytest.mark.parametrize('make_folder, reason', [
    (lambda path: str(path / 'missing'), 'no such folder'),
    (lambda path: str(path), 'no saved_model.pb'),
    (lambda path: _write_junk_saved_model(path), 'Cannot parse file'),
    (lambda path: _save_plain_module(path), 'no metadata_json variable'),
    (lambda path: _save_plain_module(path, 'not json'), 'is not orca_gan metadata'),
    (lambda path: _save_plain_module(path, '{"kind": "critic"}'),
     'is not orca_gan metadata'),
])
def test_read_metadata_rejects_other_folders(tmp_path, make_folder, reason):
  path = make_folder(tmp_path)
  for read in (export_lib.read_metadata, lambda p: export_lib.load(p, 'generator')):
    with pytest.raises(ValueError) as raised:
      read(path)
    message = str(raised.value)
    assert message.startswith(f'{path}: not an orca_gan SavedModel (')
    assert reason in message
    assert '\n' not in message


def test_load_names_model_settings_of_a_newer_version(exported, tmp_path):
  metadata = export_lib.read_metadata(os.path.join(exported[2], 'generator'))
  metadata['model_config']['wings'] = 2
  path = _save_plain_module(tmp_path / 'newer', json.dumps(metadata))
  with pytest.raises(ValueError, match=re.escape(
      f'{path}: made by a newer orca_gan (model settings this version does not know: '
      'wings); update orca_gan')):
    export_lib.load(path, 'generator')


def test_load_checks_kind(exported):
  export_dir = exported[2]
  generator_path = os.path.join(export_dir, 'generator')
  discriminator_path = os.path.join(export_dir, 'discriminator')
  with pytest.raises(ValueError, match=re.escape(
      f'{discriminator_path} is a discriminator SavedModel; expected a generator')):
    export_lib.load(discriminator_path, 'generator')
  with pytest.raises(ValueError, match=re.escape(
      f'{generator_path} is a generator SavedModel; expected a discriminator')):
    export_lib.load(generator_path, 'discriminator')
  with pytest.raises(ValueError, match='kind must be one of'):
    export_lib.load(generator_path, 'critic')
  loaded = export_lib.load(generator_path, 'generator')
  assert set(loaded.signatures) == {'serving_default', 'generate_from_state',
                                    'start_state', 'metadata'}


@pytest.mark.parametrize('model_config, transform, extra_metadata, match', [
    (dataclasses.replace(TINY, gf_dim=8), TRANSFORM, None, 'generator was built with'),
    (TINY, dataclasses.replace(TRANSFORM, image_size=32), None,
     'transform image_size 32'),
    (TINY, TRANSFORM, {'kind': 'critic', 'transform': {}},
     'may not set kind, transform'),
    (TINY, TRANSFORM, {'discriminator_stddev': 0.5}, 'may not set discriminator_stddev'),
])
def test_export_rejects_inconsistent_arguments(tmp_path, model_config, transform,
                                               extra_metadata, match):
  generator, discriminator = models.Generator(TINY), models.Discriminator(TINY)
  with pytest.raises(ValueError, match=match):
    export_lib.export_models(generator, discriminator, model_config, transform,
                             str(tmp_path), extra_metadata)
  assert os.listdir(tmp_path) == []


def test_minibatch_stddev_export_needs_its_statistic_and_only_then(tmp_path):
  with_stddev = dataclasses.replace(TINY, minibatch_stddev=True)
  for config, stddev in ((with_stddev, None), (TINY, 0.5)):
    generator, discriminator = models.Generator(config), models.Discriminator(config)
    with pytest.raises(ValueError, match='discriminator_stddev is needed with '
                       'minibatch_stddev, and only then'):
      export_lib.export_models(generator, discriminator, config, TRANSFORM,
                               str(tmp_path), discriminator_stddev=stddev)
  assert os.listdir(tmp_path) == []


def _assert_export_holds(export_dir, generator, discriminator, step):
  """Checks the folder holds exactly the export of these models, and nothing else."""
  assert sorted(os.listdir(export_dir)) == ['discriminator', 'generator']
  z, images = _inputs(2, 3)
  loaded = export_lib.load(os.path.join(export_dir, 'generator'), 'generator')
  _assert_close(loaded.signatures['serving_default'](z=z)['images'],
                models.generate_sequence(generator, z)[0])
  loaded = export_lib.load(os.path.join(export_dir, 'discriminator'), 'discriminator')
  _assert_close(loaded.signatures['serving_default'](images=images)['logits'],
                models.discriminate_sequence(discriminator, images)[0])
  for kind in export_lib.KINDS:
    assert export_lib.read_metadata(os.path.join(export_dir, kind))['step'] == step


def test_features_signature_matches_pooled_features_window_by_window(exported):
  _, discriminator, export_dir = exported
  loaded = export_lib.load(os.path.join(export_dir, 'discriminator'), 'discriminator')
  _, images = _inputs(2, 3)                                   # [2, 3, 16, 16, 1]
  served = loaded.signatures['features'](images=images)
  expected = models.pooled_features(discriminator, images.reshape(6, 16, 16, 1))
  assert sorted(served) == sorted(models.pooled_feature_names(TINY))
  for name, value in expected.items():
    assert served[name].shape[:2] == (2, 3)
    _assert_close(tf.reshape(served[name], [6, -1]), value)
  # Each window's features alone: no LSTM state goes in.
  assert 'state_h' not in loaded.signatures['features'].structured_input_signature[1]


def test_second_export_replaces_first(exported, tmp_path):
  first_generator, first_discriminator, _ = exported
  second_generator, second_discriminator = _trained_models(seed=1)
  export_dir = str(tmp_path / 'export')
  export_lib.export_models(first_generator, first_discriminator, TINY, TRANSFORM,
                           export_dir, {'step': 1})
  paths = export_lib.export_models(second_generator, second_discriminator, TINY,
                                   TRANSFORM, export_dir, {'step': 2})
  assert paths == {kind: os.path.join(export_dir, kind) for kind in export_lib.KINDS}
  _assert_export_holds(export_dir, second_generator, second_discriminator, step=2)


def test_failed_save_keeps_previous_export(exported, tmp_path, monkeypatch):
  generator, discriminator, _ = exported
  export_dir = str(tmp_path)
  export_lib.export_models(generator, discriminator, TINY, TRANSFORM, export_dir,
                           {'step': 1})
  real_save = tf.saved_model.save
  saved = []

  def save_generator_then_fail(obj, path, signatures=None):
    if not saved:  # The generator saves; the discriminator fails half-way.
      saved.append(path)
      return real_save(obj, path, signatures=signatures)
    os.makedirs(os.path.join(path, 'variables'))
    with open(os.path.join(path, 'saved_model.pb'), 'wb') as f:
      f.write(b'partial')
    raise OSError('disk full')

  monkeypatch.setattr(tf.saved_model, 'save', save_generator_then_fail)
  new_generator, new_discriminator = _trained_models(seed=1)
  with pytest.raises(OSError, match='disk full'):
    export_lib.export_models(new_generator, new_discriminator, TINY, TRANSFORM,
                             export_dir, {'step': 2})
  assert saved
  _assert_export_holds(export_dir, generator, discriminator, step=1)


def test_failed_rename_keeps_previous_export(exported, tmp_path, monkeypatch):
  generator, discriminator, _ = exported
  export_dir = str(tmp_path)
  export_lib.export_models(generator, discriminator, TINY, TRANSFORM, export_dir,
                           {'step': 1})
  real_rename = os.rename

  def fail_to_rename_in(src, dst):
    if os.path.basename(src).endswith('.tmp'):
      raise OSError('rename failed')
    real_rename(src, dst)

  monkeypatch.setattr(os, 'rename', fail_to_rename_in)
  with pytest.raises(OSError, match='rename failed'):
    export_lib.export_models(generator, discriminator, TINY, TRANSFORM, export_dir,
                             {'step': 2})
  monkeypatch.undo()
  _assert_export_holds(export_dir, generator, discriminator, step=1)


@pytest.mark.slow
@pytest.mark.parametrize('app, flags', [
    ('generate', ['--num_sequences', '1', '--seq_len', '1']),
    ('embed', ['--input', '{audio}']),
])
def test_truncated_variables_are_one_line_errors(exported, tmp_path, app, flags):
  _, _, export_dir = exported
  damaged = tmp_path / 'export'
  shutil.copytree(export_dir, damaged)
  kind = 'generator' if app == 'generate' else 'discriminator'
  data = glob.glob(str(damaged / kind / 'variables' / 'variables.data-*'))[0]
  os.truncate(data, os.path.getsize(data) // 2)
  with pytest.raises(ValueError, match=f'^{re.escape(str(damaged / kind))}: not an '
                     r'orca_gan SavedModel \(Read less bytes than requested\)$'):
    export_lib.load(str(damaged / kind), kind)
  audio = write_wav(tmp_path / 'a.wav', np.zeros(16000 * 3), 16000)
  result = run_app(app, '--model', str(damaged / kind), '--output_dir',
                   str(tmp_path / 'out'), *[f.format(audio=audio) for f in flags])
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 2 and len(lines) == 1, result.stderr
  assert re.match(rf'error: (--model )?{re.escape(str(damaged / kind))}: not an orca_gan '
                  r'SavedModel \(Read less bytes than requested\)$',
                  lines[0]), lines
  assert not (tmp_path / 'out').exists()
