"""Synthetic hydrophone scenes: a stand-in for killer-whale tapes from the Orchive.

`make demo` uses `make_demo_corpus` when the user gives no audio, and tests use
`synthesize_scene` as input with known ground truth. A scene mixes what real Orchive
tapes contain, each ingredient drawn from its own private function with parameters from
one `np.random.default_rng(seed)`, so a seed always gives the same scene:

* Killer-whale whistles: smooth frequency-modulated tones (fundamental centred at
  2.5 - 6.5 kHz, sweeping up to 2 kHz either way, within 1.5 - 9 kHz; 0.5 - 3 s), some
  warbling, with 1 - 3 harmonics (the fundamental included) at decreasing amplitude.
* Pulsed calls: a coherent train of short band-limited pulses whose repetition rate
  (200 - 2000 Hz) sweeps, giving the sideband structure of stereotyped calls; half of
  them carry a high-frequency component (a tone at 5 - 9 kHz).
* Echolocation click trains (1 - 5 s): Gabor clicks of about 0.15 - 0.35 ms at 44.1 kHz
  (longer at lower rates), broadband from 0.5 - 3 kHz up to near the Nyquist frequency,
  with an inter-click interval of 20 - 200 ms that drifts.
* Boat passages (at most one starting in any minute; 10 s up to 2 minutes, or the whole
  of a shorter scene): brown noise (flat up to 100 - 500 Hz, then -6 dB/octave) plus
  engine lines at 50 - 500 Hz with Doppler shift, amplitude-modulated at the propeller
  blade rate (3 - 20 Hz), fading in and out around the closest point of approach.
* Researchers' speech: glottal pulse trains (f0 90 - 250 Hz with jitter and a
  declining intonation contour) through three formant resonators, syllables of
  100 - 300 ms with a vowel each, utterances of 1 - 4 s.
* Sea noise with a pink-ish spectrum, always present.

About one whistle or call starts every 4 s, a click train every 20 s and an utterance
every 30 s (Poisson); a boat passage starts in a minute with probability 0.7. Levels
are set against the sea noise RMS (whistles and calls 10 - 30 dB, speech 10 - 25 dB,
boats 5 - 20 dB at their closest, clicks 25 - 40 dB peak), then the scene is scaled so
that its peak is 0.9.

Each `Event` gives its band as the lowest and highest frequency where the event's own
power spectral density (measured before mixing, in 46 ms Hann frames at 44.1 kHz) is
within 30 dB of its maximum.

Output is mono 16-bit PCM, as `.wav` or `.flac` (`audio_io.write_audio`).
"""

import dataclasses
import math
import os

import numpy as np

from orca_gan import audio_io
from orca_gan import configs
from orca_gan import fileio

KINDS = ('whistle', 'pulsed_call', 'clicks', 'boat', 'speech')

# Sample rates below this cannot hold the 0 - 8 kHz analysis band.
MIN_SAMPLE_RATE_HZ = 16000
# A scene at least this long holds at least one event of every kind.
FULL_SCENE_S = 30.0
# An event's band is where its power spectral density is within this of the maximum.
BAND_FLOOR_DB = 30.0
# Peak of a synthesised scene.
SCENE_PEAK = 0.9

# Mean time between event starts (Poisson), in seconds.
_MEAN_GAP_S = {'call': 4.0, 'clicks': 20.0, 'speech': 30.0}
# Probability of a boat passage starting in a minute.
_BOAT_PROBABILITY = 0.7
# Shortest event of each kind, in seconds (a boat may be shorter in a short scene).
_MIN_DURATION_S = {'whistle': 0.5, 'pulsed_call': 0.5, 'clicks': 1.0, 'boat': 10.0,
                   'speech': 1.0}
# Level of each kind relative to the unit-RMS sea noise, in dB: RMS for all kinds but
# clicks (peak), and for boats the RMS at the closest point of approach.
_LEVEL_DB = {'whistle': (10.0, 30.0), 'pulsed_call': (10.0, 30.0),
             'clicks': (25.0, 40.0), 'boat': (5.0, 20.0), 'speech': (10.0, 25.0)}

