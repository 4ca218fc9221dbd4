"""StoreDataset (reproducible windows per (seed, epoch, item), reads only the span it needs), the typed pretraining
batches built from it, and subject splits."""

from __future__ import annotations

import signal

import numpy as np
import pytest
import torch

from brainjepa.data.dataset import StoreDataset, split_by_subject
from brainjepa.data.normalize import RobustScaler, RoiZScore
from brainjepa.data.store import RunStore, StoreWriter
from brainjepa.data.windows import WindowSpec, take_window
from brainjepa.errors import ConfigError, DataError
from brainjepa.masks import MaskConfig
from brainjepa.training.batch import Batch, MaskedBatches, epoch_loader
from brainjepa.training.sampler import GlobalBatchSampler

R = 6
SPEC = WindowSpec(frames=16, sampling_rate=3)  # clip of 48 frames
# 8 subjects; s1 and s4 have two runs; runs differ in length.
RUNS = [
    ("s0", 60),
    ("s1", 80),
    ("s1", 55),
    ("s2", 70),
    ("s3", 90),
    ("s4", 64),
    ("s4", 75),
    ("s5", 58),
    ("s6", 66),
    ("s7", 100),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> RunStore:
    path = tmp_path_factory.mktemp("ds") / "store"
    rng = np.random.default_rng(0)
    with StoreWriter(path, R) as w:
        for k, (subject, t) in enumerate(RUNS):
            ts = (rng.normal(size=(R, 1)) * 100 + rng.normal(size=(R, t))).astype(np.float32)
            w.add(ts, subject=subject, run=str(k), tr=0.72 + 0.01 * k)
    return RunStore(path)


def _all_x(ds: StoreDataset) -> np.ndarray:
    return np.stack([ds[i]["x"].numpy() for i in range(len(ds))])


def test_items_are_normalised_windows_of_the_right_runs(store):
    scaler = RobustScaler.fit(store, progress=False)
    ds = StoreDataset(store, indices=[9, 2, 5], normalizer=scaler, window=SPEC, seed=3)
    ds.set_epoch(2)
    assert len(ds) == 3
    for i, run in enumerate([9, 2, 5]):
        item = ds[i]
        assert (item["index"], item["run"], item["subject"]) == (i, run, RUNS[run][0])
        assert item["x"].dtype == torch.float32 and item["x"].shape == (R, 16)
        rng = np.random.default_rng((3, 2, i))  # the documented (seed, epoch, item) generator
        expected = scaler(take_window(store.run(run), SPEC, rng, subject=RUNS[run][0]))
        np.testing.assert_array_equal(item["x"].numpy(), expected)


def test_tr_resampled_items_match_the_full_run_computation(store):
    spec = WindowSpec(frames=16, target_tr=2.0)  # stride 2.0 / TR: fractional, interpolated
    ds = StoreDataset(store.path, window=spec, seed=1)
    for i in range(len(ds)):
        rng = np.random.default_rng((1, 0, i))
        expected = take_window(store.run(i), spec, rng, tr=store.tr(i))
        np.testing.assert_allclose(ds[i]["x"].numpy(), expected, rtol=1e-6, atol=1e-6)


def test_reads_only_the_window_span(store, monkeypatch):
    calls = []
    original = store.window

    def spy(i, start, length):
        calls.append(length)
        return original(i, start, length)

    monkeypatch.setattr(store, "window", spy)
    monkeypatch.setattr(store, "run", lambda i: pytest.fail("the dataset must not read whole runs"))
    ds = StoreDataset(store, window=SPEC)
    for i in range(len(ds)):
        ds[i]
    assert len(calls) == len(ds) and max(calls) <= 48


def test_determinism_across_instances_epochs_and_seeds(store):
    a, b = StoreDataset(store, window=SPEC, seed=0), StoreDataset(store.path, window=SPEC, seed=0)
    x0 = _all_x(a)
    np.testing.assert_array_equal(x0, _all_x(b))
    a.set_epoch(1)
    x1 = _all_x(a)
    assert sum(not np.array_equal(p, q) for p, q in zip(x0, x1, strict=True)) >= len(a) - 1
    b.set_epoch(1)
    np.testing.assert_array_equal(x1, _all_x(b))  # a resumed run at epoch 1 sees the same windows
    c = StoreDataset(store, window=SPEC, seed=5)
    assert not np.array_equal(x0, _all_x(c))


def test_dataloader_workers_agree_with_direct_access(store):
    ds = StoreDataset(store, window=SPEC, seed=2)
    ds.set_epoch(4)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, shuffle=False)
    batches = list(loader)
    x = torch.cat([b["x"] for b in batches]).numpy()
    np.testing.assert_array_equal(x, _all_x(ds))
    assert [s for b in batches for s in b["subject"]] == [s for s, _ in RUNS]


