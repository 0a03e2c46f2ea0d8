"""The training loop behind bin/train (ddsp's `train_util.train`, for the GAN trainer).

`train` restores the newest checkpoint, then calls `GanTrainer.run` for as many steps
at a time as `--steps_per_loop` allows without passing an action's step; between calls
it does what is due: scalar summaries and the log line, the image grid, the profiler
window, a checkpoint. Metrics are read from the device only there.

Ctrl-C and SIGTERM are deferred to the end of the running call, so a checkpoint always
holds whole steps; a second signal stops at once (and saves nothing). Under
`--strategy multi_worker` a signal to one worker (a preempted machine) stops them all
at the same step, each saving it.
"""

import contextlib
import math
import os
import re
import signal
import threading
import time

import tensorflow as tf

from orca_gan import data
from orca_gan import records
from orca_gan import trainers

_GRID_SEQUENCES = 4


@contextlib.contextmanager
def deferred_interrupts():
  """SIGINT and SIGTERM set the returned event instead of raising; a second one raises
  KeyboardInterrupt at once. Outside the main thread, signals are left alone."""
  requested = threading.Event()
  if threading.current_thread() is not threading.main_thread():
    yield requested
    return

  def handler(signum, frame):
    del signum, frame
    if requested.is_set():
      raise KeyboardInterrupt
    requested.set()

  previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
  try:
    yield requested
  finally:
    for s, h in previous.items():
      signal.signal(s, h)


@contextlib.contextmanager
def _naming_a_lost_worker(config: trainers.TrainConfig):
  """Under --strategy multi_worker, a worker gone without a word (killed, its machine
  lost) aborts the others' next collective operation: say so on one line."""
  try:
    yield
  except (tf.errors.UnavailableError, tf.errors.AbortedError) as e:
    if config.strategy != 'multi_worker':
      raise
    reason = ' '.join(str(e.message).split())
    # TensorFlow names the lost task, e.g. "Task /job:worker/replica:0/task:1 heartbeat
    # timeout"; the rest of its message is a graph trace.
    task = re.search(r'Task (\S+) heartbeat timeout', reason)
    raise trainers.TrainingError(
        f'{task.group(1) if task else "another worker"} stopped without saving; '
        f'restart every worker to resume from the last checkpoint in '
        f'{config.logdir}') from e


class _Loop:
  """The periodic actions of one `train` call and the state they share."""

  def __init__(self, trainer: trainers.GanTrainer):
    self.trainer = trainer
    self.config = trainer.config
    self.step = trainer.current_step
    self.last_saved = self.step
    self.writer = tf.summary.create_file_writer(
        os.path.join(trainer.write_dir, 'train'))
    self.profile = self.config.profile_range()
    self.profiling = False  # Only a trace that was started is stopped.
    self.window_start, self.window_steps = time.monotonic(), 0
    self.metrics: dict = {}
    self._real = None

  def due(self, every: int) -> bool:
    return self.step % every == 0 or self.step == self.config.steps

  def steps_to_next_action(self) -> int:
    """Steps to run before something is due, at most --steps_per_loop."""
    config = self.config
    bounds = [config.steps, config.steps_per_loop + self.step]
    for every in (config.summary_every, config.image_every, config.save_every):
      bounds.append((self.step // every + 1) * every)
    if self.profile:
      bounds += [b for b in self.profile if b > self.step]
    return min(bounds) - self.step

  def profiler(self) -> None:
    if not self.profile:
      return
    start, stop = self.profile
    if self.step == start:
      tf.profiler.experimental.start(os.path.join(self.trainer.write_dir, 'train'))
      self.profiling = True
    elif self.step == stop and self.profiling:
      self.stop_profiler()
      self.trainer.log(f'profiler trace of steps {start}..{stop - 1} written to '
                       f'{os.path.join(self.trainer.write_dir, "train", "plugins", "profile")}')

  def stop_profiler(self) -> None:
    if self.profiling:
      tf.profiler.experimental.stop()
      self.profiling = False

  def check_finite(self) -> None:
    """Stops the run at the first step whose losses were NaN or Inf."""
    bad = self.trainer.first_non_finite()
    if bad:
      step, values = bad
      name, value = next((k, v) for k, v in values.items() if not math.isfinite(v))
      raise trainers.TrainingError(
          f'step {step}: {name} is {value}; stopped without saving it. The last good '
          f'checkpoint is {self.trainer.manager.latest_checkpoint}')

  def summaries(self) -> None:
    self.check_finite()
    elapsed = time.monotonic() - self.window_start
    metrics = self.trainer.pop_metrics()
    metrics['steps_per_s'] = self.window_steps / elapsed
    metrics['examples_per_s'] = (self.window_steps * self.config.batch_size *
                                 self.config.seq_len / elapsed)
    with self.writer.as_default(step=self.step):
      for name, value in metrics.items():
        tf.summary.scalar(name, value)
    self.trainer.log(f'step {self.step}: ' + ', '.join(
        f'{k} {v:.4g}' for k, v in sorted(metrics.items())))
    self.metrics = metrics
    self.window_start, self.window_steps = time.monotonic(), 0

  def real_sequences(self) -> tf.Tensor:
    """A few real sequences for the image grid, from a reader of their own."""
    if self._real is None:
      config = self.config
      count = min(_GRID_SEQUENCES, config.batch_size)
      self._real = data.sequence_dataset(
          config.tfrecords, count, config.seq_len, seed=config.seed,
          shuffle_buffer=1, cycle_length=count,
          manifest=self.trainer.manifest).take(1).get_single_element()
    return self._real

  def image(self) -> None:
    with self.writer.as_default(step=self.step):
      tf.summary.image('generated_top_real_bottom',
                       self.trainer.sample_images(self.real_sequences()))

  def save(self) -> None:
    if self.step > self.last_saved:
      self.check_finite()
      self.trainer.save()
      self.last_saved = self.step

  def samples_png(self) -> None:
    png = os.path.join(self.trainer.write_dir, 'samples.png')
    grid = self.trainer.sample_images(self.real_sequences())[0]
    tf.io.write_file(png, tf.io.encode_png(grid))


def train(trainer: trainers.GanTrainer) -> dict:
  """Trains up to `config.steps`; returns the metrics of the last summary.

  Raises:
    TrainingError: A loss became NaN or Inf (nothing is saved from that step on), or
      no checkpoint in the logdir is readable.
    KeyboardInterrupt: After saving a checkpoint of the last whole step (Ctrl-C or
      SIGTERM).
  """
  config = trainer.config
  trainer.restore()
  trainer.save_run_config()
  loop = _Loop(trainer)
  try:
    with (deferred_interrupts() as interrupted, records.naming_bad_shards(config.tfrecords),
          _naming_a_lost_worker(config)):
      while loop.step < config.steps:
        loop.profiler()
        count = loop.steps_to_next_action()
        trainer.run(count)
        loop.step += count
        loop.window_steps += count
        if loop.profile and loop.step == loop.profile[1]:
          loop.profiler()
        if loop.due(config.summary_every):
          loop.summaries()
        if loop.due(config.image_every):
          loop.image()
        if loop.step % config.save_every == 0:
          loop.save()
        here = interrupted.is_set()
        if trainer.stop_agreed(here):
          loop.save()
          trainer.log(f'interrupted{"" if here else " on another worker"}: saved step '
                      f'{loop.step}')
          raise KeyboardInterrupt
    loop.save()
  finally:
    loop.stop_profiler()
    loop.writer.flush()
  if loop.step > 0:
    loop.samples_png()
  return loop.metrics