_WAV_HEADER_BYTES = 44
_EVENTS_TSV = 'events.tsv'
_EVENTS_HEADER = ('file', 'kind', 'start_s', 'end_s', 'low_hz', 'high_hz')

# Formants (F1, F2, F3) in Hz of a few vowels of an adult male voice.
_VOWELS_HZ = ((270.0, 2290.0, 3010.0), (530.0, 1840.0, 2480.0), (730.0, 1090.0, 2440.0),
              (570.0, 840.0, 2410.0), (300.0, 870.0, 2240.0), (660.0, 1720.0, 2410.0),
              (640.0, 1190.0, 2390.0))


@dataclasses.dataclass(frozen=True)
class Event:
  """One sound source placed in a scene (ground truth).

  Attributes:
    kind: One of `KINDS`: 'whistle', 'pulsed_call', 'clicks', 'boat', 'speech'.
    start_s: Start time in seconds from the beginning of the scene.
    end_s: End time in seconds (exclusive).
    low_hz: Lowest frequency with substantial energy of the event (its power spectral
      density within `BAND_FLOOR_DB` of its maximum).
    high_hz: Highest such frequency.
  """
  kind: str
  start_s: float
  end_s: float
  low_hz: float
  high_hz: float


# --------------------------------------------------------------------------------------
# Signal helpers.


def _fast_length(n: int) -> int:
  """Smallest 2^a 3^b 5^c >= n: a length numpy's FFT handles quickly."""
  best = 1 << max(0, int(n - 1).bit_length())
  power5 = 1
  while power5 < best:
    power35 = power5
    while power35 < best:
      length = power35
      while length < n:
        length *= 2
      best = min(best, length)
      power35 *= 3
    power5 *= 5
  return best


def _taper(num_samples: int, ramp_samples: float) -> np.ndarray:
  """Envelope of ones with raised-cosine ramps from and to zero at both ends."""
  envelope = np.ones(num_samples)
  ramp_samples = min(int(ramp_samples), num_samples // 2)
  if ramp_samples > 0:
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp_samples) + 0.5) / ramp_samples)
    envelope[:ramp_samples] = ramp
    envelope[-ramp_samples:] = ramp[::-1]
  return envelope


def _smooth_contour(rng: np.random.Generator, num_samples: int,
                    max_order: int = 4) -> np.ndarray:
  """A random smooth curve over `num_samples` points with largest magnitude one.

  A sum of Legendre polynomials of order 1 .. (random, at most `max_order`) with random
  weights, higher orders weaker.
  """
  order = int(rng.integers(1, max_order + 1))
  coefficients = np.concatenate(
      [[0.0], rng.standard_normal(order) / np.sqrt(np.arange(1, order + 1))])
  u = np.linspace(-1.0, 1.0, num_samples)
  curve = np.polynomial.legendre.legval(u, coefficients)
  peak = np.max(np.abs(curve)) if num_samples else 0.0
  return curve / peak if peak > 0 else curve


def _coloured_noise(rng: np.random.Generator, num_samples: int, sample_rate_hz: int,
                    amplitude) -> np.ndarray:
  """Gaussian noise of unit RMS whose amplitude spectrum is `amplitude(freqs_hz)`."""
  fft_length = _fast_length(max(num_samples, 2))
  freqs_hz = np.fft.rfftfreq(fft_length, 1.0 / sample_rate_hz)
  spectrum = (rng.standard_normal(freqs_hz.size) +
              1j * rng.standard_normal(freqs_hz.size)) * amplitude(freqs_hz)
  noise = np.fft.irfft(spectrum, fft_length)[:num_samples]
  noise -= noise.mean()
  return noise / max(float(np.sqrt(np.mean(noise**2))), 1e-30)