def _masked(ds: StoreDataset, batch_size: int, rank: int = 0, world_size: int = 1) -> MaskedBatches:
    return MaskedBatches(ds, MaskConfig(min_keep=1), (R, 4), seed=7, batch_size=batch_size, rank=rank,
                         world_size=world_size)


def test_batches_are_typed_and_sharded_by_rank(store):
    """A global batch of 4 on one process equals the rows of two processes with 2 each: samples and masks."""
    ds = StoreDataset(store, window=SPEC, seed=1)
    sampler = GlobalBatchSampler(len(ds), 4, seed=7)
    key = next(sampler.keys(2))
    whole = _masked(ds, 4)[key]
    assert isinstance(whole, Batch) and (whole.epoch, whole.batch) == (2, 0)
    assert whole.x.shape == (4, R, 16) and whole.index.tolist() == key[2]
    torch.testing.assert_close(whole.x, torch.stack([ds.sample(i, 2) for i in key[2]]), rtol=0, atol=0)
    assert whole.context_idx.dtype == whole.target_idx.dtype == torch.long
    halves = [_masked(ds, 2, rank, 2)[(2, 0, key[2][2 * rank : 2 * rank + 2])] for rank in (0, 1)]
    for name in ("x", "context_idx", "target_idx", "index"):
        assert torch.equal(torch.cat([getattr(h, name) for h in halves]), getattr(whole, name)), name
    moved = whole.to("cpu", non_blocking=True)
    assert isinstance(moved, Batch) and torch.equal(moved.target_idx, whole.target_idx) and moved.epoch == 2


def test_epoch_loader_is_seeded_and_worker_independent(store):
    """Loader batches are the same with and without workers, start where asked, and leave torch's RNG alone."""
    ds = StoreDataset(store, window=SPEC, seed=1)
    batches = _masked(ds, 2)
    rng = torch.get_rng_state()
    direct = list(epoch_loader(batches, GlobalBatchSampler(len(ds), 2, seed=7), 1))
    assert torch.equal(torch.get_rng_state(), rng)  # creating the iterator drew from the loader's own generator
    assert [b.batch for b in direct] == list(range(5)) and all(isinstance(b, Batch) for b in direct)
    workers = list(epoch_loader(batches, GlobalBatchSampler(len(ds), 2, seed=7), 1, 3, num_workers=2))
    assert [b.batch for b in workers] == [3, 4]
    for a, b in zip(direct[3:], workers, strict=True):
        assert all(torch.equal(getattr(a, n), getattr(b, n)) for n in ("x", "context_idx", "target_idx", "index"))


def test_one_loader_spans_epochs_like_one_loader_per_epoch(store):
    """The training loop's single loader over the rest of the run (workers kept across epoch ends) gives the same
    batches, in order, as one loader per epoch, with or without workers."""
    ds = StoreDataset(store, window=SPEC, seed=1)
    batches = _masked(ds, 2)
    per_epoch = [b for e in (1, 2, 3) for b in epoch_loader(batches, GlobalBatchSampler(len(ds), 2, seed=7), e,
                                                             3 if e == 1 else 0)]
    span = list(epoch_loader(batches, GlobalBatchSampler(len(ds), 2, seed=7), 1, 3, end_epoch=4, num_workers=2,
                             prefetch_factor=3))
    assert [(b.epoch, b.batch) for b in span] == [(1, 3), (1, 4)] + [(e, b) for e in (2, 3) for b in range(5)]
    for a, b in zip(per_epoch, span, strict=True):
        assert all(torch.equal(getattr(a, n), getattr(b, n)) for n in ("x", "context_idx", "target_idx", "index"))


