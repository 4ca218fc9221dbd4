"""Windows: the reference's stride-3 clip, TR-aware resampling, centre and k-window evaluation, short runs."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from brainjepa.data.windows import (
    WindowSpec,
    sample_at,
    take_window,
    take_windows,
    window_positions,
    window_starts,
)
from brainjepa.errors import ConfigError, DataError

REF = WindowSpec()  # 160 frames, stride 3, random: the reference pretraining clip


def _reference_indices(T: int, start: float, frames: int = 160, rate: int = 3) -> np.ndarray:
    """The reference rule: linspace(start, start + rate*frames - 1, frames), clamped to [0, T-1], truncated."""
    grid = torch.linspace(start, start + rate * frames - 1, frames)
    return torch.clamp(grid, 0, T - 1).long().numpy()


@pytest.mark.parametrize("T", [480, 490, 1200])
def test_fixed_positions_equal_reference_rule(T):
    for start in np.random.default_rng(T).uniform(0, max(T - 480, 0), size=200):
        pos = window_positions(T, REF, start=start)
        np.testing.assert_array_equal(pos, _reference_indices(T, float(start)))
        steps = np.diff(pos)
        assert pos[0] == int(start) and pos[-1] <= T - 1
        assert set(steps.tolist()) <= {3.0, 4.0} and abs(steps.mean() - 479 / 159) < 1e-9


def test_random_start_is_uniform_float_from_the_generator():
    pos = window_positions(490, REF, rng=np.random.default_rng(7))
    start = np.random.default_rng(7).uniform(0, 10)
    np.testing.assert_array_equal(pos, _reference_indices(490, start))
    firsts = {window_positions(490, REF, rng=np.random.default_rng(s))[0] for s in range(200)}
    assert firsts == set(range(10))  # floor(U(0, 10)) reaches every start 0..9


def test_random_mode_needs_a_generator():
    with pytest.raises(ConfigError, match="needs a numpy Generator"):
        window_positions(490, REF)


def test_center_window_is_deterministic():
    spec = WindowSpec(mode="center")
    ts = np.random.default_rng(0).normal(size=(4, 490)).astype(np.float32)
    a = take_window(ts, spec, np.random.default_rng(1))
    b = take_window(ts, spec, np.random.default_rng(2))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, ts[:, _reference_indices(490, 5.0)])  # start = (490 - 480) / 2
    tr_spec = WindowSpec(frames=10, mode="center", target_tr=2.16)
    np.testing.assert_array_equal(
        window_positions(100, tr_spec, tr=0.72), 36 + 3 * np.arange(10)
    )  # (100-28)//2


def test_tr_resampling_integral_stride_copies_frames():
    spec = WindowSpec(frames=160, target_tr=2.16)
    ts = np.random.default_rng(1).normal(size=(3, 600)).astype(np.float32)
    pos = window_positions(600, spec, rng=np.random.default_rng(3), tr=0.72)
    assert np.all(np.diff(pos) == 3) and pos[0] == int(pos[0])
    out = take_window(ts, spec, np.random.default_rng(3), tr=0.72)
    np.testing.assert_array_equal(out, ts[:, int(pos[0]) : int(pos[0]) + 478 : 3])
    # 160 samples every 3 frames span 478 frames: a 478-frame run fits, a 477-frame run does not
    assert window_positions(478, spec, rng=np.random.default_rng(0), tr=0.72)[-1] == 477
    with pytest.raises(DataError, match="needs 478"):
        window_positions(477, spec, rng=np.random.default_rng(0), tr=0.72, subject="x")


def test_tr_resampling_keeps_the_period_in_seconds():
    tr, target, period = 0.72, 2.0, 20.0
    t = np.arange(1200) * tr
    ts = np.stack([np.sin(2 * np.pi * t / period), np.cos(2 * np.pi * t / period)]).astype(np.float32)
    spec = WindowSpec(frames=100, target_tr=target)
    pos = window_positions(1200, spec, rng=np.random.default_rng(4), tr=tr)
    np.testing.assert_allclose(np.diff(pos), target / tr)
    out = take_window(ts, spec, np.random.default_rng(4), tr=tr)
    seconds = pos[0] * tr + np.arange(100) * target
    np.testing.assert_allclose(out[0], np.sin(2 * np.pi * seconds / period), atol=0.01)
    # the fixed stride would instead sample every 3 x 0.72 = 2.16 s and change the apparent period
    spectrum = np.abs(np.fft.rfft(out[0] - out[0].mean()))
    assert np.argmax(spectrum) == round(100 * target / period)


def test_target_tr_needs_the_run_tr():
    spec = WindowSpec(target_tr=2.0)
    with pytest.raises(DataError, match=r"subject 'sub-3': run has no TR, so it cannot be resampled.*--tr: embed"):
        window_positions(600, spec, rng=np.random.default_rng(0), subject="subject 'sub-3'")
    with pytest.raises(DataError, match="subject 'sub-3': run TR must be a positive number"):
        window_positions(600, spec, rng=np.random.default_rng(0), tr=0.0, subject="subject 'sub-3'")


def test_short_run_error_names_subject_and_frames():
    with pytest.raises(
        DataError,
        match=r"subject 'sub-01': run has 300 frames but a 160-frame window at stride 3 "
        r"needs 480; repeat its last frame \(pad=True in Python; --pad \(embed, probe, finetune\) or "
        r"data.short_runs=pad",
    ):
        take_window(np.ones((2, 300)), REF, np.random.default_rng(0), subject="subject 'sub-01'")
    tr_spec = WindowSpec(target_tr=2.16)
    with pytest.raises(DataError, match=r"run has 300 frames .* at target TR 2.16 s needs 478"):
        take_window(np.ones((2, 300)), tr_spec, np.random.default_rng(0), tr=0.72, subject="sub-01")


def test_short_run_pad_repeats_the_last_frame(caplog):
    ts = np.random.default_rng(5).normal(size=(3, 300)).astype(np.float32)
    spec = WindowSpec(short="pad")
    with caplog.at_level(logging.DEBUG, logger="brainjepa.data.windows"):
        out = take_window(ts, spec, np.random.default_rng(0), subject="sub-02")
    assert "sub-02" in caplog.text and "300 of the 480 frames" in caplog.text
    assert out.shape == (3, 160)
    idx = _reference_indices(300, 0.0)  # starts at frame 0, the clamp repeats the last frame
    np.testing.assert_array_equal(out, ts[:, idx])
    n_real = int(np.sum(idx < 299))
    np.testing.assert_array_equal(out[:, n_real:], np.repeat(ts[:, -1:], 160 - n_real, axis=1))
    assert n_real == 100  # positions 0, 3.01, ..., 298.2 are real frames; the rest is padding


def test_take_windows_spans_the_run():
    ts = np.random.default_rng(6).normal(size=(2, 490)).astype(np.float32)
    np.testing.assert_array_equal(window_starts(490, REF, 3), [0.0, 5.0, 10.0])
    wins = take_windows(ts, REF, 3)
    assert wins.shape == (3, 2, 160)
    np.testing.assert_array_equal(wins[0], ts[:, _reference_indices(490, 0.0)])
    assert wins[2][0, -1] == ts[0, 489]  # the last window ends on the last frame
    one = take_windows(ts, REF, 1)
    np.testing.assert_array_equal(one[0], take_window(ts, WindowSpec(mode="center"), None))
    tr_spec = WindowSpec(frames=10, target_tr=2.16)
    np.testing.assert_array_equal(window_starts(100, tr_spec, 4, tr=0.72), [0, 24, 48, 72])
    with pytest.raises(ConfigError, match="number of windows must be an integer >= 1"):
        window_starts(490, REF, 0)


def test_sample_at_interpolates_fractional_positions():
    ts = np.stack([np.arange(10.0), 10 * np.arange(10.0)]).astype(np.float32)
    out = sample_at(ts, np.array([0.0, 1.5, 8.25, 9.0]))
    np.testing.assert_allclose(out, [[0, 1.5, 8.25, 9], [0, 15, 82.5, 90]], rtol=1e-6)
    assert out.dtype == np.float32


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"frames": 0}, "window.frames must be an integer >= 1, got 0"),
        ({"sampling_rate": 2.5}, "window.sampling_rate must be an integer >= 1, got 2.5"),
        ({"mode": "middle"}, "window.mode must be 'random' or 'center', got 'middle'"),
        ({"target_tr": -1.0}, "window.target_tr must be a number >= 0.05 and <= 30, got -1.0"),
        ({"short": "crop"}, "window.short must be 'error' or 'pad', got 'crop'"),
    ],
)
def test_window_spec_rejects_bad_values(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        WindowSpec(**kwargs)


def test_take_window_rejects_bad_arrays():
    with pytest.raises(DataError, match=r"^a\.npy: expected a \[ROIs, frames\] array"):  # named as given
        take_window(np.ones(10), REF, np.random.default_rng(0), subject="a.npy")
    with pytest.raises(DataError, match=r"^the run: expected a \[ROIs, frames\] array"):  # no name given
        take_window(np.ones(10), REF, np.random.default_rng(0))


def test_fixed_centre_start_keeps_the_half_frame():
    """The fixed rule's centre start is (T - clip) / 2 as a float, as the reference computes it; rounding it down
    for an odd margin would shift which frames the stride-3 grid truncates to."""
    T = 491  # margin 11 frames: start 5.5
    ts = np.random.default_rng(8).normal(size=(2, T)).astype(np.float32)
    out = take_window(ts, WindowSpec(mode="center"), None)
    np.testing.assert_array_equal(out, ts[:, _reference_indices(T, (T - 480) / 2)])
    assert not np.array_equal(_reference_indices(T, (T - 480) / 2), _reference_indices(T, float((T - 480) // 2)))


def test_tr_resampled_random_start_reaches_the_last_frame():
    """TR-aware random windows start on any integer frame from 0 to the last possible start, inclusive; missing
    the last start would never show the model a run's final frames."""
    spec = WindowSpec(frames=10, target_tr=1.44)  # stride 2 at TR 0.72: the window spans 19 frames
    T = 25
    top = T - (2 * 9 + 1)
    firsts = {window_positions(T, spec, rng=np.random.default_rng(s), tr=0.72)[0] for s in range(200)}
    assert firsts == set(range(top + 1))