def _gabor_train(num_samples: int, times_samples: np.ndarray, amplitudes: np.ndarray,
                 phases: np.ndarray, centre_hz: float, width_hz: float,
                 sample_rate_hz: int) -> np.ndarray:
  """Sum of Gabor pulses (Gaussian-windowed cosines) at fractional sample times.

  Args:
    num_samples: Length of the output.
    times_samples: Pulse centres in (fractional) samples, shape [pulses].
    amplitudes: Peak amplitude of each pulse, shape [pulses].
    phases: Carrier phase of each pulse at its centre, radians, shape [pulses].
    centre_hz: Carrier frequency.
    width_hz: Standard deviation of the pulse's magnitude spectrum around the carrier.
    sample_rate_hz: Sample rate.

  Returns:
    float64 array, shape [num_samples].
  """
  sigma_s = 1.0 / (2.0 * np.pi * width_hz)
  half = int(math.ceil(4.0 * sigma_s * sample_rate_hz))
  offsets = np.arange(-half, half + 1)
  base = np.floor(times_samples).astype(np.int64)
  lag_s = (offsets[None, :] - (times_samples - base)[:, None]) / sample_rate_hz
  values = (amplitudes[:, None] * np.exp(-0.5 * (lag_s / sigma_s)**2) *
            np.cos(2.0 * np.pi * centre_hz * lag_s + phases[:, None]))
  index = base[:, None] + offsets[None, :]
  inside = (index >= 0) & (index < num_samples)
  return np.bincount(index[inside], weights=values[inside], minlength=num_samples)


def _crossing_times(rate_hz: np.ndarray, sample_rate_hz: int) -> np.ndarray:
  """Times (fractional samples) at which a train of instantaneous rate `rate_hz` fires."""
  cycles = np.cumsum(rate_hz) / sample_rate_hz
  if cycles.size == 0 or cycles[-1] < 1.0:
    return np.zeros(0)
  index = np.arange(1, int(np.floor(cycles[-1])) + 1)
  return np.interp(index, cycles, np.arange(cycles.size, dtype=np.float64))


def _unit_rms(x: np.ndarray) -> np.ndarray:
  rms = float(np.sqrt(np.mean(x**2))) if x.size else 0.0
  return x / rms if rms > 0 else x


