"""SavedModel export of the trained generator and discriminator.

`export_models` writes two SavedModels, `<export_dir>/generator` and
`<export_dir>/discriminator`, that load with plain `tf.saved_model.load`: neither
orca_gan nor keras is needed to run them. Serving carries the LSTM state explicitly
(ddsp `training/inference.py`): every signature is a pure function of its inputs, and
the `*_from_state` signatures take and return the state so that a caller can run a
long sequence in chunks. Both run the same `models.generate_sequence` /
`models.discriminate_sequence` as training, in inference mode.

Signatures of the generator:
  serving_default(z [b, T, z_dim]) -> {images [b, T, size, size, 1]}
  start_state(z [b, z_dim]) -> {state_h [b, g_lstm_units], state_c}, the state a
      sequence whose first latents are `z` starts from
  generate_from_state(z, state_h [b, g_lstm_units], state_c [b, g_lstm_units])
      -> {images, state_h, state_c}
  metadata() -> {json: string scalar}
and of the discriminator:
  serving_default(images [b, T, size, size, 1])
      -> {logits [b, T], embeddings [b, T, d_lstm_units]}
  discriminate_from_state(images, state_h [b, d_lstm_units], state_c)
      -> {logits, embeddings, state_h, state_c}
  metadata() -> {json}

The metadata (kind, model config, spectrogram transform, orca_gan version, extras) is
also the non-trainable string variable `metadata_json` of the loaded object; read it
with `read_metadata`, or check the kind while loading with `load`.

Exports replace the previous ones atomically: both models are saved to temporary
sibling folders first, and only when both saves succeed does each final folder get
swapped in by renames. Readers never see a half-written export, and a failed save
leaves the previous export as it was. Local file systems only: renames of folders
on object stores are neither atomic nor always supported.
"""

import dataclasses
import json
import os
import shutil
import tempfile
from typing import Any

import tensorflow as tf

import orca_gan
from orca_gan import fileio
from orca_gan import models
from orca_gan import spectral

KINDS = ('generator', 'discriminator')
# Metadata keys an export sets itself ('discriminator_stddev': the discriminator's,
# with --minibatch_stddev).
_RESERVED_KEYS = frozenset({'kind', 'model_config', 'transform', 'orca_gan_version',
                            'discriminator_stddev'})


class _ServingModule(tf.Module):
  """Holds the metadata variable and the `metadata` signature shared by both kinds."""

  def __init__(self, metadata_json: str, name=None):
    super().__init__(name=name)
    self.metadata_json = tf.Variable(metadata_json, trainable=False, dtype=tf.string,
                                     name='metadata_json')
    self.metadata = tf.function(
        lambda: {'json': tf.identity(self.metadata_json)}, input_signature=[])


class ServingGenerator(_ServingModule):
  """The generator in inference mode, for `tf.saved_model.save`.

  Attributes:
    model_variables: The variables of the Keras generator; tracked, so they are saved.
    generate: tf.function, `z` [b, T, z_dim] -> {'images': [b, T, size, size, 1]},
      starting from the start state of `z[:, 0]`.
    start_state: tf.function, `z` [b, z_dim] -> {'state_h', 'state_c'}, each
      [b, g_lstm_units]: `models.Generator.start_state`, where `generate` starts.
    generate_from_state: tf.function, (`z`, `state_h`, `state_c`, each state
      [b, g_lstm_units]) -> {'images', 'state_h', 'state_c'}, the state after the last
      step.
    metadata: tf.function, () -> {'json': string scalar}.
  """

  def __init__(self, generator: models.Generator, metadata_json: str, name=None):
    super().__init__(metadata_json, name=name)
    config = generator.config
    z = tf.zeros([1, config.z_dim])
    self.model_variables = _build_and_list_variables(generator, z,
                                                     generator.start_state(z))
    z_spec = tf.TensorSpec([None, None, config.z_dim], tf.float32, name='z')
    state_spec = tf.TensorSpec([None, config.g_lstm_units], tf.float32)

    def start_state(z):
      h, c = generator.start_state(z)
      return {'state_h': h, 'state_c': c}

    def generate(z):
      images, _ = models.generate_sequence(generator, z, training=False)
      return {'images': images}

    def generate_from_state(z, state_h, state_c):
      images, (h, c) = models.generate_sequence(generator, z, (state_h, state_c),
                                                training=False)
      return {'images': images, 'state_h': h, 'state_c': c}

    self.start_state = tf.function(start_state, input_signature=[
        tf.TensorSpec([None, config.z_dim], tf.float32, name='z')])
    self.generate = tf.function(generate, input_signature=[z_spec])
    self.generate_from_state = tf.function(
        generate_from_state,
        input_signature=[z_spec, _named(state_spec, 'state_h'),
                         _named(state_spec, 'state_c')])

  def signatures(self) -> dict:
    return {'serving_default': self.generate.get_concrete_function(),
            'generate_from_state': self.generate_from_state.get_concrete_function(),
            'start_state': self.start_state.get_concrete_function(),
            'metadata': self.metadata.get_concrete_function()}


