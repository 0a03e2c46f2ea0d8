"""bin/embed and embed_lib with a tiny exported discriminator.

The model is untrained: these tests check the plumbing (same windows as training, state
carrying, row alignment, ranking, outputs, errors), not that the embeddings are useful.
"""

import os
import re
import subprocess
import sys
import types

import numpy as np
import pytest
from google.protobuf import text_format
from tensorboard.plugins.projector import projector_plugin
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

from orca_gan import embed_lib
from orca_gan import export_lib
from orca_gan import fileio
from orca_gan import prepare_tfrecords
from orca_gan import records
from orca_gan import spectral
from tests.helpers import (REPO, TINY_MODEL, TINY_TRANSFORM, damaged_records, hostile_folder,
                           make_bad_files, scene, tone, write_wav)

TINY = TINY_MODEL
TRANSFORM = TINY_TRANSFORM
# name: (duration_s, sample_rate_hz) -> 3 + 4 + 2 windows of 3 s.
CORPUS = {'S_1.wav': (10, 16000), 'FO-S33-RJ-a.wav': (13, 44100), 'rec2.wav': (7, 22050)}
LABELS = {'S_1.wav': 'S1', 'FO-S33-RJ-a.wav': 'S33', 'rec2.wav': ''}
WINDOWS = {'S_1.wav': 3, 'FO-S33-RJ-a.wav': 4, 'rec2.wav': 2}


@pytest.fixture(scope='module')
def model(exported):
  return export_lib.load(exported['discriminator'], 'discriminator')


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  folder = tmp_path_factory.mktemp('corpus')
  for i, (name, (duration_s, rate)) in enumerate(CORPUS.items()):
    write_wav(folder / name, scene(duration_s, rate, seed=i), rate)
  return folder


@pytest.fixture(scope='module')
def runs(model, corpus, tmp_path_factory):
  """{context: output_dir} of the corpus embedded from audio in both contexts."""
  out = {}
  for context in embed_lib.CONTEXTS:
    out[context] = tmp_path_factory.mktemp(context) / 'out'
    embed_lib.embed_corpus(model, str(out[context]), inputs=[str(corpus)],
                           config=embed_lib.EmbedConfig(embedding='lstm',
                                                         context=context),
                           log=lambda line: None)
  return out


@pytest.fixture(scope='module')
def cli_runs(exported, corpus, tmp_path_factory):
  """{case: (CompletedProcess, its tmp folder)} of every bin/embed run of the module.

  The runs are started at once: each spends seconds importing TensorFlow, mostly on one
  core, so together they take about half as long as one after another.
  """
  args = {}
  tmp = {case: tmp_path_factory.mktemp(case) for case in (
      'query', 'generator', 'not_saved_model', 'empty_folder', 'other_transform')}
  audio = scene(*CORPUS['S_1.wav'], seed=0)
  clip = write_wav(tmp['query'] / 'clip.wav', audio[48000:96000], 16000)  # Window 1.
  args['query'] = ['--input', str(corpus), '--query', clip, '--embedding', 'lstm',
                   '--context', 'window',
                   '--top_k', '4']
  args['generator'] = ['--model', exported['generator'], '--input', str(corpus)]
  args['not_saved_model'] = ['--model', str(tmp['not_saved_model']), '--input',
                             str(corpus)]
  args['empty_folder'] = ['--input', str(tmp['empty_folder'])]
  call = write_wav(tmp['other_transform'] / 'call.wav', tone(2000, 3.0, 16000), 16000)
  prepare_tfrecords.make_tfrecords(
      [call], str(tmp['other_transform'] / 'records'), prepare_tfrecords.PrepareConfig(
          transform=spectral.SpectrogramConfig(image_size=16)), log=lambda line: None)
  args['other_transform'] = ['--tfrecords', str(tmp['other_transform'] / 'records')]
  processes = {}
  for case, case_args in args.items():
    if '--model' not in case_args:
      case_args = ['--model', exported['discriminator']] + case_args
    argv = [sys.executable, os.path.join(REPO, 'bin', 'embed'), *case_args,
            '--output_dir', str(tmp[case] / 'out')]
    processes[case] = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True, cwd=REPO)
  results = {}
  for case, process in processes.items():
    stdout, stderr = process.communicate(timeout=300)
    results[case] = (subprocess.CompletedProcess(process.args, process.returncode,
                                                 stdout, stderr), tmp[case])
  return results


