"""Phase finding and aFD on hand-made signals whose answers are worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from echodfkd.errors import EchoDFKDError, SignalError
from echodfkd.data.check import read_corrupted
from echodfkd.evaluate.afd import afd_metrics, clip_errors, es_baseline_table, phase_table, read_signal_csv
from echodfkd.measures.phases import (afd, afd_seconds, echonet_es_frames, find_phase_frame, find_phase_frames,
                                      nearest_frame, phase_blocks)

# median 5: ES blocks (< 5) are frames 1-4 and 9-11; ED blocks (> 5) are frames 5-7 and 13-15.
TWO_BEATS = [5, 3, 1, 2, 4, 6, 8, 7, 5, 3, 0, 2, 5, 7, 9, 6]


def test_blocks_of_the_hand_made_signal():
    s, e = phase_blocks(np.array(TWO_BEATS), "ES")
    assert s.tolist() == [1, 9] and e.tolist() == [4, 11]
    s, e = phase_blocks(np.array(TWO_BEATS), "ED")
    assert s.tolist() == [5, 13] and e.tolist() == [7, 15]


@pytest.mark.parametrize("compat", ["paper", "reference"])
def test_reference_inside_a_block_picks_that_block(compat):
    assert find_phase_frame(TWO_BEATS, 3, "ES", compat) == 2      # min 1 at frame 2
    assert find_phase_frame(TWO_BEATS, 11, "ES", compat) == 10    # min 0 at frame 10
    assert find_phase_frame(TWO_BEATS, 5, "ED", compat) == 6
    assert find_phase_frame(TWO_BEATS, 15, "ED", compat) == 14


def test_reference_between_blocks_picks_the_nearest():
    assert find_phase_frame(TWO_BEATS, 8, "ES") == 10   # 4 frames from block 1, 1 from block 2
    assert find_phase_frame(TWO_BEATS, 5, "ES") == 2    # 1 frame from block 1, 4 from block 2
    assert find_phase_frame(TWO_BEATS, 0, "ED") == 6    # before every block
    assert find_phase_frame(TWO_BEATS, 40, "ES") == 10  # a reference past the end still works


def test_tie_between_blocks_goes_to_the_earlier_block():
    # median 9: ES blocks are the single frames 0, 4 and 9
    x = [1, 9, 9, 9, 1, 9, 9, 9, 9, 1]
    assert find_phase_frame(x, 2, "ES") == 0            # 2 frames from frame 0 and from frame 4
    assert find_phase_frame(x, 2, "ES", "reference") == 0


def test_tie_inside_a_block_goes_to_the_earliest_frame():
    assert find_phase_frame([5, 5, 1, 1, 5, 5], 3, "ES") == 2
    assert find_phase_frame([0, 0, 7, 7, 0, 0], 2, "ED") == 2


def test_nothing_strictly_below_the_median_uses_the_plateau():
    # median 1: no frame < 1, so the ES block is the plateau 0-2; ED has a real block at frame 3
    assert find_phase_frame([1, 1, 1, 5], 3, "ES") == 0
    assert find_phase_frame([1, 1, 1, 5], 0, "ED") == 3
    assert find_phase_frames([1, 1, 1, 5], "ES") == [0]


def test_flat_signal_returns_frame_zero_not_the_reference():
    # An empty mask gives a flat area curve; it must not score a perfect aFD by echoing the reference.
    flat = [3.0] * 10
    assert find_phase_frame(flat, 4, "ES") == 0
    assert find_phase_frame(flat, 4, "ED") == 0
    assert find_phase_frame(flat, 25, "ES") == 0
    assert find_phase_frame(flat, 4, "ES", compat="reference") == 0  # the original code's answer
    assert find_phase_frames(flat, "ES") == [] and find_phase_frames(flat, "ED") == []


def test_single_frame_clip():
    assert find_phase_frame([7.0], 0, "ES") == 0
    assert find_phase_frame([7.0], 5, "ED") == 0
    assert find_phase_frame([7.0], 5, "ED", compat="reference") == 0
    assert find_phase_frames([7.0], "ES") == []


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_signal_is_a_clear_error(bad):
    x = np.array(TWO_BEATS, dtype=float)
    x[6] = bad
    with pytest.raises(SignalError, match=r"non-finite.*frame 6"):
        find_phase_frame(x, 3, "ES")
    with pytest.raises(EchoDFKDError):
        find_phase_frames(x, "ED")
    with pytest.raises(SignalError):
        echonet_es_frames(x)


def test_malformed_inputs_are_clear_errors():
    with pytest.raises(SignalError, match="empty"):
        find_phase_frame([], 0, "ES")
    with pytest.raises(SignalError, match="1-D"):
        find_phase_frame(np.zeros((3, 3)), 0, "ES")
    with pytest.raises(SignalError, match="phase"):
        find_phase_frame(TWO_BEATS, 0, "systole")
    with pytest.raises(SignalError, match="compat"):
        find_phase_frame(TWO_BEATS, 0, "ES", compat="old")
    with pytest.raises(SignalError, match="reference"):
        find_phase_frame(TWO_BEATS, float("nan"), "ES")


def test_paper_and_reference_distances_choose_the_same_block():
    rng = np.random.default_rng(0)
    for _ in range(300):
        x = rng.integers(0, 6, size=int(rng.integers(2, 40)))
        if x.min() == x.max():
            continue
        ref = int(rng.integers(-5, x.size + 5))
        for phase in ("ED", "ES"):
            assert find_phase_frame(x, ref, phase, "paper") == find_phase_frame(x, ref, phase, "reference")


def test_every_beat():
    assert find_phase_frames(TWO_BEATS, "ES") == [2, 10]
    assert find_phase_frames(TWO_BEATS, "ED") == [6, 14]


def test_afd_values():
    assert afd([1, 5], [2, 2]) == 2.0
    assert afd_seconds([10, 20], [0, 0], [50.0, 20.0]) == pytest.approx(0.6)
    with pytest.raises(SignalError, match="no clips"):
        afd([], [])
    with pytest.raises(SignalError):
        afd([1, 2], [1])
    with pytest.raises(SignalError, match="FPS"):
        afd_seconds([1], [0], [0.0])


def test_find_peaks_baseline_on_a_sinusoid():
    t = np.arange(200)
    size = 1000 + 300 * np.cos(2 * np.pi * t / 50)   # minima at 25, 75, 125, 175
    assert echonet_es_frames(size) == [25, 75, 125, 175]
    assert echonet_es_frames(size.round()) == [25, 75, 125, 175]


def test_find_peaks_baseline_keeps_the_published_trim():
    # sorted(size)[round(100**0.05)=1] = 100 and sorted(size)[round(100**0.95)=79] = 200: prominence 50,
    # so both dips count. A 5 %/95 % quantile trim (200 and 1000) would demand 400 and find none.
    size = np.full(100, 200.0)
    size[40:55] = 1000.0
    size[10] = 100.0
    size[80] = 0.0
    assert echonet_es_frames(size) == [10, 80]


def test_find_peaks_baseline_short_and_close_dips():
    assert echonet_es_frames([5.0]) == []
    assert echonet_es_frames([5.0, 1.0, 5.0, 4.0, 5.0]) == [1]    # EchoNet itself indexes out of range here
    size = np.full(100, 200.0)
    size[30], size[40] = 0.0, 50.0                                   # 10 frames apart < distance 20
    assert echonet_es_frames(size) == [30]


def test_nearest_frame_ties_to_the_earlier():
    assert nearest_frame([30, 10], 20) == 10
    assert nearest_frame([10, 30], 26) == 30
    assert nearest_frame([], 5) is None


def _two_clips():
    signals = {"a": np.array(TWO_BEATS, float), "b": np.array(TWO_BEATS[::-1], float)}
    refs = {"a": {"ED": [5], "ES": [4]}, "b": {"ED": [1, 9], "ES": [5]}}
    return signals, refs


def test_dataset_afd_full_and_clean():
    signals, refs = _two_clips()
    table = phase_table(signals, refs, fps={"a": 50.0, "b": 25.0})
    # clip a: ED found 6 (error 1), ES found 2 (error 2). Clip b is TWO_BEATS reversed (frame i -> 15 - i):
    # ED blocks 0-2 and 8-10 (max at 1 and 9: errors 0, 0); ES blocks 4-6 and 11-14: ES found 5 (error 0).
    per = clip_errors(table)
    assert per.loc["a", "ED"] == 1 and per.loc["a", "ES"] == 2
    assert per.loc["b", "ED"] == 0 and per.loc["b", "ES"] == 0
    m = afd_metrics(table, corrupted={"b"}, n_boot=200)
    assert m["full"]["aFD_ED"] == 0.5 and m["full"]["aFD_ES"] == 1.0
    assert m["full"]["aFD_ED_seconds"] == pytest.approx((1 / 50 + 0) / 2)
    assert m["full"]["bias_ES"] == pytest.approx(-1.0)             # found 2 frames before the human in a
    assert m["clean"]["n_clips"] == 1 and m["clean"]["aFD_ES"] == 2.0
    assert m["n_corrupted_excluded"] == 1
    assert m["full"]["aFD_sum"] == 1.5


def test_dataset_afd_names_the_clip_with_a_bad_signal():
    signals, refs = _two_clips()
    signals["b"] = np.array([1.0, np.nan, 2.0])
    with pytest.raises(SignalError, match="^b: "):
        phase_table(signals, refs)
    with pytest.raises(SignalError, match="no signal"):
        phase_table({"a": signals["a"]}, refs)


def test_es_baseline_falls_back_to_the_minimum_when_no_peak():
    t = np.arange(120)
    sizes = {"s": 1000 + 300 * np.cos(2 * np.pi * t / 50), "ramp": np.arange(30.0) + 7}
    refs = {"s": {"ES": [70]}, "ramp": {"ES": [5]}}
    tab = es_baseline_table(sizes, refs).set_index("FileName")
    assert tab.loc["s", "Found"] == 75 and tab.loc["s", "Error"] == 5 and not tab.loc["s", "NoPeak"]
    # a monotonic size has no local minimum: fall back to the global minimum (frame 0), flagged
    assert tab.loc["ramp", "Found"] == 0 and tab.loc["ramp", "Error"] == 5 and tab.loc["ramp", "NoPeak"]


def test_read_signal_csv(tmp_path):
    p = tmp_path / "signal.csv"
    p.write_text("FileName,Frame,Value\nb.avi,1,2.5\na,0,1\nb.avi,0,3\na,1,4\na,2,0\n")
    sig = read_signal_csv(p)
    assert sorted(sig) == ["a", "b"]
    assert sig["a"].tolist() == [1, 4, 0] and sig["b"].tolist() == [3, 2.5]
    p.write_text("FileName,Frame,Value\na,0,1\na,2,3\n")
    with pytest.raises(SignalError, match="a: frames must be 0..T-1"):
        read_signal_csv(p)
    p.write_text("FileName,Frame,Value\na,0,1\na,1,nan\n")
    with pytest.raises(SignalError, match="row 3"):
        read_signal_csv(p)
    p.write_text("Name,Frame,Value\na,0,1\n")
    with pytest.raises(SignalError, match="expected columns"):
        read_signal_csv(p)
    with pytest.raises(SignalError, match="not found"):
        read_signal_csv(tmp_path / "missing.csv")


def test_read_corrupted_both_layouts(tmp_path):
    p = tmp_path / "corrupted.csv"
    p.write_text("FileName,reason\nx.avi,blank_frames\ny,noisy_video\nx,too_short\n")
    assert read_corrupted(p) == {"x": "blank_frames;too_short", "y": "noisy_video"}
    p.write_text("FileName,kind\nz,label_shift\n")
    assert read_corrupted(p) == {"z": "label_shift"}


@pytest.mark.parametrize("compat", ["paper", "reference"])
def test_batch_finder_agrees_with_the_scalar_one(compat):
    from echodfkd.measures.phases import find_phase_frames_batch
    rng = np.random.default_rng(5)
    signals = [rng.integers(0, 5, size=int(rng.integers(1, 30))).astype(float) for _ in range(200)]
    signals += [np.full(7, 2.0), np.array([3.0]), np.array([1.0, 1, 1, 5]), np.array(TWO_BEATS, float)]
    clip = np.repeat(np.arange(len(signals)), 3)
    refs = np.array([rng.integers(-3, s.size + 3) for s in signals for _ in range(3)], dtype=float)
    for phase in ("ED", "ES"):
        got = find_phase_frames_batch(signals, clip, refs, phase, compat)
        want = [find_phase_frame(signals[c], r, phase, compat) for c, r in zip(clip, refs)]
        assert got.tolist() == want


def _plateau_beats(fps: float = 50.0, beats: int = 4, seed: int = 0) -> tuple[np.ndarray, list[int], list[int]]:
    """An LV-area-like curve: sharp ED peak, ejection to ES, filling, then a noisy diastasis plateau
    sitting at the curve's median (where median blocks fragment)."""
    rng = np.random.default_rng(seed)
    period = int(fps)  # 60 bpm
    rest = period - 30
    one = np.concatenate([np.full(rest, 640.0), np.linspace(700, 800, 5), np.linspace(800, 200, 15),
                          np.linspace(200, 640, 10)])
    x = np.tile(one, beats) + rng.normal(0, 6, period * beats)
    ed = [k * period + rest + 4 for k in range(beats)]
    es = [k * period + rest + 19 for k in range(beats)]
    return x, ed, es


def test_find_beats_lists_one_frame_per_beat_where_median_blocks_fragment():
    from echodfkd.measures.phases import find_beats

    x, ed, es = _plateau_beats()
    assert len(find_phase_frames(x, "ED")) > len(ed)  # noise on the plateau splits beats into blocks
    got_ed, got_es = find_beats(x, "ED", 50.0), find_beats(x, "ES", 50.0)
    assert len(got_ed) == len(ed) and len(got_es) == len(es)
    assert all(abs(g - t) <= 2 for g, t in zip(got_ed, ed)) and all(abs(g - t) <= 2 for g, t in zip(got_es, es))
    # the minimum interval scales with fps: at 50 fps two peaks 10 frames (0.2 s) apart are one beat
    twin = np.zeros(60)
    twin[18:23], twin[28:33] = [5, 8, 10, 8, 5], [5, 8, 9, 8, 5]
    assert find_beats(twin, "ED", 50.0) == [20] and find_beats(twin, "ED", 10.0) == [20, 30]
    assert find_beats(np.full(30, 3.0), "ES") == [] and find_beats(np.arange(30.0), "ED") == []  # no turn: none
