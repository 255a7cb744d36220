"""Cardiac cycle of the phantom: LV contraction state and valve opening per frame.

The state `m` is 0 at end-diastole (largest cavity) and 1 at end-systole of an average beat. Each beat has
a fast ejection, a rapid early filling (E wave), a slow diastasis and an atrial kick (A wave); RR interval,
stroke amplitude and end-diastolic size vary from beat to beat (respiration plus noise).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Cycle:
    """Per-frame cardiac state of one clip, plus the continuous times of every ED and ES."""

    m: np.ndarray            # (T,) contraction state, ~0 at ED, ~1 at ES
    mitral: np.ndarray       # (T,) mitral opening 0 (closed) .. 1 (wide open)
    tricuspid: np.ndarray    # (T,) tricuspid opening
    ed_times: np.ndarray     # ED instants in frame units (may lie outside [0, T-1])
    es_times: np.ndarray     # ES instants in frame units
    heart_rate: float        # mean beats per minute


def _systole_shape(x: np.ndarray) -> np.ndarray:
    """Ejection fraction of the stroke done at x in [0,1]: zero slope at both ends, fastest early."""
    return 0.5 * (1.0 - np.cos(np.pi * np.clip(x, 0.0, 1.0) ** 0.78))


def _diastole_fill(tau: np.ndarray, td: float, e_dur: float, a_dur: float, e_share: float) -> np.ndarray:
    """Fraction of the stroke refilled tau seconds into diastole: E wave, diastasis, A wave."""
    d_share = 0.06
    a_share = 1.0 - e_share - d_share
    d_start, a_start = e_dur, td - a_dur
    e = e_share * 0.5 * (1.0 - np.cos(np.pi * np.clip(tau / e_dur, 0.0, 1.0)))
    d_len = max(a_start - d_start, 1e-6)
    d = d_share * np.clip((tau - d_start) / d_len, 0.0, 1.0)
    a = a_share * 0.5 * (1.0 - np.cos(np.pi * np.clip((tau - a_start) / a_dur, 0.0, 1.0)))
    return e + d + a


def _valve(tau: np.ndarray, td: float, e_dur: float, a_dur: float) -> np.ndarray:
    """Atrioventricular valve opening during diastole (0 in systole): opens with E, half-closes, opens with A."""
    a_start = max(td - a_dur, e_dur)
    knots = np.array([0.0, min(0.035, 0.3 * e_dur), e_dur, a_start, a_start + 0.45 * a_dur,
                      td - min(0.02, 0.2 * a_dur), td])
    knots = np.maximum.accumulate(knots + np.arange(knots.size) * 1e-9)
    values = np.array([0.0, 1.0, 0.7, 0.4, 0.85, 0.35, 0.0])
    return np.interp(tau, knots, values)


def sample_cycle(rng: np.random.Generator, n_frames: int, fps: float, heart_rate: float,
                 variability: float = 1.0) -> Cycle:
    """Simulate the cardiac cycle sampled at `fps` for `n_frames` frames."""
    rr0 = 60.0 / heart_rate
    duration = n_frames / fps
    resp_period = rng.uniform(3.0, 5.5)
    resp_phase = rng.uniform(0, 2 * np.pi)
    resp_amp = rng.uniform(0.01, 0.04) * variability
    e_share = rng.uniform(0.5, 0.8)
    # Start somewhere inside a beat so clips do not all begin at ED.
    t0 = -rng.uniform(0.0, 1.0) * rr0 - rr0
    beats = []
    m_ed_next = float(np.clip(rng.normal(0, 0.03 * variability), -0.08, 0.08))
    while t0 < duration + rr0:
        rr = rr0 * (1 + resp_amp * np.sin(2 * np.pi * t0 / resp_period + resp_phase)
                    + rng.normal(0, 0.02 * variability))
        rr = float(np.clip(rr, 0.85 * rr0, 1.15 * rr0))  # generate.MIN_BEATS relies on this bound
        amp = float(np.clip(1 + rng.normal(0, 0.05 * variability), 0.85, 1.15))
        m_ed = m_ed_next
        m_ed_next = float(np.clip(rng.normal(0, 0.03 * variability), -0.08, 0.08))
        beats.append((t0, rr, m_ed, amp, m_ed_next))
        t0 += rr

    t = np.arange(n_frames) / fps
    m = np.zeros(n_frames)
    mitral = np.zeros(n_frames)
    tricuspid = np.zeros(n_frames)
    ed_times, es_times = [], []
    for start, rr, m_ed, amp, m_next in beats:
        ts = float(np.clip(0.33 * np.sqrt(rr), 0.2, 0.6 * rr))
        td = rr - ts
        e_dur = min(0.17, 0.45 * td)
        a_dur = min(0.12, 0.35 * td)
        ed_times.append(start * fps)
        es_times.append((start + ts) * fps)
        sel = (t >= start) & (t < start + rr)
        if not sel.any():
            continue
        tau = t[sel] - start
        sys = tau < ts
        out = np.empty(tau.size)
        out[sys] = m_ed + (amp - m_ed) * _systole_shape(tau[sys] / ts)
        dtau = tau[~sys] - ts
        out[~sys] = amp - (amp - m_next) * _diastole_fill(dtau, td, e_dur, a_dur, e_share)
        m[sel] = out
        mv = np.zeros(tau.size)
        mv[~sys] = _valve(dtau, td, e_dur, a_dur)
        mitral[sel] = mv
        tv = np.zeros(tau.size)
        tv[~sys] = _valve(np.maximum(dtau - 0.015, 0.0), td, e_dur, a_dur)
        tricuspid[sel] = tv
    return Cycle(m=m, mitral=mitral, tricuspid=tricuspid, ed_times=np.array(ed_times),
                 es_times=np.array(es_times), heart_rate=float(heart_rate))