def read_outputs(output_dir):
  """(embeddings [N, units], metadata rows as [file, start_s, label])."""
  embeddings = np.load(os.path.join(output_dir, 'embeddings.npy'))
  with open(os.path.join(output_dir, 'metadata.tsv')) as f:
    lines = f.read().splitlines()
  assert lines[0] == 'file\tstart_s\tlabel'
  return embeddings, [line.split('\t') for line in lines[1:]]


@pytest.mark.parametrize('name, label', [
    ('S_1.wav', 'S1'), ('FO-S01.mp3', 'S1'), ('S_33_a.wav', 'S33'), ('S_33b.wav', 'S33'),
    ('FO-S33-RJ-a.mp3', 'S33'), ('L_S_6_maybe.wav', 'S6'), ('/x/FO-N04-b.flac', 'N4'),
    ('/calls/S_1/tape.mp3', ''), ('orca_scene_00.mp3', ''), ('AIS_2.wav', ''),
    ('s_1.wav', ''),
])
def test_label_from_filename(name, label):
  assert embed_lib.label_from_filename(name) == label


def test_audio_and_tfrecords_give_the_same_windows_and_embeddings(model, corpus, runs,
                                                                  tmp_path):
  tfrecords = tmp_path / 'records'
  prepare_tfrecords.make_tfrecords(
      [str(corpus)], str(tfrecords), prepare_tfrecords.PrepareConfig(transform=TRANSFORM),
      log=lambda line: None)
  from_records = list(embed_lib.tfrecord_windows(str(tfrecords)))
  assert [os.path.basename(w.path) for w in from_records] == sorted(CORPUS)
  for stored in from_records:
    from_audio = embed_lib.audio_windows(stored.path, TRANSFORM)
    np.testing.assert_array_equal(from_audio.stored, stored.stored)

  out = tmp_path / 'out'
  embed_lib.embed_corpus(model, str(out), tfrecord_dir=str(tfrecords),
                         config=embed_lib.EmbedConfig(embedding='lstm'),
                         log=lambda line: None)
  audio_embeddings, audio_rows = read_outputs(runs['file'])
  record_embeddings, record_rows = read_outputs(out)
  assert record_rows == audio_rows
  np.testing.assert_allclose(record_embeddings, audio_embeddings, rtol=0, atol=1e-5)

  # Audio files the folder already holds are read from it, not embedded twice.
  lines = []
  embed_lib.embed_corpus(model, str(out), inputs=[str(corpus)],
                         tfrecord_dir=str(tfrecords), log=lines.append)
  assert read_outputs(out)[1] == audio_rows
  assert any('3 --input files are in --tfrecords' in line for line in lines)


def test_file_context_carries_state_and_window_context_does_not(model, corpus, runs):
  images = embed_lib.audio_windows(str(corpus / 'FO-S33-RJ-a.wav'), TRANSFORM).stored
  in_file = embed_lib.embed_windows(model, images, 'file')
  alone = embed_lib.embed_windows(model, images, 'window')
  assert in_file.shape == alone.shape == (4, TINY.d_lstm_units)
  np.testing.assert_allclose(in_file[0], alone[0], atol=1e-6)
  assert np.abs(in_file[1:] - alone[1:]).max(axis=1).min() > 1e-3
  for i in range(4):  # 'window' = every window as its own sequence.
    np.testing.assert_allclose(
        alone[i], embed_lib.embed_windows(model, images[i:i + 1], 'file')[0], atol=1e-6)

  # Chunks with the state carried equal one call over the whole sequence.
  whole = model.signatures['serving_default'](
      images=records.dequantize(images)[None, ..., None])['embeddings'][0]
  for chunk_windows in (1, 3):
    np.testing.assert_allclose(
        embed_lib.embed_windows(model, images, 'file', chunk_windows), whole, atol=1e-5)

  # The same in the corpus outputs: first windows agree, later ones differ.
  (file_embeddings, rows), (window_embeddings, _) = (read_outputs(runs[c])
                                                     for c in embed_lib.CONTEXTS)
  first = np.array([row[1] == '0' for row in rows])
  assert first.sum() == 3
  np.testing.assert_allclose(file_embeddings[first], window_embeddings[first], atol=1e-6)
  later_differences = np.abs(file_embeddings[~first] - window_embeddings[~first])
  assert later_differences.max(axis=1).min() > 1e-3