def _band_edges_hz(x: np.ndarray, sample_rate_hz: int) -> tuple[float, float]:
  """Lowest and highest frequency where the PSD of `x` is within BAND_FLOOR_DB of max."""
  frame = 1 << max(8, int(math.ceil(math.log2(0.04 * sample_rate_hz))))
  if x.size < frame:
    x = np.pad(x, (0, frame - x.size))
  frames = np.lib.stride_tricks.sliding_window_view(x, frame)[::frame // 2]
  window = np.hanning(frame + 1)[:frame]
  power = np.zeros(frame // 2 + 1)
  for chunk in range(0, frames.shape[0], 512):  # Bounded memory for long boats.
    spectrum = np.fft.rfft(frames[chunk:chunk + 512] * window, axis=-1)
    power += np.sum(spectrum.real**2 + spectrum.imag**2, axis=0)
  keep = np.nonzero(power >= power.max() * 10.0**(-BAND_FLOOR_DB / 10.0))[0]
  bin_hz = sample_rate_hz / frame
  return float(keep[0] * bin_hz), float(keep[-1] * bin_hz)


# --------------------------------------------------------------------------------------
# Ingredients. Each returns a float64 waveform at reference level 1 (see `_LEVEL_DB`).


def _sea_noise(rng: np.random.Generator, num_samples: int,
               sample_rate_hz: int) -> np.ndarray:
  """Background sea noise: Gaussian, pink-ish above a knee, unit RMS."""
  knee_hz = rng.uniform(200.0, 1000.0)
  slope = rng.uniform(0.8, 1.6)  # Power falls as f^-slope above the knee.

  def amplitude(freqs_hz):
    highpass = (freqs_hz / 20.0)**2 / (1.0 + (freqs_hz / 20.0)**2)
    return highpass / np.sqrt(1.0 + (freqs_hz / knee_hz)**slope)

  return _coloured_noise(rng, num_samples, sample_rate_hz, amplitude)


def _whistle(rng: np.random.Generator, sample_rate_hz: int,
             max_duration_s: float) -> np.ndarray:
  """A killer-whale whistle: smooth FM tone with harmonics, unit RMS."""
  num_samples = int(round(min(rng.uniform(0.5, 3.0), max_duration_s) * sample_rate_hz))
  top_hz = min(9000.0, 0.42 * sample_rate_hz)
  centre_hz = rng.uniform(2500.0, min(6500.0, top_hz - 500.0))
  extent_hz = rng.uniform(200.0, 2000.0)
  f0_hz = centre_hz + extent_hz * _smooth_contour(rng, num_samples)
  if rng.random() < 0.3:  # Some whistles warble.
    rate_hz = rng.uniform(4.0, 15.0)
    f0_hz += rng.uniform(50.0, 250.0) * np.sin(
        2.0 * np.pi * rate_hz * np.arange(num_samples) / sample_rate_hz +
        rng.uniform(0.0, 2.0 * np.pi))
  f0_hz = np.clip(f0_hz, 1500.0, top_hz)
  phase = 2.0 * np.pi * np.cumsum(f0_hz) / sample_rate_hz
  num_harmonics = int(rng.integers(1, 4))
  ratio = rng.uniform(0.15, 0.5)
  offsets = rng.uniform(0.0, 2.0 * np.pi, num_harmonics)
  x = np.zeros(num_samples)
  for h in range(1, num_harmonics + 1):
    if h * f0_hz.max() < 0.45 * sample_rate_hz:
      x += ratio**(h - 1) * np.sin(h * phase + offsets[h - 1])
  x *= 1.0 + 0.25 * _smooth_contour(rng, num_samples, 3)
  x *= _taper(num_samples, rng.uniform(0.02, 0.1) * sample_rate_hz)
  return _unit_rms(x)


def _pulsed_call(rng: np.random.Generator, sample_rate_hz: int,
                 max_duration_s: float) -> np.ndarray:
  """A stereotyped pulsed call: sweeping pulse train (+ high-frequency tone), unit RMS."""
  num_samples = int(round(min(rng.uniform(0.5, 1.5), max_duration_s) * sample_rate_hz))
  start_rate_hz = math.exp(rng.uniform(math.log(300.0), math.log(1200.0)))
  log_extent = rng.uniform(0.1, 0.7)
  rate_hz = start_rate_hz * np.exp(log_extent * _smooth_contour(rng, num_samples))
  rate_hz = np.clip(rate_hz, 200.0, 2000.0)
  # A carrier at least 3.5 widths above 0 Hz keeps the pulses free of DC.
  width_hz = rng.uniform(400.0, min(1200.0, 0.05 * sample_rate_hz))
  centre_hz = rng.uniform(max(1500.0, 3.5 * width_hz),
                          min(5000.0, 0.42 * sample_rate_hz - 2.7 * width_hz))
  times = _crossing_times(rate_hz, sample_rate_hz)
  shimmer = np.exp(0.1 * rng.standard_normal(times.size))
  phases = np.full(times.size, rng.uniform(0.0, 2.0 * np.pi))  # Coherent pulses.
  x = _gabor_train(num_samples, times, shimmer, phases, centre_hz, width_hz,
                   sample_rate_hz)
  x = _unit_rms(x)
  if rng.random() < 0.5:  # High-frequency component, a separate slowly sweeping tone.
    hfc_hz = rng.uniform(5000.0, min(9000.0, 0.42 * sample_rate_hz)) * (
        1.0 + 0.06 * _smooth_contour(rng, num_samples, 2))
    hfc_hz = np.minimum(hfc_hz, 0.45 * sample_rate_hz)
    x += rng.uniform(0.1, 0.4) * np.sqrt(2.0) * np.sin(
        2.0 * np.pi * np.cumsum(hfc_hz) / sample_rate_hz)
  x *= 1.0 + 0.3 * _smooth_contour(rng, num_samples, 3)
  x *= _taper(num_samples, rng.uniform(0.02, 0.06) * sample_rate_hz)
  return _unit_rms(x)


def _clicks(rng: np.random.Generator, sample_rate_hz: int,
            max_duration_s: float) -> np.ndarray:
  """An echolocation click train, peak 1."""
  num_samples = int(round(min(rng.uniform(1.0, 5.0), max_duration_s) * sample_rate_hz))
  interval_s = math.exp(rng.uniform(math.log(0.02), math.log(0.2)))
  interval_s = np.clip(interval_s * np.exp(
      rng.uniform(-0.6, 0.6) * np.linspace(-1.0, 1.0, num_samples)), 0.02, 0.2)
  times = _crossing_times(1.0 / interval_s, sample_rate_hz)
  if times.size == 0:
    times = np.array([num_samples / 2.0])
  spacing = np.interp(times, np.arange(num_samples), interval_s) * sample_rate_hz
  times = times + 0.03 * spacing * rng.standard_normal(times.size)
  # The beam sweeps across the hydrophone: loudest in the middle of the train.
  position = np.clip(times / num_samples, 0.0, 1.0)
  amplitudes = (0.2 + 0.8 * np.sin(np.pi * position)) * np.exp(
      0.25 * rng.standard_normal(times.size))
  # Broadband: from 0.4 - 2.8 kHz up to 12 - 21 kHz at 44.1 kHz (the carrier is 2.8 -
  # 3.5 widths above 0 Hz, so there is no DC); 0.15 - 0.35 ms long.
  centre_hz = rng.uniform(0.15, 0.25) * sample_rate_hz
  width_hz = centre_hz / rng.uniform(2.8, 3.5)
  x = _gabor_train(num_samples, times, amplitudes,
                   rng.uniform(0.0, 2.0 * np.pi, times.size), centre_hz, width_hz,
                   sample_rate_hz)
  peak = np.max(np.abs(x))
  return x / peak if peak > 0 else x


def _boat(rng: np.random.Generator, sample_rate_hz: int,
          max_duration_s: float) -> np.ndarray:
  """A boat passage: brown noise and Doppler-shifted engine lines, unit RMS at CPA."""
  duration_s = rng.uniform(min(_MIN_DURATION_S['boat'], max_duration_s),
                           min(max_duration_s, 120.0))
  num_samples = int(round(duration_s * sample_rate_hz))
  t_s = np.arange(num_samples) / sample_rate_hz
  corner_hz = rng.uniform(100.0, 500.0)
  noise = _coloured_noise(
      rng, num_samples, sample_rate_hz,
      lambda f: (f / 20.0)**2 / (1.0 + (f / 20.0)**2) / (1.0 + f / corner_hz))
  closest_s = rng.uniform(0.3, 0.7) * duration_s
  passing_s = rng.uniform(0.1, 0.3) * duration_s
  # Engine harmonics up to 500 Hz, Doppler-shifted down as the boat passes.
  engine_hz = rng.uniform(50.0, 150.0) * (
      1.0 - rng.uniform(0.005, 0.02) * np.tanh((t_s - closest_s) / passing_s))
  rotor = np.exp(2j * np.pi * np.cumsum(engine_hz) / sample_rate_hz)
  harmonic = rotor.copy()
  tones = np.zeros(num_samples)
  for h in range(1, int(500.0 // engine_hz.max()) + 1):
    weight = h**-0.5 * math.exp(0.5 * rng.standard_normal()) * np.exp(
        1j * rng.uniform(0.0, 2.0 * np.pi))
    tones += (harmonic * weight).real
    harmonic *= rotor
  tones = _unit_rms(tones)
  blade_hz = rng.uniform(3.0, 20.0)
  depth = rng.uniform(0.2, 0.7)
  modulation = np.cos(2.0 * np.pi * blade_hz * t_s + rng.uniform(0.0, 2.0 * np.pi))
  source = (noise * (1.0 + depth * modulation) +
            rng.uniform(0.3, 1.5) * tones * (1.0 + depth / 3.0 * modulation))
  source = _unit_rms(source)
  envelope = 1.0 / np.sqrt(1.0 + ((t_s - closest_s) / passing_s)**2)
  envelope *= _taper(num_samples, min(3.0, duration_s / 4.0) * sample_rate_hz)
  return source * envelope


def _speech(rng: np.random.Generator, sample_rate_hz: int,
            max_duration_s: float) -> np.ndarray:
  """A researcher's utterance: glottal pulses through three formants, unit RMS."""
  duration_s = min(rng.uniform(1.0, 4.0), max_duration_s)
  tail = int(round(0.05 * sample_rate_hz))  # Resonators ring on after the last syllable.
  num_samples = int(round(duration_s * sample_rate_hz))
  syllables = []  # (start sample, length in samples)
  t = 0.0
  while True:
    length_s = rng.uniform(0.1, 0.3)
    if t + length_s > duration_s - 0.05:
      break
    syllables.append((int(round(t * sample_rate_hz)),
                      int(round(length_s * sample_rate_hz))))
    t += length_s + rng.uniform(0.02, 0.12)
  if not syllables:
    syllables.append((0, int(round(min(0.1, duration_s) * sample_rate_hz))))

  # Intonation: declination over the utterance plus an accent bump on each syllable.
  u = np.arange(num_samples) / num_samples
  f0_hz = rng.uniform(90.0, 250.0) * (1.0 - rng.uniform(0.05, 0.25) * u)
  highpass_hz = 0.6 * f0_hz.min()
  for start, length in syllables:
    accent = rng.uniform(-0.05, 0.15)
    f0_hz[start:start + length] *= 1.0 + accent * np.sin(
        np.pi * np.arange(length) / length)
  times = _crossing_times(f0_hz, sample_rate_hz)
  period = sample_rate_hz / np.interp(times, np.arange(num_samples), f0_hz)
  times = times + 0.01 * period * rng.standard_normal(times.size)  # Jitter.
  index = np.clip(np.round(times).astype(np.int64), 0, num_samples - 1)
  excitation = np.bincount(index, weights=np.exp(0.06 * rng.standard_normal(times.size)),
                           minlength=num_samples)

  speaker = rng.uniform(0.9, 1.2)  # Shorter vocal tracts have higher formants.
  bandwidths_hz = (rng.uniform(50.0, 100.0), rng.uniform(70.0, 130.0),
                   rng.uniform(100.0, 200.0))
  out = np.zeros(num_samples + tail)
  for start, length in syllables:
    vowel = _VOWELS_HZ[int(rng.integers(len(_VOWELS_HZ)))]
    formants_hz = [f * speaker * rng.uniform(0.95, 1.05) for f in vowel]
    segment = excitation[start:start + length] * _taper(length, 0.02 * sample_rate_hz)
    fft_length = _fast_length(length + tail)
    freqs_hz = np.fft.rfftfreq(fft_length, 1.0 / sample_rate_hz)
    delay = np.exp(-2j * np.pi * freqs_hz / sample_rate_hz)  # z^-1 on the unit circle.
    # Glottal source and lip radiation: -6 dB/octave above 150 Hz, nothing below f0.
    highpass = (freqs_hz / highpass_hz)**2
    response = (highpass / (1.0 + highpass) /
                np.sqrt(1.0 + (freqs_hz / 150.0)**2)).astype(np.complex128)
    for formant_hz, bandwidth_hz in zip(formants_hz, bandwidths_hz):
      # Two-pole resonator 1 / (1 - 2 r cos(theta) z^-1 + r^2 z^-2), unit gain at DC.
      r = math.exp(-math.pi * bandwidth_hz / sample_rate_hz)
      c = 2.0 * r * math.cos(2.0 * math.pi * formant_hz / sample_rate_hz)
      response *= (1.0 - c + r * r) / (1.0 - c * delay + r * r * delay * delay)
    filtered = np.fft.irfft(np.fft.rfft(segment, fft_length) * response, fft_length)
    out[start:start + length + tail] += filtered[:length + tail]
  return _unit_rms(out)


_INGREDIENTS = {'whistle': _whistle, 'pulsed_call': _pulsed_call, 'clicks': _clicks,
                'boat': _boat, 'speech': _speech}


def _schedule(rng: np.random.Generator, duration_s: float) -> list[tuple[str, float]]:
  """Start times of the events of a scene, as sorted (kind, start_s) pairs."""
  def min_duration_s(kind):
    return min(_MIN_DURATION_S[kind], duration_s) if kind == 'boat' else (
        _MIN_DURATION_S[kind])

  placements = []
  for group, kinds in (('call', ('whistle', 'pulsed_call')), ('clicks', ('clicks',)),
                       ('speech', ('speech',))):
    t = rng.exponential(_MEAN_GAP_S[group])
    while t < duration_s:
      placements.append((kinds[int(rng.integers(len(kinds)))], t))
      t += rng.exponential(_MEAN_GAP_S[group])
  # Boats: at most one passage starting in any 60 s.
  earliest_s = 0.0
  for minute in range(int(math.ceil(duration_s / 60.0))):
    low_s = max(60.0 * minute, earliest_s)
    high_s = min(60.0 * (minute + 1), duration_s - min_duration_s('boat'))
    if high_s >= low_s and rng.random() < _BOAT_PROBABILITY:
      start_s = rng.uniform(low_s, high_s)
      placements.append(('boat', start_s))
      earliest_s = start_s + 60.0
  placements = [(kind, start_s) for kind, start_s in placements
                if duration_s - start_s >= min_duration_s(kind)]
  if duration_s >= FULL_SCENE_S:
    present = {kind for kind, _ in placements}
    for kind in KINDS:
      if kind not in present:
        placements.append((kind, rng.uniform(0.0, duration_s - min_duration_s(kind))))
  return sorted(placements)


# --------------------------------------------------------------------------------------
# Public API.


def synthesize_scene(duration_s: float, sample_rate_hz: int = 44100, seed: int = 0,
                     ) -> tuple[np.ndarray, list[Event]]:
  """Synthesises a hydrophone scene.

  Args:
    duration_s: Length of the scene in seconds.
    sample_rate_hz: Sample rate, at least `MIN_SAMPLE_RATE_HZ`.
    seed: Seed of `np.random.default_rng`; equal seeds give identical scenes.

  Returns:
    float32 mono audio in [-1, 1] (peak `SCENE_PEAK`), shape
    [round(duration_s * sample_rate_hz)], and the list of events placed in it (ground
    truth, sorted by start). A scene of at least `FULL_SCENE_S` holds every kind.

  Raises:
    ValueError: If the duration is not positive or the sample rate is too low.
  """
  if not duration_s > 0:
    raise ValueError(f'duration_s must be positive, got {duration_s}')
  if sample_rate_hz < MIN_SAMPLE_RATE_HZ:
    raise ValueError(f'sample_rate_hz must be at least {MIN_SAMPLE_RATE_HZ} (the scene '
                     f'spans 0 - 8 kHz), got {sample_rate_hz}')
  num_samples = int(round(duration_s * sample_rate_hz))
  if num_samples == 0:
    raise ValueError(f'duration_s = {duration_s} is shorter than one sample')
  rng = np.random.default_rng(seed)
  scene = _sea_noise(rng, num_samples, sample_rate_hz)
  events = []
  for kind, start_s in _schedule(rng, num_samples / sample_rate_hz):
    start = int(round(start_s * sample_rate_hz))
    x = _INGREDIENTS[kind](rng, sample_rate_hz, (num_samples - start) / sample_rate_hz)
    x = x[:num_samples - start]
    if not np.any(x):
      continue
    level = 10.0**(rng.uniform(*_LEVEL_DB[kind]) / 20.0)
    scene[start:start + x.size] += level * x
    low_hz, high_hz = _band_edges_hz(x, sample_rate_hz)
    events.append(Event(kind=kind, start_s=start / sample_rate_hz,
                        end_s=(start + x.size) / sample_rate_hz, low_hz=low_hz,
                        high_hz=high_hz))
  events.sort(key=lambda e: (e.start_s, e.end_s, e.kind))
  scene *= SCENE_PEAK / np.max(np.abs(scene))
  return np.clip(scene, -SCENE_PEAK, SCENE_PEAK).astype(np.float32), events


def _file_seed(seed: int, index: int) -> int:
  """Seed of scene `index` of a corpus, derived from the corpus seed."""
  return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _read_event_rows(tsv_path: str) -> dict[str, list[str]]:
  """Lines of an existing events.tsv grouped by file; empty if missing or malformed."""
  rows: dict[str, list[str]] = {}
  try:
    with open(tsv_path, encoding='utf-8') as f:
      lines = f.read().splitlines()
  except OSError:
    return rows
  if not lines or lines[0] != '\t'.join(_EVENTS_HEADER):
    return rows
  for line in lines[1:]:
    fields = line.split('\t')
    if len(fields) == len(_EVENTS_HEADER):
      rows.setdefault(fields[0], []).append(line)
  return rows


@dataclasses.dataclass(frozen=True)
class CorpusConfig:
  """Flags of bin/synthesize_scene map 1:1 to these fields (`make_demo_corpus`)."""
  output_dir: str = configs.flag('demo/audio', 'Folder for scene_NNN.wav and events.tsv.')
  num_files: int = configs.flag(3, 'Scenes to write.')
  duration_s: float = configs.flag(60.0, 'Length of each scene in seconds.')
  sample_rate_hz: int = configs.flag(44100, 'Sample rate in Hz (at least 16000).')
  seed: int = configs.flag(0, 'Seed; the same seed writes the same scenes.')


def make_demo_corpus(output_dir: str, num_files: int = 3, duration_s: float = 60.0,
                     sample_rate_hz: int = 44100, seed: int = 0) -> list[str]:
  """Writes a small corpus of synthetic scenes for the demo.

  Writes `num_files` scenes (scene_000.wav, ...; scene `i` with its own seed derived
  from `seed` and `i`) plus events.tsv (columns file, kind, start_s, end_s, low_hz,
  high_hz; file is the base name) into `output_dir`, creating it. A scene file already
  present with the right size is kept, with its rows of an existing events.tsv (if they
  are missing the scene is synthesised again to recover its events, but the file is
  left alone), so reruns are cheap; events.tsv is only rewritten if its content changes.

  Args:
    output_dir: Folder to write into.
    num_files: Number of scenes.
    duration_s: Length of each scene in seconds.
    sample_rate_hz: Sample rate of the scenes.
    seed: Corpus seed.

  Returns:
    The paths of the audio files, sorted.
  """
  if num_files < 0:
    raise ValueError(f'num_files must not be negative, got {num_files}')
  os.makedirs(output_dir, exist_ok=True)
  tsv_path = os.path.join(output_dir, _EVENTS_TSV)
  old_rows = _read_event_rows(tsv_path)
  expected_bytes = _WAV_HEADER_BYTES + 2 * int(round(duration_s * sample_rate_hz))
  lines = ['\t'.join(_EVENTS_HEADER)]
  paths = []
  for index in range(num_files):
    name = f'scene_{index:03d}.wav'
    path = os.path.join(output_dir, name)
    paths.append(path)
    kept = os.path.isfile(path) and os.path.getsize(path) == expected_bytes
    if kept and name in old_rows:
      lines.extend(old_rows[name])
      continue
    audio, events = synthesize_scene(duration_s, sample_rate_hz, _file_seed(seed, index))
    if not kept:
      audio_io.write_audio(path, audio, sample_rate_hz)
    lines.extend(f'{name}\t{e.kind}\t{e.start_s:.6f}\t{e.end_s:.6f}\t{e.low_hz:.1f}\t'
                 f'{e.high_hz:.1f}' for e in events)
  text = '\n'.join(lines) + '\n'
  try:
    with open(tsv_path, encoding='utf-8') as f:
      unchanged = f.read() == text
  except OSError:
    unchanged = False
  if not unchanged:
    with fileio.atomic_path(tsv_path) as temporary:
      with open(temporary, 'w', encoding='utf-8') as f:
        f.write(text)
  return sorted(paths)