class ServingDiscriminator(_ServingModule):
  """The discriminator in inference mode, for `tf.saved_model.save`.

  Attributes:
    model_variables: The variables of the Keras discriminator; tracked, so they are
      saved.
    discriminate: tf.function, `images` [b, T, size, size, 1] ->
      {'logits': [b, T], 'embeddings': [b, T, d_lstm_units]}, from the zero state.
    discriminate_from_state: tf.function, (`images`, `state_h`, `state_c`, each state
      [b, d_lstm_units]) -> {'logits', 'embeddings', 'state_h', 'state_c'}.
    features: tf.function, `images` [b, T, size, size, 1] -> {name: [b, T, size_name]}
      for every name of `models.pooled_feature_names`: pooled convolution features of
      each window, independent of the LSTM state.
    metadata: tf.function, () -> {'json': string scalar}.

  With `minibatch_stddev`, every signature uses `batch_stddev` (a constant) in place
  of the batch's statistic, so that a window's logit and embedding depend on that
  window (and its sequence) alone, whatever else the caller puts in the batch.
  """

  def __init__(self, discriminator: models.Discriminator, metadata_json: str,
               batch_stddev: float | None = None, name=None):
    super().__init__(metadata_json, name=name)
    config = discriminator.config
    size = config.image_size
    self.model_variables = _build_and_list_variables(
        discriminator, tf.zeros([1, size, size, 1]), discriminator.initial_state(1))
    images_spec = tf.TensorSpec([None, None, size, size, 1], tf.float32, name='images')
    state_spec = tf.TensorSpec([None, config.d_lstm_units], tf.float32)

    def discriminate(images):
      logits, embeddings, _ = models.discriminate_sequence(
          discriminator, images, training=False, batch_stddev=batch_stddev)
      return {'logits': logits, 'embeddings': embeddings}

    def discriminate_from_state(images, state_h, state_c):
      logits, embeddings, (h, c) = models.discriminate_sequence(
          discriminator, images, (state_h, state_c), training=False,
          batch_stddev=batch_stddev)
      return {'logits': logits, 'embeddings': embeddings, 'state_h': h, 'state_c': c}

    def features(images):
      shape = tf.shape(images)
      flat = tf.reshape(images, [-1, size, size, 1])        # [b T, H, W, 1]
      pooled = models.pooled_features(discriminator, flat)
      return {name: tf.reshape(value, [shape[0], shape[1], value.shape[-1]])
              for name, value in pooled.items()}

    self.discriminate = tf.function(discriminate, input_signature=[images_spec])
    self.features = tf.function(features, input_signature=[images_spec])
    self.discriminate_from_state = tf.function(
        discriminate_from_state,
        input_signature=[images_spec, _named(state_spec, 'state_h'),
                         _named(state_spec, 'state_c')])

  def signatures(self) -> dict:
    return {'serving_default': self.discriminate.get_concrete_function(),
            'discriminate_from_state':
                self.discriminate_from_state.get_concrete_function(),
            'features': self.features.get_concrete_function(),
            'metadata': self.metadata.get_concrete_function()}


def _build_and_list_variables(model, inputs, state) -> list:
  """Returns the variables of `model`, after one eager call on `inputs` builds them.

  The call builds a model that has never been called, so that no variable is created
  while tracing. The serving module tracks these variables rather than the model:
  Keras 3 gives a tracked model a one-argument default serving function, which
  `tf.saved_model.save` traces and which fails for `call(inputs, state)` (Keras'
  own `ExportArchive` tracks variables likewise).
  """
  model(inputs, state, training=False)
  return list(model.variables)