def test_metadata_rows_align_with_embeddings_and_the_projector_reads_them(corpus, runs):
  embeddings, rows = read_outputs(runs['file'])
  assert embeddings.shape == (9, TINY.d_lstm_units) and embeddings.dtype == np.float32
  expected = [[str(corpus / name), f'{3 * i:g}', LABELS[name]]
              for name in sorted(CORPUS) for i in range(WINDOWS[name])]
  assert rows == expected
  assert sorted(os.listdir(runs['file'])) == ['embeddings.npy', 'embeddings.tsv',
                                              'metadata.tsv', 'projector_config.pbtxt']

  # Read the way TensorBoard's Projector plugin reads them.
  config = ProjectorConfig()
  text_format.Parse((runs['file'] / 'projector_config.pbtxt').read_text(), config)
  (embedding,) = config.embeddings
  assert (embedding.tensor_path, embedding.metadata_path) == ('embeddings.tsv',
                                                              'metadata.tsv')
  tensor = projector_plugin._read_tensor_tsv_file(str(runs['file'] / 'embeddings.tsv'))
  np.testing.assert_allclose(tensor, embeddings, rtol=1e-6, atol=1e-7)


def test_projector_files_thin_out_large_corpora(model, corpus, runs, tmp_path):
  out = tmp_path / 'out'
  config = embed_lib.EmbedConfig(projector_max_rows=4)
  summary = embed_lib.embed_corpus(model, str(out), inputs=[str(corpus)], config=config,
                                   log=lambda line: None)
  assert summary.projector_rows == 3  # Every 3rd of 9 rows.
  embeddings, rows = read_outputs(out)
  tensor = projector_plugin._read_tensor_tsv_file(str(out / 'embeddings.tsv'))
  np.testing.assert_allclose(tensor, embeddings[::3], rtol=1e-6, atol=1e-7)
  assert (out / 'projector_metadata.tsv').read_text().splitlines()[1:] == [
      '\t'.join(row) for row in rows[::3]]
  assert 'metadata_path: "projector_metadata.tsv"' in (
      out / 'projector_config.pbtxt').read_text()

  # A rerun into the same folder replaces everything and leaves nothing stale.
  embed_lib.embed_corpus(model, str(out), inputs=[str(corpus)], log=lambda line: None)
  assert sorted(os.listdir(out)) == sorted(os.listdir(runs['file']))


def test_query_clip_is_the_mean_of_its_windows(model, corpus, tmp_path):
  path = str(corpus / 'S_1.wav')
  for context in embed_lib.CONTEXTS:
    config = embed_lib.EmbedConfig(embedding='lstm', context=context)
    query, count = embed_lib.embed_clip(model, path, config)
    images = embed_lib.audio_windows(path, TRANSFORM).stored
    np.testing.assert_allclose(
        query, embed_lib.embed_windows(model, images, context).mean(axis=0), atol=1e-6)
    assert count == 3
  short = write_wav(tmp_path / 'call.wav', tone(2000, 1.2, 16000), 16000)
  assert embed_lib.embed_clip(model, short)[1] == 1  # Zero-padded to one window.


def test_rank_by_query_in_blocks():
  rng = np.random.default_rng(0)
  embeddings = rng.normal(size=(50, 4)).astype(np.float32)
  embeddings[7] = 0.0
  query = embeddings[12] * 3
  rows, scores = embed_lib.rank_by_query(embeddings, query, top_k=10, block_rows=8)
  cosine = embeddings @ query / np.maximum(
      np.linalg.norm(embeddings, axis=1) * np.linalg.norm(query), 1e-30)
  assert list(rows) == list(np.argsort(-cosine, kind='stable')[:10])
  assert rows[0] == 12 and scores[0] == pytest.approx(1.0)
  np.testing.assert_allclose(scores, cosine[rows], rtol=1e-6)