def test_loader_length_is_the_number_of_batches_it_yields(store):
    """len() of a loader that starts mid-epoch, or spans epochs, counts the batches it will yield; a prefetch_factor
    given without workers is ignored (it only applies per worker)."""
    ds = StoreDataset(store, window=SPEC, seed=1)
    for start, end in ((0, None), (3, None), (3, 3)):
        loader = epoch_loader(_masked(ds, 2), GlobalBatchSampler(len(ds), 2, seed=7), 1, start, end_epoch=end,
                              prefetch_factor=2)
        assert len(loader) == len(list(loader)), (start, end)


def test_masks_are_drawn_anew_each_epoch(store):
    """The masks of batch b come from (seed, epoch, b): the same batch position of another epoch gets other masks."""
    batches = _masked(StoreDataset(store, window=SPEC, seed=1), 4)
    masks = [batches[(epoch, 1, [0, 1, 2, 3])] for epoch in (0, 1, 2)]
    assert len({(m.context_idx.numpy().tobytes(), m.target_idx.numpy().tobytes()) for m in masks}) == 3


def test_sampler_shuffles_each_epoch_and_needs_one_global_batch():
    """Each epoch is its own permutation of the items (the same for the same seed and epoch), cut into global batches;
    fewer items than one global batch is refused by name."""
    sampler = GlobalBatchSampler(10, 2, seed=3)
    orders = [sampler.global_order(e) for e in range(3)]
    assert all(sorted(o) == list(range(10)) for o in orders)
    assert len({o.tobytes() for o in orders}) == 3
    np.testing.assert_array_equal(GlobalBatchSampler(10, 2, seed=3).global_order(1), orders[1])
    assert [key[2] for key in sampler.keys(1)] == orders[1].reshape(5, 2).tolist()
    with pytest.raises(ConfigError, match=r"batch_size=2 x 2 process\(es\) needs at least 4 runs, the dataset has 3"):
        GlobalBatchSampler(3, 2, world_size=2)


def test_loader_workers_leave_ctrl_c_to_the_main_process(store):
    """Each DataLoader worker ignores SIGINT, so Ctrl-C reaches the main process alone (which stops at a step
    boundary) instead of killing the workers mid-batch."""
    from brainjepa.training.batch import _ignore_sigint

    ds = StoreDataset(store, window=SPEC, seed=1)
    assert epoch_loader(_masked(ds, 2), GlobalBatchSampler(len(ds), 2), 0).worker_init_fn is _ignore_sigint
    previous = signal.getsignal(signal.SIGINT)
    try:
        _ignore_sigint(0)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs CUDA")
def test_loader_pins_batches_for_async_copies(store):
    ds = StoreDataset(store, window=SPEC, seed=1)
    batch = next(iter(epoch_loader(_masked(ds, 2), GlobalBatchSampler(len(ds), 2), 0, pin_memory=True)))
    assert isinstance(batch, Batch) and batch.x.is_pinned() and batch.context_idx.is_pinned()
    on_gpu = batch.to("cuda", non_blocking=True)
    assert on_gpu.x.is_cuda and on_gpu.target_idx.is_cuda and torch.equal(on_gpu.x.cpu(), batch.x)


def test_center_mode_ignores_epoch(store):
    ds = StoreDataset(store, window=WindowSpec(frames=16, mode="center"))
    x0 = _all_x(ds)
    ds.set_epoch(3)
    np.testing.assert_array_equal(x0, _all_x(ds))


def test_normaliser_error_names_the_subject(tmp_path):
    ts = np.random.default_rng(1).normal(size=(2, 48)).astype(np.float32)
    ts[0] = 1.0
    ts[0, 1] = 2.0  # ROI 0 varies only at frame 1, which the window (frames 0, 3, 6, 9, ...) skips
    with StoreWriter(tmp_path / "c", 2) as w:
        w.add(ts, subject="sub-9")
    ds = StoreDataset(tmp_path / "c", normalizer=RoiZScore(), window=SPEC)
    with pytest.raises(DataError, match=r"subject 'sub-9' \(run index 0\): roi_zscore: constant .*ROI 0"):
        ds[0]


