"""The naive pipeline that benchmarks/make_tfrecords_bench.py measures bin/make_tfrecords
against: each file decoded whole with tensorflow-io, resampled to 16 kHz with
`tfio.audio.resample`, an STFT and a resize to 128x128 per 3-s window, eagerly, one file
at a time. Prints one line `BASELINE_RESULT {json}`.

  .venv/bin/python benchmarks/naive_pipeline.py FILE [FILE ...]
"""

import json
import os
import sys
import time

# Geometry: 16 kHz, 3-s windows -> 128 frames.
BASE_RATE = 16000
BASE_WINDOW_S = 3.0
BASE_FRAME = 256
BASE_STEP = 375  # 48000 / 375 = 128 frames per 3-s window.
BASE_SIZE = 128


def main(files) -> None:
  """The naive pipeline, one file at a time, eagerly; prints one JSON result line."""
  t0 = time.monotonic()
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  import tensorflow as tf
  import tensorflow_io as tfio
  t_import = time.monotonic() - t0
  audio_s = 0.0
  windows = 0
  phases = {'decode_s': 0.0, 'resample_s': 0.0, 'stft_resize_s': 0.0}
  for path in files:
    # decode_mp3 does not report the sample rate; read it from the header (untimed).
    rate = int(tfio.audio.AudioIOTensor(path).rate.numpy())
    t = time.monotonic()
    audio = tfio.audio.decode_mp3(tf.io.read_file(path))  # [samples, channels] float32
    mono = tf.reduce_mean(audio, axis=1)
    mono.numpy()
    phases['decode_s'] += time.monotonic() - t
    t = time.monotonic()
    audio16 = tfio.audio.resample(mono, rate_in=rate, rate_out=BASE_RATE)
    audio16.numpy()
    phases['resample_s'] += time.monotonic() - t
    t = time.monotonic()
    stft = tf.signal.stft(audio16, frame_length=BASE_FRAME, frame_step=BASE_STEP,
                          fft_length=BASE_FRAME)               # [frames, 129]
    magnitude = tf.math.log(tf.abs(stft) + 1e-6)
    per_window = int(BASE_WINDOW_S * BASE_RATE) // BASE_STEP   # 128 frames
    count = int(magnitude.shape[0]) // per_window
    cut = tf.reshape(magnitude[:count * per_window], [count, per_window, -1])
    images = tf.transpose(cut, [0, 2, 1])[..., None]           # [w, freq, time, 1]
    images = tf.image.resize(images, [BASE_SIZE, BASE_SIZE])   # [w, 128, 128, 1]
    images.numpy()
    phases['stft_resize_s'] += time.monotonic() - t
    audio_s += int(audio.shape[0]) / rate
    windows += count
  total = time.monotonic() - t0
  print('BASELINE_RESULT ' + json.dumps(dict(phases, import_s=t_import, total_s=total,
                                             audio_s=audio_s, windows=windows,
                                             files=len(files))), flush=True)



if __name__ == '__main__':
  main(sys.argv[1:])