@pytest.mark.slow
def test_cli_query_ranks_its_own_window_first(cli_runs, corpus):
  result, tmp = cli_runs['query']
  assert result.returncode == 0, result.stderr
  assert result.stdout.startswith('embed: embedded 9 windows (16-d lstm, context window) of 3 '
                                  'files, skipped 0,')
  lines = (tmp / 'out' / 'query_ranking.tsv').read_text().splitlines()
  assert lines[0] == 'rank\tscore\tfile\tstart_s\tlabel'
  assert len(lines) == 5
  rank, score, file, start_s, label = lines[1].split('\t')
  assert (rank, file, start_s, label) == ('1', str(corpus / 'S_1.wav'), '3', 'S1')
  # Not exactly 1: the clip's edge frames see zeros where the file has its neighbours.
  assert float(score) == pytest.approx(1.0, abs=0.02)
  shown = result.stdout.splitlines()[2].split()  # The first ranked window.
  assert shown[:3] == ['1', f'{float(score):.4f}', file] and shown[-1] == 'S1'
  assert '[3/3 files]' in result.stderr


def test_real_call_clips(model, shared_data, tmp_path):
  names = ['S_1.wav', 'S_33_a.wav', 'S_6_b.wav', 'L_S_6_maybe.wav', 'S_45_a.wav']
  clips = [os.path.join(shared_data, 'orcasound', 'clips', n) for n in names]
  out = tmp_path / 'out'
  lines = []
  summary = embed_lib.embed_corpus(model, str(out), inputs=clips, query=clips[2],
                                   log=lines.append)
  assert (summary.files, summary.skipped) == (5, 0), lines
  embeddings, rows = read_outputs(out)
  assert np.isfinite(embeddings).all()
  assert [(os.path.basename(r[0]), r[2]) for r in rows if r[1] == '0'] == list(
      zip(names, ['S1', 'S33', 'S6', 'S6', 'S45']))
  assert not any(line.startswith('skipping') for line in lines)
  # A query clip from the corpus finds itself: its windows are embedded identically.
  best = summary.ranking[0]
  assert (os.path.basename(best.file), best.start_s) == ('S_6_b.wav', '0')
  assert best.score == pytest.approx(1.0, abs=1e-6)


def test_bad_files_are_reported_once_and_skipped(model, tmp_path):
  folder = tmp_path / 'audio'
  folder.mkdir()
  bad = make_bad_files(folder)
  del bad['notes.txt']  # A folder contributes only audio extensions.
  del bad['short.wav']  # Kept: --pad_short is on by default.
  lines = []
  summary = embed_lib.embed_corpus(model, str(tmp_path / 'out'), inputs=[str(folder)],
                                   log=lines.append)
  assert (summary.files, summary.skipped, summary.windows) == (1, 4, 1)
  for name in bad:
    reported = [line for line in lines if name in line]
    assert len(reported) == 1 and reported[0].startswith('skipping '), (name, lines)

  (folder / 'short.wav').unlink()
  with pytest.raises(embed_lib.NothingEmbeddedError, match='no file was embedded'):
    embed_lib.embed_corpus(model, str(tmp_path / 'none'), inputs=[str(folder)],
                           log=lambda line: None)
  assert not (tmp_path / 'none').exists()
  empty = tmp_path / 'records'  # Every file skipped: a manifest without files.
  prepare_tfrecords.make_tfrecords(
      [str(folder)], str(empty), prepare_tfrecords.PrepareConfig(transform=TRANSFORM),
      log=lambda line: None)
  with pytest.raises(embed_lib.NothingEmbeddedError, match='holds no windows'):
    embed_lib.embed_corpus(model, str(tmp_path / 'none'), tfrecord_dir=str(empty),
                           log=lambda line: None)
  assert not (tmp_path / 'none').exists()


@pytest.mark.parametrize('kwargs, message', [
    ({'config': {'top_k': 0}}, '--top_k must be at least 1'),
    ({'config': {'context': 'song'}}, '--context must be one of file, window'),
    ({'config': {'channel': 'left'}}, "--channel must be 'mix' or a channel index"),
    ({'inputs': []}, 'nothing to embed'),
    ({'query': '{tmp}/missing.wav'}, '--query {tmp}/missing.wav: cannot read'),
    ({'output_dir': '{corpus}/S_1.wav'}, '--output_dir {corpus}/S_1.wav: exists and is '
                                         'not a folder'),
])
def test_usage_errors_come_before_any_output(model, corpus, tmp_path, kwargs, message):
  def fill(text):
    return text.format(tmp=tmp_path, corpus=corpus)

  args = {'output_dir': str(tmp_path / 'out'), 'inputs': [str(corpus)]}
  args.update({k: fill(v) if isinstance(v, str) else v for k, v in kwargs.items()})
  with pytest.raises(embed_lib.UsageError, match='^' + re.escape(fill(message))):
    if isinstance(args.get('config'), dict):
      args['config'] = embed_lib.EmbedConfig(**args['config'])
    embed_lib.embed_corpus(model, log=lambda line: None, **args)
  assert not (tmp_path / 'out').exists()