def _named(spec: tf.TensorSpec, name: str) -> tf.TensorSpec:
  return tf.TensorSpec(spec.shape, spec.dtype, name=name)


def _metadata_json(kind: str, model_config: models.ModelConfig,
                   transform: spectral.SpectrogramConfig,
                   extra_metadata: dict, own: dict | None = None) -> str:
  """The JSON stored in an export of `kind`: the caller's `extra_metadata` (checked
  against `_RESERVED_KEYS` by `export_models`), then this kind's `own` keys."""
  return json.dumps({
      **extra_metadata,
      'kind': kind,
      'model_config': dataclasses.asdict(model_config),
      'transform': transform.to_dict(),
      'orca_gan_version': orca_gan.__version__,
      **(own or {}),
  }, sort_keys=True)


def export_models(generator: models.Generator, discriminator: models.Discriminator,
                  model_config: models.ModelConfig,
                  transform: spectral.SpectrogramConfig, export_dir: str,
                  extra_metadata: dict | None = None,
                  discriminator_stddev: float | None = None) -> dict:
  """Writes export_dir/generator and export_dir/discriminator; returns their paths.

  Both SavedModels are saved to temporary folders in `export_dir` first; only when
  both saves have succeeded is each one renamed into place, replacing an earlier
  export of the same name. On failure the temporary folders are removed and the
  earlier export is left as it was. (Each folder is swapped atomically, not the pair:
  only a failed rename between the two swaps could leave a new generator next to an
  old discriminator.)

  Args:
    generator: The trained generator, built with `model_config`.
    discriminator: The trained discriminator, built with `model_config`.
    model_config: Stored in the metadata.
    transform: The spectrogram transform the models were trained on; stored in the
      metadata so that a caller can turn images back into sound.
    export_dir: Folder to write to; created if missing.
    extra_metadata: JSON-serializable top-level keys added to the metadata (e.g. the
      training step); may not set 'kind', 'model_config', 'transform',
      'orca_gan_version' or 'discriminator_stddev'.
    discriminator_stddev: With `model_config.minibatch_stddev` (and only then), the
      value the exported discriminator uses in place of the batch's statistic
      (`models.real_batch_stddev`); also stored in its metadata as
      'discriminator_stddev'.

  Returns:
    {'generator': path, 'discriminator': path}.

  Raises:
    ValueError: If a model was built with another config than `model_config`, the
      transform's image size differs from the models', or `extra_metadata` sets a
      reserved key.
  """
  built: tuple[models.Generator | models.Discriminator, ...] = (generator, discriminator)
  for kind, model in zip(KINDS, built):
    if model.config != model_config:
      raise ValueError(f'the {kind} was built with {model.config}, not {model_config}')
  if (discriminator_stddev is None) == model_config.minibatch_stddev:
    raise ValueError('discriminator_stddev is needed with minibatch_stddev, and only '
                     f'then (minibatch_stddev={model_config.minibatch_stddev})')
  if transform.image_size != model_config.image_size:
    raise ValueError(f'transform image_size {transform.image_size} differs from the '
                     f'models\' {model_config.image_size}')
  extra_metadata = extra_metadata or {}
  clashes = sorted(_RESERVED_KEYS & set(extra_metadata))
  if clashes:
    raise ValueError(f'extra_metadata may not set {", ".join(clashes)}')
  stddev = ({} if discriminator_stddev is None
            else {'discriminator_stddev': discriminator_stddev})
  modules = {
      'generator': ServingGenerator(
          generator, _metadata_json('generator', model_config, transform,
                                    extra_metadata)),
      'discriminator': ServingDiscriminator(
          discriminator, _metadata_json('discriminator', model_config, transform,
                                        extra_metadata, stddev),
          batch_stddev=discriminator_stddev),
  }
  os.makedirs(export_dir, exist_ok=True)
  staged = {}
  try:
    for kind, module in modules.items():
      staged[kind] = tempfile.mkdtemp(prefix=f'.{kind}.', suffix='.tmp', dir=export_dir)
      try:
        tf.saved_model.save(module, staged[kind], signatures=module.signatures())
      except tf.errors.OpError as e:  # E.g. the disk is full.
        raise OSError(f'{os.path.join(export_dir, kind)}: cannot write the SavedModel '
                      f'({fileio.os_reason(e)}); the earlier export there, if any, '
                      'is unchanged') from None
    paths = {}
    for kind, staging in staged.items():
      paths[kind] = os.path.join(export_dir, kind)
      fileio.replace_folder(staging, paths[kind])
  finally:
    for staging in staged.values():
      if os.path.exists(staging):
        shutil.rmtree(staging)
  return paths


