"""Synthetic speech for the built-in talking head: voiced syllables with vowel formants and pauses.

Each syllable is a harmonic source (f0 ~ 120 Hz with intonation) shaped by three formant
resonances of a random vowel and by an attack/decay envelope; pauses of random length separate
syllables and words. The mouth openness of a video frame is the normalised, smoothed amplitude
envelope of this signal around the frame's time, so the audio fully determines the mouth.
"""

from dataclasses import dataclass
from typing import Tuple

import numpy as np

RATE = 16000
FPS = 25

# (F1, F2, F3) in Hz of a few vowels (adult male averages).
VOWELS = np.array([
    [730, 1090, 2440],  # a
    [530, 1840, 2480],  # e
    [270, 2290, 3010],  # i
    [570, 840, 2410],  # o
    [300, 870, 2240],  # u
    [660, 1720, 2410],  # ae
], dtype=np.float64)


@dataclass
class Speech:
    samples: np.ndarray  # (T,) float32 in [-1, 1] at 16 kHz
    envelope: np.ndarray  # (T,) float32 amplitude envelope in [0, 1]


def _formant_gain(freqs: np.ndarray, formants: np.ndarray, bandwidth: float = 90.0) -> np.ndarray:
    gain = np.zeros_like(freqs)
    for k, f in enumerate(formants):
        gain += (0.7**k) / (1.0 + ((freqs - f) / bandwidth) ** 2)
    return gain


def synthesize_speech(seconds: float, rng: np.random.Generator) -> Speech:
    """Random syllables and pauses filling ``seconds`` of 16 kHz audio."""
    total = int(round(seconds * RATE))
    samples = np.zeros(total, dtype=np.float64)
    envelope = np.zeros(total, dtype=np.float64)
    t = int(0.3 * RATE)  # short lead-in of silence
    while t < total:
        n_syllables = rng.integers(2, 6)  # a "word"
        for _ in range(n_syllables):
            length = int(rng.uniform(0.12, 0.32) * RATE)
            if t + length >= total:
                break
            tt = np.arange(length) / RATE
            f0 = rng.uniform(100, 140) * (1.0 + 0.08 * np.sin(2 * np.pi * rng.uniform(1, 3) * tt))
            phase = 2 * np.pi * np.cumsum(f0) / RATE
            vowel = VOWELS[rng.integers(len(VOWELS))]
            n_harm = int(3800 // f0.max())
            harm = np.arange(1, n_harm + 1)
            gains = _formant_gain(harm[:, None] * f0.mean(), vowel)[:, 0]
            voiced = (gains[:, None] * np.sin(harm[:, None] * phase[None, :])).sum(0)
            voiced /= np.abs(voiced).max() + 1e-9
            # Attack/decay envelope; louder for open vowels (high F1) like a real jaw.
            loudness = 0.5 + 0.5 * (vowel[0] - 270) / (730 - 270)
            env = loudness * np.sin(np.pi * np.arange(length) / length) ** 0.7
            samples[t : t + length] += 0.6 * env * voiced
            envelope[t : t + length] = np.maximum(envelope[t : t + length], env)
            t += length + int(rng.uniform(0.02, 0.09) * RATE)
        t += int(rng.uniform(0.15, 0.6) * RATE)  # pause between words
    samples += 0.002 * rng.standard_normal(total)  # faint noise floor, like a real recording
    return Speech(np.clip(samples, -1, 1).astype(np.float32), envelope.astype(np.float32))


def mouth_openness(envelope: np.ndarray, n_frames: int, smooth_s: float = 0.04) -> np.ndarray:
    """(n_frames,) openness in [0, 1]: the envelope averaged over each 40 ms video frame, smoothed."""
    per_frame = RATE // FPS
    padded = np.zeros(n_frames * per_frame, dtype=np.float64)
    m = min(len(envelope), len(padded))
    padded[:m] = envelope[:m]
    frames = padded.reshape(n_frames, per_frame).mean(1)
    k = max(1, int(round(smooth_s * FPS)))
    kernel = np.ones(2 * k + 1) / (2 * k + 1)
    smooth = np.convolve(np.pad(frames, k, mode="edge"), kernel, mode="valid")
    peak = smooth.max()
    return (smooth / peak if peak > 0 else smooth).astype(np.float32)


def blink_curve(n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """(n_frames,) eye openness in [0, 1]: open, with a ~160 ms blink every 2-5 s."""
    eye = np.ones(n_frames, dtype=np.float32)
    f = int(rng.uniform(1.0, 3.0) * FPS)
    while f < n_frames:
        for k, v in enumerate((0.5, 0.1, 0.0, 0.5)):
            if f + k < n_frames:
                eye[f + k] = v
        f += int(rng.uniform(2.0, 5.0) * FPS)
    return eye


def head_motion(n_frames: int, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Slow head motion: (n_frames, 2) yaw/pitch in degrees and (n_frames, 3) translation."""
    t = np.arange(n_frames) / FPS
    angles = np.stack([3.0 * np.sin(2 * np.pi * t / rng.uniform(5, 9) + rng.uniform(0, 6)),
                       2.0 * np.sin(2 * np.pi * t / rng.uniform(4, 8) + rng.uniform(0, 6))], -1)
    shift = 0.006 * np.stack([np.sin(2 * np.pi * t / rng.uniform(6, 10) + rng.uniform(0, 6)) for _ in range(3)], -1)
    return angles.astype(np.float32), shift.astype(np.float32)