@pytest.mark.slow
@pytest.mark.parametrize('case, message', [
    ('generator', 'error: --model {generator} is a generator SavedModel; expected a '
                  'discriminator'),
    ('not_saved_model', 'error: --model {tmp}: not an orca_gan SavedModel (no '
                        'saved_model.pb)'),
    ('empty_folder', 'error: --input: no audio files'),
    ('other_transform', 'error: --tfrecords {tmp}/records was made with another '
                        'transform than the model {discriminator} was trained on '
                        '(image_size 16 vs 32;'),
])
def test_cli_bad_input_fails_before_any_output(cli_runs, exported, case, message):
  result, tmp = cli_runs[case]
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1, lines
  assert lines[0].startswith(message.format(tmp=tmp, **exported)), lines
  assert not (tmp / 'out').exists()


def test_pooled_embedding_is_per_window_and_named_in_errors(model, corpus, tmp_path):
  clip = embed_lib.audio_windows(str(corpus / 'S_1.wav'), TRANSFORM)
  size = embed_lib.embedding_size(model, 'conv_time_mean')
  both = [embed_lib.embed_windows(model, clip.stored, context, embedding='conv_time_mean')
          for context in embed_lib.CONTEXTS]
  assert both[0].shape == (WINDOWS['S_1.wav'], size)
  np.testing.assert_array_equal(both[0], both[1])     # No state: context is moot.
  # The last window alone gets what it gets inside the file.
  np.testing.assert_allclose(
      embed_lib.embed_windows(model, clip.stored[-1:], embedding='conv_time_mean')[0],
      both[0][-1], rtol=0, atol=1e-6)
  assert 'conv_grid' in embed_lib.embedding_names(model)
  with pytest.raises(embed_lib.UsageError, match='--embedding conv9: the model offers '
                     'lstm, conv0_time_mean'):
    embed_lib.embed_corpus(model, str(tmp_path / 'out'), inputs=[str(corpus)],
                           config=embed_lib.EmbedConfig(embedding='conv9'),
                           log=lambda line: None)
  assert not (tmp_path / 'out').exists()


def test_default_embedding_is_the_second_to_last_blocks_mean_and_std(model, corpus,
                                                                     tmp_path):
  # TINY_MODEL's 32-px windows go through 3 blocks (128 px: 5, conv3_time_mean_std).
  assert embed_lib.default_embedding(model) == 'conv1_time_mean_std'
  summary = embed_lib.embed_corpus(model, str(tmp_path / 'out'),
                                   inputs=[str(corpus / 'S_1.wav')],
                                   query=str(corpus / 'S_1.wav'), log=lambda line: None)
  assert summary.embedding == 'conv1_time_mean_std'
  clip = embed_lib.audio_windows(str(corpus / 'S_1.wav'), TRANSFORM)
  expected = embed_lib.embed_windows(model, clip.stored, embedding='conv1_time_mean_std')
  np.testing.assert_allclose(np.load(tmp_path / 'out' / 'embeddings.npy'), expected,
                             rtol=0, atol=1e-6)
  # A query clip is the mean of its windows' default embeddings.
  query, _ = embed_lib.embed_clip(model, str(corpus / 'S_1.wav'))
  np.testing.assert_allclose(query, expected.mean(axis=0), rtol=0, atol=1e-6)
  # Models exported before statistics pooling, and before pooled features (stand-ins:
  # this code cannot export them any more).
  older = types.SimpleNamespace(model_config=TINY, signatures={'features': (
      types.SimpleNamespace(structured_outputs={'conv0_time_mean': 0,
                                                'conv1_time_mean': 0}))})
  assert embed_lib.default_embedding(older) == 'conv1_time_mean'
  oldest = types.SimpleNamespace(model_config=TINY, signatures={})
  assert embed_lib.default_embedding(oldest) == 'lstm'