def _load_saved_model(path: str):
  if not os.path.isdir(path):
    raise ValueError(f'{path}: not an orca_gan SavedModel (no such folder)')
  if not tf.saved_model.contains_saved_model(path):
    raise ValueError(f'{path}: not an orca_gan SavedModel (no saved_model.pb)')
  try:
    return tf.saved_model.load(path)
  # A damaged SavedModel surfaces as many exception types (OpError for a corrupt
  # saved_model.pb, IndexError "Read less bytes than requested" for truncated variables).
  except Exception as e:
    raise ValueError(f'{path}: not an orca_gan SavedModel '
                     f'({fileio.os_reason(e) or type(e).__name__})') from None


def _metadata_of(loaded, path: str) -> dict:
  variable = getattr(loaded, 'metadata_json', None)
  if not isinstance(variable, tf.Variable) or variable.dtype != tf.string:
    raise ValueError(f'{path}: not an orca_gan SavedModel (no metadata_json variable)')
  try:
    metadata = json.loads(variable.numpy().decode('utf-8'))
  except ValueError:  # Includes json.JSONDecodeError and UnicodeDecodeError.
    metadata = None
  if not isinstance(metadata, dict) or metadata.get('kind') not in KINDS:
    raise ValueError(f'{path}: not an orca_gan SavedModel (metadata_json is not '
                     f'orca_gan metadata)')
  return metadata


@dataclasses.dataclass(frozen=True)
class LoadedModel:
  """An exported model, loaded, with what its metadata says about it.

  Attribute access falls through to the SavedModel (`signatures`, `generate`,
  `discriminate`, ...).
  """
  path: str
  kind: str
  saved_model: Any          # From tf.saved_model.load.
  metadata: dict
  model_config: models.ModelConfig
  transform: spectral.SpectrogramConfig

  def __getattr__(self, name):
    if name == 'saved_model':  # Not set yet (e.g. while unpickling).
      raise AttributeError(name)
    return getattr(self.saved_model, name)


def read_metadata(path: str) -> dict:
  """Loads the SavedModel at `path` and returns its parsed metadata.

  Raises:
    ValueError: If `path` is not a SavedModel written by `export_models`.
  """
  return _metadata_of(_load_saved_model(path), path)


def load(path: str, kind: str) -> LoadedModel:
  """Loads an exported model of `kind` ('generator' or 'discriminator').

  Returns:
    The model: call its `signatures`, or its `generate`/`generate_from_state`
    (`discriminate`/`discriminate_from_state`) functions; its metadata, model config
    and transform come with it.

  Raises:
    ValueError: If `kind` is unknown, `path` is not an orca_gan SavedModel, or it
      holds the other kind of model (the message names `path`).
  """
  if kind not in KINDS:
    raise ValueError(f'kind must be one of {KINDS}, got {kind!r}')
  loaded = _load_saved_model(path)
  metadata = _metadata_of(loaded, path)
  if metadata['kind'] != kind:
    raise ValueError(f'{path} is a {metadata["kind"]} SavedModel; expected a {kind}')
  unknown = sorted(set(metadata['model_config']) -
                   {f.name for f in dataclasses.fields(models.ModelConfig)})
  if unknown:
    raise ValueError(f'{path}: made by a newer orca_gan (model settings this version '
                     f'does not know: {", ".join(unknown)}); update orca_gan')
  return LoadedModel(path=path, kind=kind, saved_model=loaded, metadata=metadata,
                     model_config=models.ModelConfig(**metadata['model_config']),
                     transform=spectral.SpectrogramConfig.from_dict(metadata['transform']))