def test_short_run_error_and_pad(store):
    long = WindowSpec(frames=40, sampling_rate=3)  # needs 120 frames; every run is shorter
    with pytest.raises(DataError, match=r"subject 's0': run has 60 frames .* needs 120"):
        StoreDataset(store, window=long)[0]
    x = StoreDataset(store, window=WindowSpec(frames=40, sampling_rate=3, short="pad"))[0]["x"].numpy()
    np.testing.assert_array_equal(x[:, -1], store.run(0)[:, -1])


def test_bad_arguments(store):
    with pytest.raises(DataError, match=r"store has 6 ROIs but the normaliser was fitted on 2"):
        StoreDataset(store, normalizer=RobustScaler([0.0, 0.0], [1.0, 1.0]))
    with pytest.raises(DataError, match=r"run index 10 out of range \(store has 10 runs\)"):
        StoreDataset(store, indices=[10])
    with pytest.raises(ConfigError, match="seed must be an integer >= 0"):
        StoreDataset(store, seed=-1)
    ds = StoreDataset(store, indices=[0, 1], window=SPEC)
    with pytest.raises(ConfigError, match="epoch must be an integer >= 0"):
        ds.set_epoch(-2)
    with pytest.raises(IndexError, match="item 2 out of range"):
        ds[2]


@pytest.mark.parametrize("fractions", [(0.8, 0.2), (0.6, 0.2, 0.2)])
def test_split_by_subject_has_no_leakage(store, fractions):
    splits = split_by_subject(store, fractions, seed=0)
    assert len(splits) == len(fractions)
    subjects = store.manifest["subject"].to_numpy()
    sets = [set(subjects[s]) for s in splits]
    for k in range(len(sets)):
        for m in range(k + 1, len(sets)):
            assert not sets[k] & sets[m]
    np.testing.assert_array_equal(np.sort(np.concatenate(splits)), np.arange(len(RUNS)))
    sizes = [len(s) for s in sets]  # sizes count subjects (8), not runs
    assert (
        sizes == {2: [6, 2], 3: [5, 2, 1]}[len(fractions)]
    )  # largest remainders: 4.8 -> 5, 1.6 -> 2, 1.6 -> 1
    again = split_by_subject(store.path, fractions, seed=0)
    assert all(np.array_equal(p, q) for p, q in zip(splits, again, strict=True))
    others = {tuple(split_by_subject(store, fractions, seed=s)[0]) for s in range(1, 6)}
    assert len(others) > 1


@pytest.mark.parametrize(
    ("fractions", "error", "message"),
    [
        ((0.5, 0.4), ConfigError, r"must sum to 1, got \[0.5, 0.4\]"),
        ((1.2, -0.2), ConfigError, "must be positive numbers"),
        ((0.97, 0.01, 0.02), DataError, r"8 subjects cannot fill 3 splits .*split 1 would be empty"),
    ],
)
def test_split_by_subject_errors(store, fractions, error, message):
    with pytest.raises(error, match=message):
        split_by_subject(store, fractions)


def test_negative_item_index_is_refused(store):
    """Item -1 is not Python's count from the end: a sampler handing out a bad index must fail, not quietly read
    the last run (DataLoader indices are always 0 .. len - 1)."""
    ds = StoreDataset(store, indices=[0, 1], window=SPEC)
    with pytest.raises(IndexError, match="item -1 out of range"):
        ds[-1]
    with pytest.raises(IndexError, match="item -2 out of range"):
        ds.sample(-2, 0)


def test_zero_split_fraction_is_a_config_error(store):
    """A fraction of 0 is a bad setting (ConfigError naming the fractions), not a data problem of the store."""
    with pytest.raises(ConfigError, match="must be positive numbers"):
        split_by_subject(store, (1.0, 0.0))


def test_epoch_minus_one_is_refused(store):
    """Epochs count from 0: -1 (a common 'not started' sentinel) must not select a window stream."""
    ds = StoreDataset(store, indices=[0], window=SPEC)
    with pytest.raises(ConfigError, match="epoch must be an integer >= 0, got -1"):
        ds.set_epoch(-1)
    ds.set_epoch(0)
    assert ds.epoch == 0