def test_short_clip_fills_the_uncovered_columns():
  image = np.zeros([1, 4, 8], np.uint8)
  image[0, :, :3] = [[10, 20, 30], [40, 50, 60], [70, 80, 90], [5, 6, 7]]
  # 1.1 s of a 3 s window covers ceil(8 * 1.1 / 3) = 3 columns.
  np.testing.assert_array_equal(
      embed_lib.fill_short_window(image, 1.1, 3.0, 'zeros'), image)
  tiled = embed_lib.fill_short_window(image, 1.1, 3.0, 'tile')
  np.testing.assert_array_equal(tiled[0, 0], [10, 20, 30, 10, 20, 30, 10, 20])
  floor = embed_lib.fill_short_window(image, 1.1, 3.0, 'noise_floor')
  np.testing.assert_array_equal(floor[0, :, 3:], np.repeat([[10], [40], [70], [5]], 5, 1))
  np.testing.assert_array_equal(floor[0, :, :3], image[0, :, :3])


def test_short_clip_mode_reaches_the_windows(model, tmp_path):
  clip = write_wav(tmp_path / 'S_2.wav', tone(1000, 1.0, 16000), 16000)
  zeros = embed_lib.audio_windows(clip, TRANSFORM)
  tiled = embed_lib.audio_windows(clip, TRANSFORM, short_clip='tile')
  covered = int(np.ceil(TRANSFORM.image_size / 3))
  np.testing.assert_array_equal(zeros.stored[0, :, :covered],
                                tiled.stored[0, :, :covered])
  assert zeros.stored[0, :, -1].max() == 0 and tiled.stored[0, :, -1].max() > 0
  with pytest.raises(embed_lib.UsageError, match='--short_clip must be one of zeros, '
                     'tile, noise_floor'):
    embed_lib.EmbedConfig(short_clip='mirror')


def test_hostile_folder_embeds_every_usable_file(model, tmp_path):
  paths = hostile_folder(str(tmp_path / 'audio'))
  lines = []
  summary = embed_lib.embed_corpus(model, str(tmp_path / 'out'),
                                   inputs=[str(tmp_path / 'audio')], log=lines.append)
  assert (summary.files, summary.skipped) == (4, 2), lines
  skipped = sorted(line for line in lines if line.startswith('skipping'))
  assert skipped[0] == f'skipping {paths["nan"]}: ' + skipped[0].split(': ', 1)[1]
  assert skipped[1] == f'skipping {paths["fifo"]}: not a regular file (a named pipe)'
  files = {line.split('\t')[0] for line in
           (tmp_path / 'out' / embed_lib.METADATA_TSV).read_text().splitlines()[1:]}
  assert os.path.join(str(tmp_path / 'audio'), r'caf\xe9.wav') in files
  assert len(files) == 4


@pytest.mark.parametrize('how', ['flip', 'truncate'])
def test_damaged_shard_is_named_and_nothing_written(model, corpus, tmp_path, how):
  records_dir = tmp_path / 'records'
  prepare_tfrecords.make_tfrecords(
      [str(corpus)], str(tmp_path / 'good'),
      prepare_tfrecords.PrepareConfig(transform=TRANSFORM), log=lambda line: None)
  shard = damaged_records(str(tmp_path / 'good'), str(records_dir), how)
  with pytest.raises(records.CorruptShardError,
                     match=f'^{re.escape(shard)}: corrupt or truncated shard'):
    embed_lib.embed_corpus(model, str(tmp_path / 'out'), tfrecord_dir=str(records_dir),
                           log=lambda line: None)
  assert not (tmp_path / 'out').exists()


def test_a_second_writer_is_refused(model, corpus, tmp_path):
  out = tmp_path / 'out'
  with fileio.lock_folder(str(out), '--output_dir', 'embed'):
    with pytest.raises(fileio.OutputError, match=f'in use by another process '
                       rf'\(embed, pid {os.getpid()}\)'):
      embed_lib.embed_corpus(model, str(out), inputs=[str(corpus)],
                             log=lambda line: None)
    assert os.listdir(out) == [fileio.LOCK_FILE]
  assert not out.exists()