@pytest.mark.parametrize("target_tr", [1.44, 1.08])  # strides 2 and 1.5 at TR 0.72
def test_tr_resampled_pad_repeats_the_last_frame(target_tr):
    """A short run under TR-aware resampling starts at frame 0 and positions past its end take the last frame,
    as in the fixed rule; they must never index beyond the run."""
    T, frames, tr = 12, 10, 0.72
    ts = np.random.default_rng(9).normal(size=(3, T)).astype(np.float32)
    out = take_window(ts, WindowSpec(frames=frames, target_tr=target_tr, short="pad"), np.random.default_rng(0), tr=tr)
    times = np.arange(frames) * (target_tr / tr)  # np.interp holds the last value past the end
    expected = np.stack([np.interp(times, np.arange(T), row) for row in ts.astype(np.float64)])
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
    assert (times > T - 1).any()


def test_fixed_positions_use_float32_linspace_like_the_reference():
    """The fixed rule computes its grid in float32, as torch's linspace does in the reference; at this start a
    float64 grid would truncate one position to the frame before, so the window would differ from the reference's."""
    start = 671.666663607101
    pos = window_positions(1200, REF, start=start)
    np.testing.assert_array_equal(pos, _reference_indices(1200, start))
    wide = torch.linspace(start, start + 479, 160, dtype=torch.float64).long().numpy()
    assert not np.array_equal(pos, wide)  # the case tells the two precisions apart


def test_an_infinite_run_tr_is_refused():
    """A run TR of infinity is no TR: resampling by it would put every sample on frame 0."""
    with pytest.raises(DataError, match="run TR must be a positive number"):
        window_positions(600, WindowSpec(target_tr=2.0), rng=np.random.default_rng(0), tr=float("inf"))


def test_a_padded_short_run_starts_at_frame_0_whatever_start_is_given():
    """Under short="pad" a run too short for one window starts at frame 0 even when a start is passed (as by
    `take_windows`), so the padding is only ever at the end."""
    spec = WindowSpec(short="pad")
    np.testing.assert_array_equal(window_positions(300, spec, start=5.0), _reference_indices(300, 0.0))


def test_tr_resampled_window_starts_round_down_to_whole_frames():
    """k TR-aware windows start on whole frames: the even spacing from 0 to the last start, rounded down."""
    spec = WindowSpec(frames=10, target_tr=1.44)  # stride 2 at TR 0.72: 19 frames, last start 7 in 26 frames
    np.testing.assert_array_equal(window_starts(26, spec, 3, tr=0.72), [0.0, 3.0, 7.0])


def test_a_run_without_frames_is_a_data_error_even_when_padding():
    """A [ROIs, 0] array has no last frame to repeat: a DataError naming the run, not an IndexError."""
    with pytest.raises(DataError, match=r"^sub-9: expected a \[ROIs, frames\] array with frames"):
        take_window(np.ones((3, 0)), WindowSpec(short="pad"), np.random.default_rng(0), subject="sub-9")
