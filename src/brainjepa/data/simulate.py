"""Simulated BOLD with known generative parameters, so the whole pipeline can be tried (and checked) offline.

Model: one Stuart-Landau (Hopf normal-form) oscillator per ROI on a modular connectome, with diffusive coupling,

    dz_j = [(a_j + i w_j - |z_j|^2) z_j + G sum_k C_jk (z_k - z_j)] dt + sigma dW_j,   x_j = Re z_j,

integrated with Euler-Maruyama (the rotation by w_j dt applied exactly; float32, vectorised over a batch of
subjects), then block-averaged to about 0.5 s, convolved with the canonical double-gamma HRF and sampled every TR
after a discarded transient.

What varies per subject (written as phenotype columns, so downstream tasks have a known answer):

* ``coupling`` G ~ U(coupling_min, coupling_max): stronger coupling synchronises ROIs, so it raises mean FC;
* ``group`` 0/1 ~ Bernoulli(1/2): in group 1, module 0 gets ``a + group_shift`` (by default it crosses the Hopf
  bifurcation and oscillates by itself), which changes its FC pattern and amplitude;
* ``age`` ~ U(age_min, age_max): intrinsic frequencies scale by ``1 - age_slowing * (age - mid-age)``.

The connectome and the ROI base frequencies depend only on the seed (shared by all subjects); subject i's
parameters and noise come from its own generator seeded by (seed, i), so a subject's series does not depend on
the batch size or on how many subjects are simulated.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from brainjepa.bounds import bounded, check_bounds
from brainjepa.data.readers import check_tr
from brainjepa.data.store import RunStore, StoreWriter, check_target
from brainjepa.errors import ConfigError, DataError
from brainjepa.io import default_cache_dir

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

_NOISE_CHUNK = 256  # integration steps of noise drawn per subject at a time (fixed: keeps results batch-invariant)
_RECORD_DT = 0.5  # target resolution (s) of the neural signal fed to the HRF


@dataclass(frozen=True)
class SimulationConfig:
    """Every parameter of a simulation; stored as the store's ``metadata["simulation"]``.

    Times are in seconds, frequencies in Hz.
    """

    subjects: int = bounded(100, ge=1)
    rois: int = bounded(100, ge=1)
    frames: int = bounded(160, ge=1)
    tr: float = bounded(2.0, gt=0)
    seed: int = bounded(0, ge=0)
    modules: int = bounded(4, ge=1)  # ROIs are split into this many contiguous modules
    p_within: float = bounded(0.5, ge=0, le=1)  # connection probability inside a module
    p_between: float = bounded(0.05, ge=0, le=1)  # connection probability between modules
    dt: float = bounded(0.2, gt=0)  # integration step; shrunk slightly if needed so that TR is a whole number of steps
    transient: float = bounded(60.0, ge=0)  # simulated time discarded before the first frame
    freq: float = bounded(0.05, gt=0)  # mean intrinsic frequency of the ROIs
    freq_sd: float = bounded(0.01, ge=0)  # spread of intrinsic frequencies across ROIs
    bifurcation: float = bounded(-0.02)  # a < 0: noise-driven damped oscillations
    group_shift: float = bounded(0.1)  # added to `a` of module 0 in group 1
    coupling_min: float = bounded(0.05, ge=0)
    coupling_max: float = bounded(1.0)
    age_min: float = bounded(20.0)
    age_max: float = bounded(80.0)
    age_slowing: float = bounded(0.004, ge=0)  # relative frequency change per year around the middle age
    noise: float = bounded(0.02, gt=0)  # sigma of the dynamical noise
    obs_noise: float = bounded(0.1, ge=0)  # measurement noise, as a fraction of each subject's BOLD standard deviation
    batch_size: int = bounded(32, ge=1)  # subjects integrated together; memory ~ 4 B * batch * rois * seconds / 0.5

    def validate(self) -> None:
        """Raise ConfigError naming the first parameter out of its range or inconsistent with another."""
        def need(ok: bool, key: str, what: str) -> None:
            if not ok:
                raise ConfigError(f"simulation.{key} must be {what}, got {getattr(self, key)!r}")

        check_bounds(self, "simulation")
        need(self.modules <= self.rois, "modules", f"at most rois ({self.rois})")
        need(self.dt <= self.tr, "dt", f"at most tr ({self.tr})")
        need(self.coupling_max >= self.coupling_min, "coupling_max", f">= coupling_min ({self.coupling_min})")
        need(self.age_max >= self.age_min, "age_max", f">= age_min ({self.age_min})")
        half_span = (self.age_max - self.age_min) / 2
        need(self.age_slowing * half_span < 1, "age_slowing", f"< 1 / {half_span:g} (frequencies must stay positive)")
        # The Euler part (damping, coupling) is stable and accurate only while it changes z little per step.
        limit = 0.25 / max(self.coupling_max, 1e-9)
        need(self.coupling_max * self.dt <= 0.25, "dt", f"<= 0.25 / coupling_max ({limit:g})")

    @property
    def steps_per_tr(self) -> int:
        return max(1, math.ceil(self.tr / self.dt - 1e-9))

    @property
    def step(self) -> float:
        """The integration step actually used: TR / steps_per_tr (<= dt)."""
        return self.tr / self.steps_per_tr

    @property
    def transient_frames(self) -> int:
        return math.ceil(self.transient / self.tr - 1e-9)


def modular_connectome(
    rois: int, modules: int, *, p_within: float, p_between: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random symmetric modular network, scaled so the mean node strength is 1.

    Returns:
        (C [R, R] float32 with zero diagonal, module index [R] int64); modules are contiguous blocks of ROIs.
    """
    module = np.repeat(np.arange(modules), [len(b) for b in np.array_split(np.arange(rois), modules)])
    prob = np.where(module[:, None] == module[None, :], p_within, p_between)
    weights = (rng.random((rois, rois)) < prob) * rng.uniform(0.5, 1.0, (rois, rois))
    weights = np.triu(weights, 1)
    weights = weights + weights.T
    mean_strength = weights.sum(axis=1).mean()
    if mean_strength > 0:
        weights /= mean_strength
    return weights.astype(np.float32), module


def double_gamma_hrf(dt: float, duration: float = 32.0) -> np.ndarray:
    """Canonical (SPM-style) double-gamma HRF sampled at bin centres every `dt` s, normalised to sum 1.

    h(t) = t^5 e^-t / 5! - t^15 e^-t / (6 * 15!): peak near 5 s, undershoot near 15 s.
    """
    t = (np.arange(math.ceil(duration / dt)) + 0.5) * dt
    h = t**5 * np.exp(-t) / math.gamma(6) - t**15 * np.exp(-t) / (6 * math.gamma(16))
    return h / h.sum()


def roi_labels(config: SimulationConfig) -> list[str]:
    """Names like ``mod0_roi3`` (module, index within the module) in ROI order."""
    _, module = _network(config)
    labels, counts = [], np.zeros(config.modules, int)
    for m in module:
        labels.append(f"mod{m}_roi{counts[m]}")
        counts[m] += 1
    return labels


def _network(config: SimulationConfig) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([config.seed, 0])
    return modular_connectome(config.rois, config.modules, p_within=config.p_within, p_between=config.p_between,
                              rng=rng)


def _base_frequencies(config: SimulationConfig) -> np.ndarray:
    rng = np.random.default_rng([config.seed, 1])
    return np.clip(rng.normal(config.freq, config.freq_sd, config.rois), 0.2 * config.freq, None)


def _subject_rngs(config: SimulationConfig, start: int, stop: int) -> list[np.random.Generator]:
    return [np.random.default_rng([config.seed, 2, i]) for i in range(start, stop)]


def _draw_parameters(config: SimulationConfig, rngs: list[np.random.Generator]) -> dict[str, np.ndarray]:
    coupling = np.array([g.uniform(config.coupling_min, config.coupling_max) for g in rngs])
    group = np.array([int(g.integers(0, 2)) for g in rngs])
    age = np.array([g.uniform(config.age_min, config.age_max) for g in rngs])
    return {"coupling": coupling, "group": group, "age": age}


def _integrate(
    config: SimulationConfig,
    conn: np.ndarray,
    module: np.ndarray,
    base_freq: np.ndarray,
    params: dict[str, np.ndarray],
    rngs: list[np.random.Generator],
) -> tuple[np.ndarray, float, int]:
    """Integrate one batch of subjects.

    Each step rotates z by w*dt exactly, then adds the Euler drift of the remaining terms and the noise
    (Lie splitting). Plain Euler on the rotation would add w^2 dt / 2 to every `a` (about half the default
    damping at dt 0.2), making the effective bifurcation parameter depend on frequency and hence on age.

    Returns:
        (block-averaged neural signal [n_records, B, R] float32, record spacing in s, records per TR).
    """
    batch, rois = len(rngs), config.rois
    dt = config.step
    steps_per_tr = config.steps_per_tr
    # Records: the largest divisor of steps_per_tr spanning <= _RECORD_DT, so every TR ends on a record edge.
    rec_steps = max(d for d in range(1, steps_per_tr + 1) if steps_per_tr % d == 0 and (d * dt <= _RECORD_DT or d == 1))
    n_steps = (config.transient_frames + config.frames) * steps_per_tr
    f32 = np.float32
    coupling = params["coupling"][:, None]
    speed = 1.0 - config.age_slowing * (params["age"] - (config.age_min + config.age_max) / 2)
    omega_dt = 2 * np.pi * base_freq[None, :] * speed[:, None] * dt
    cos, sin = np.cos(omega_dt).astype(f32), np.sin(omega_dt).astype(f32)
    a = config.bifurcation + config.group_shift * (params["group"][:, None] * (module[None, :] == 0))
    linear_dt = ((a - coupling * conn.sum(axis=1)[None, :]) * dt).astype(f32)  # (a_j - G strength_j) dt
    coupling_dt = (coupling * dt).astype(f32)
    x, y = (np.stack([0.1 * g.standard_normal(rois) for g in rngs]).astype(f32) for _ in range(2))
    records = np.empty((n_steps // rec_steps, batch, rois), f32)
    acc = np.zeros((batch, rois), f32)
    noise = np.empty((batch, _NOISE_CHUNK, 2, rois), f32)  # per subject contiguous: cheap to fill
    xy = np.empty((2 * batch, rois), f32)
    radial, tmp = np.empty((batch, rois), f32), np.empty((batch, rois), f32)
    for step in range(n_steps):
        k = step % _NOISE_CHUNK
        if k == 0:
            n = min(_NOISE_CHUNK, n_steps - step)
            for b, g in enumerate(rngs):
                noise[b, :n] = g.standard_normal((n, 2, rois), dtype=f32)
            noise *= f32(config.noise * math.sqrt(dt))
        xy[:batch], xy[batch:] = x, y
        coupled = xy @ conn  # [2B, R]: sum_k C_jk x_k and sum_k C_jk y_k (C is symmetric)
        coupled[:batch] *= coupling_dt
        coupled[batch:] *= coupling_dt
        np.multiply(x, x, out=radial)
        np.multiply(y, y, out=tmp)
        radial += tmp
        radial *= f32(-dt)
        radial += linear_dt  # (a - G s - |z|^2) dt
        # new x = cos x - sin y + radial x + G dt (C x) + noise; y likewise with the rotation's other row
        np.multiply(cos, x, out=tmp)
        tmp -= sin * y
        tmp += radial * x
        tmp += coupled[:batch]
        tmp += noise[:, k, 0]
        y *= cos
        y += sin * x
        y += radial * xy[batch:]
        y += coupled[batch:]
        y += noise[:, k, 1]
        x, tmp = tmp, x
        acc += x
        if (step + 1) % rec_steps == 0:
            np.multiply(acc, f32(1 / rec_steps), out=records[(step + 1) // rec_steps - 1])
            acc[:] = 0
    if not np.isfinite(records).all():
        raise ConfigError("simulation diverged (non-finite values); lower simulation.dt or the coupling range")
    return records, rec_steps * dt, steps_per_tr // rec_steps


def _to_bold(config: SimulationConfig, records: np.ndarray, record_dt: float, per_tr: int,
             rngs: list[np.random.Generator]) -> np.ndarray:
    """HRF convolution (FFT along time, one subject at a time to bound memory), sampling at the end of each TR
    after the transient, then measurement noise. Returns [B, R, T] float32."""
    n = records.shape[0]
    h = double_gamma_hrf(record_dt)
    nfft = 1 << math.ceil(math.log2(n + len(h)))
    h_spectrum = np.fft.rfft(h, nfft)[:, None]
    frames = (np.arange(config.transient_frames, config.transient_frames + config.frames) + 1) * per_tr - 1
    bold = np.empty((len(rngs), config.rois, config.frames), np.float32)
    for b, g in enumerate(rngs):
        convolved = np.fft.irfft(np.fft.rfft(records[:, b], nfft, axis=0) * h_spectrum, nfft, axis=0)[frames]
        bold[b] = convolved.T
        bold[b] += (config.obs_noise * float(bold[b].std()) * g.standard_normal(bold[b].shape)).astype(np.float32)
    return bold


def _single_threaded_blas() -> contextlib.AbstractContextManager:
    """Limit BLAS to one thread: the per-step products are small, and threaded BLAS on a busy machine was
    measured 5-8x slower (spinning threads) than one thread."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # threadpoolctl comes with scikit-learn; without it BLAS keeps its own setting
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def simulate_bold(config: SimulationConfig, *, progress: bool = True) -> Iterator[tuple[np.ndarray, dict]]:
    """Yield (bold [R, T] float32, phenotypes {"coupling", "group", "age"}) for each subject in order."""
    from tqdm.auto import tqdm

    config.validate()
    conn, module = _network(config)
    base_freq = _base_frequencies(config)
    with tqdm(total=config.subjects, desc="simulate", unit="subj", disable=not progress) as bar:
        for start in range(0, config.subjects, config.batch_size):
            stop = min(start + config.batch_size, config.subjects)
            rngs = _subject_rngs(config, start, stop)
            params = _draw_parameters(config, rngs)
            with _single_threaded_blas():
                records, record_dt, per_tr = _integrate(config, conn, module, base_freq, params, rngs)
            bold = _to_bold(config, records, record_dt, per_tr, rngs)
            for b in range(stop - start):
                yield bold[b], {"coupling": float(params["coupling"][b]), "group": int(params["group"][b]),
                                "age": float(params["age"][b])}
            bar.update(stop - start)


def simulate_store(
    out: str | Path, config: SimulationConfig, *, overwrite: bool = False, progress: bool = True,
    allow_unusual_tr: bool = False,
) -> RunStore:
    """Simulate `config.subjects` subjects (one run each) into a new store at `out` and return it.

    Subjects are named ``sim0000``...; ``metadata["simulation"]`` holds every parameter plus the model name,
    and ROI labels are ``mod<m>_roi<j>``. A TR outside what scanners use (0.05-30 s) is refused before any
    simulation unless `allow_unusual_tr`, as it is for real runs.
    """
    config.validate()
    check_tr(config.tr, "simulate (tr, --tr)", allow_unusual=allow_unusual_tr)
    width = max(4, len(str(config.subjects - 1)))
    with StoreWriter(out, config.rois, roi_labels=roi_labels(config), overwrite=overwrite,
                     allow_unusual_tr=allow_unusual_tr) as writer:
        for i, (bold, pheno) in enumerate(simulate_bold(config, progress=progress)):
            writer.add(bold, subject=f"sim{i:0{width}d}", run="1", tr=config.tr, source="simulate",
                       phenotypes=pheno)
        writer.set_metadata(
            "simulation",
            {
                "model": "stuart-landau (Hopf) on a modular connectome, Euler-Maruyama, double-gamma HRF",
                **asdict(config),
                "step_used": config.step,
            },
        )
    return RunStore(out)


# ==================================================================================================== surrogates
# `brainjepa simulate --like STORE`: synthetic subjects in a real store's ROI space (same ROIs, labels and TR), for
# pretraining out of sample. See `fit_store_statistics` (what is measured on the store) and `surrogate_bold` (how
# subjects are drawn from it).

SURROGATE_CHUNK = 128  # subjects drawn together; chunk c has its own generator (seed, c), filled for a whole chunk
DEFAULT_FC_JITTER = 1.0  # used when the store has no subject with two runs to measure between-subject FC variance
_FINE_DT = 0.1  # s: grid of the event boxcars convolved with the HRF
_CALIBRATION_SUBJECTS = 64
_EVENTS_FILE = re.compile(r"^sub-(?P<sub>[^_]+)_(?:.+_)?run-(?P<run>[^_]+)_events\.tsv$")

SURROGATE_METHOD = (
    "GLM per source run (HRF-convolved event regressors + intercept + linear trend); residuals give the group FC "
    "(mean of run correlations), per-ROI AR(1) coefficient (pooled lag-1 autocorrelation, Kendall bias-corrected) "
    "and SD. Subject FC: each of the leading `components` eigen-components of the group FC C = V L V^T is tilted "
    "and rescaled, sqrt(l_j) v_j -> sqrt(l_j) v_j + eps sum_i sqrt(l_i) n_ij v_i (n ~ N(0, 1)), the rest of the "
    "spectrum kept, and the sum rescaled to a correlation matrix C_s (expectation before rescaling: (1 + k eps^2) C); "
    "eps (fc_jitter) auto-matches the between-subject Fisher-z FC variance measured across runs of the same source "
    "subject. Series: x_t = phi * x_{t-1} + e_t, Cov(e) = C_s o (1 - phi phi^T), "
    "x_0 ~ N(0, C_s), so the stationary correlation is C_s and each ROI's lag-1 autocorrelation is phi; times the "
    "ROI SD. Evoked part: the design of one source run (heat/rating... blocks x canonical HRF) times subject betas "
    "= group betas + between-subject SD x N(0, 1) (betas in residual-SD units). Demeaned per run like the source."
)


@dataclass(frozen=True)
class SurrogateConfig:
    """How many surrogate subjects to draw from a store's statistics, and how they vary; stored in the surrogate
    store's ``metadata["surrogate"]``.

    Args:
        subjects: number of surrogate subjects (one run each).
        frames: frames T per run (the TR is the source store's).
        seed: random seed; the same seed gives the same store, and a subject's data do not depend on `subjects`.
        components: k, the leading eigenvectors of the group FC perturbed per subject.
        fc_jitter: eps, the size of the per-subject perturbation; ``"auto"`` matches the between-subject FC
            variance of the source store (measured between runs of the same subject).
        evoked_share: share of subjects given the evoked component (when the store has events).
    """

    subjects: int = bounded(100, ge=1)
    frames: int = bounded(200, ge=3)
    seed: int = bounded(0, ge=0)
    components: int = bounded(10, ge=1)
    fc_jitter: float | str = "auto"
    evoked_share: float = bounded(1.0, ge=0, le=1)

    def validate(self) -> None:
        """Raise ConfigError naming the first parameter out of its range."""
        check_bounds(self, "surrogate")
        j = self.fc_jitter
        if j != "auto" and not (isinstance(j, int | float) and not isinstance(j, bool) and math.isfinite(j)
                                and j >= 0):
            raise ConfigError(f"surrogate.fc_jitter must be auto or a number >= 0, got {j!r}")


@dataclass(frozen=True)
class StoreStatistics:
    """What surrogates are drawn from, measured on a store by `fit_store_statistics`. Arrays are float64.

    Attributes:
        source: the store's path.
        roi_labels: its R ROI labels (or None).
        tr: its TR in seconds.
        runs, subjects: its run and subject counts.
        fc: [R, R] group correlation of the residuals (mean of the runs' correlation matrices: a valid correlation).
        ar1: [R] lag-1 autocorrelation of each ROI's residuals, bias-corrected (the process coefficient).
        ar1_measured: [R] the same as measured (pooled over runs), before the correction.
        sd: [R] residual SD per ROI (source units).
        demeaned: whether the source runs are demeaned (|run mean| < 5% of the SD); surrogates then are too.
        mean, mean_sd: [R] mean over runs of the run means and their SD across runs (used when not demeaned).
        fc_between: between-subject variance of run FC deviations from the group (Fisher z, mean over ROI pairs),
            from pairs of runs of the same subject; None when no subject has two runs.
        regressors: event types modelled (empty without events).
        beta: [K, R] group betas in residual-SD units.
        beta_between: [K] between-subject SD of the betas in those units (pairs of runs of the same subject).
        design_events: the events of the run whose design every surrogate shares, or None.
        design_run: which run that is ("sub-01 run-01").
        events_dir: the folder the events came from, or None.
        runs_with_events: source runs that had an events file.
    """

    source: str
    roi_labels: list[str] | None
    tr: float
    runs: int
    subjects: int
    fc: np.ndarray
    ar1: np.ndarray
    ar1_measured: np.ndarray
    sd: np.ndarray
    demeaned: bool
    mean: np.ndarray
    mean_sd: np.ndarray
    fc_between: float | None
    regressors: list[str]
    beta: np.ndarray
    beta_between: np.ndarray
    design_events: pd.DataFrame | None
    design_run: str | None
    events_dir: str | None
    runs_with_events: int

    @property
    def num_rois(self) -> int:
        return len(self.sd)

    def design(self, frames: int) -> np.ndarray:
        """[frames, K] HRF-convolved regressors of the shared design (K = 0 without events)."""
        if self.design_events is None:
            return np.zeros((frames, 0))
        return event_design(self.design_events, frames, self.tr, self.regressors)


class Surrogate(NamedTuple):
    """One surrogate subject.

    Attributes:
        bold: [R, T] float32 series (source units).
        fc: [R, R] float64, the subject's population correlation (what its noise part is drawn with).
        betas: [K, R] float64 evoked betas in source units (zeros when `evoked` is 0).
        evoked: 1 if the subject has the evoked component, else 0.
    """

    bold: np.ndarray
    fc: np.ndarray
    betas: np.ndarray
    evoked: int


def _key(label: str) -> str:
    """Subject / run ids compared without leading zeros ("01" == "1")."""
    label = str(label)
    return str(int(label)) if label.isdigit() else label


def event_design(events: pd.DataFrame, frames: int, tr: float, regressors: list[str]) -> np.ndarray:
    """HRF-convolved block regressors, one per trial type: [frames, K] float64.

    Each event of `trial_type` k is a boxcar from onset to onset + duration on a 0.1-s grid (onset: the
    ``onset_run`` column where present, else ``onset``; seconds from the run start), convolved with the canonical
    double-gamma HRF (unit sum, so a long block plateaus at 1) and sampled at frame times t * tr.
    """
    onset = "onset_run" if "onset_run" in events.columns else "onset"
    missing = [c for c in (onset, "duration", "trial_type") if c not in events.columns]
    if missing:
        raise DataError(f"events table lacks columns {missing}")
    h = double_gamma_hrf(_FINE_DT)
    n = math.ceil(frames * tr / _FINE_DT) + 1
    design = np.zeros((frames, len(regressors)))
    sample = np.minimum(np.round(np.arange(frames) * tr / _FINE_DT).astype(np.int64), n - 1)
    for k, name in enumerate(regressors):
        box = np.zeros(n)
        rows = events[events["trial_type"].astype(str) == name][[onset, "duration"]].dropna()
        for start, duration in rows.itertuples(index=False):
            lo, hi = round(start / _FINE_DT), round((start + duration) / _FINE_DT)
            box[max(lo, 0):max(min(hi, n), 0)] = 1.0
        design[:, k] = np.convolve(box, h)[:n][sample]
    return design


def find_events(store: RunStore, events: str | Path | None = None) -> tuple[Path | None, dict[int, pd.DataFrame]]:
    """Event tables of a store's runs: {run index: table}.

    `events` is a folder of BIDS-like ``sub-<subject>[_...]_run-<run>_events.tsv`` files (onset, duration,
    trial_type). Without it, a store made by `brainjepa samples prepare` (``metadata["sample"]``) is linked to its
    sample cache's ``events/`` folder when that exists; otherwise there are no events.

    Raises:
        DataError: `events` is not a folder, or none of its files matches a run of the store.
    """
    import pandas as pd

    if events is None:
        sample = store.metadata.get("sample")
        name = sample.get("name") if isinstance(sample, dict) else None
        if not name:
            return None, {}
        folder = default_cache_dir() / str(name) / "events"
        if not folder.is_dir():
            logger.info("%s: no events found (no folder %s); surrogates get no evoked component", store.path, folder)
            return None, {}
    else:
        folder = Path(events)
        if not folder.is_dir():
            raise DataError(f"{folder}: no such events folder")
    files = {}
    for path in sorted(folder.iterdir()):
        if m := _EVENTS_FILE.match(path.name):
            files[(_key(m.group("sub")), _key(m.group("run")))] = path
    found = {}
    for i, (subject, run) in enumerate(zip(store.manifest["subject"], store.manifest["run"], strict=True)):
        path = files.get((_key(subject), _key(run)))
        if path is not None:
            found[i] = pd.read_csv(path, sep="\t", na_values=["n/a"])
    if not found:
        raise DataError(f"{folder}: no events file matches a run of {store.path} (expected names like "
                        f"sub-{store.manifest['subject'].iat[0]}_run-{store.manifest['run'].iat[0]}_events.tsv)")
    return folder, found


def _pair_covariance(values: np.ndarray, subjects: np.ndarray) -> float | None:
    """Mean over pairs of runs of one subject of the product of their deviations from the mean over runs, averaged
    over the last axis: the variance of what subjects share across their runs (run noise drops out). None without
    such pairs."""
    dev = values - values.mean(axis=0)
    products = []
    for s in np.unique(subjects):
        idx = np.flatnonzero(subjects == s)
        for a in range(len(idx)):
            for b in range(a + 1, len(idx)):
                products.append(float((dev[idx[a]] * dev[idx[b]]).mean()))
    return float(np.mean(products)) if products else None


def fit_store_statistics(store: RunStore | str | Path, *, events: str | Path | None = None,
                         progress: bool = True) -> StoreStatistics:
    """Measure what surrogates of `store` are drawn from (see `StoreStatistics`).

    Each run is fitted by least squares with its own events' HRF-convolved regressors (when it has events, see
    `find_events`), an intercept and a linear trend. The residuals give FC, AR(1) and SD; the event betas, divided
    by the ROI's residual SD, give group betas and their between-subject SD.

    Raises:
        DataError: no such store, an empty store, runs of different or unknown TR, or a run too short.
    """
    from tqdm.auto import tqdm

    store = store if isinstance(store, RunStore) else RunStore(store)
    if len(store) == 0:
        raise DataError(f"{store.path}: the store has no runs to draw surrogates from")
    trs = np.array([store.tr(i) if store.tr(i) is not None else np.nan for i in range(len(store))])
    if np.isnan(trs).any() or np.ptp(trs) > 1e-6:
        raise DataError(f"{store.path}: surrogates need one known TR for every run, got {sorted(set(trs.tolist()))}")
    folder, tables = find_events(store, events)
    regressors = sorted({str(t) for table in tables.values() if "trial_type" in table.columns
                         for t in table["trial_type"].dropna().unique()})
    if tables and not regressors:
        raise DataError(f"{folder}: the events files have no trial_type values to model")
    tr, r, k = float(trs[0]), store.num_rois, len(regressors)
    subjects = store.manifest["subject"].astype(str).to_numpy()
    fc_sum, fcz, lag, power, sq, dof, means = np.zeros((r, r)), [], np.zeros(r), np.zeros(r), np.zeros(r), 0, []
    betas, beta_subjects, lengths = [], [], []
    iu = np.triu_indices(r, 1)
    for i in tqdm(range(len(store)), desc="fit store", unit="run", disable=not progress):
        ts = store.run(i).astype(np.float64).T  # [T, R]
        t = len(ts)
        if t < k + 4:
            raise DataError(f"{store.path}: run {i} has {t} frames, too few for the surrogate fit")
        design = event_design(tables[i], t, tr, regressors) if i in tables else np.zeros((t, k))
        x = np.column_stack([design, np.ones(t), np.linspace(-1, 1, t)])
        coef, *_ = np.linalg.lstsq(x, ts, rcond=None)
        res = ts - x @ coef
        means.append(ts.mean(axis=0))
        sq += (res**2).sum(axis=0)
        dof += t - x.shape[1] + 1  # the intercept's dof is counted by the AR(1) correction below
        lag += (res[1:] * res[:-1]).sum(axis=0)
        power += (res**2).sum(axis=0)
        lengths.append(t)
        sd_run = res.std(axis=0)
        if (sd_run == 0).any():
            raise DataError(f"{store.path}: run {i} has a ROI with no variance left after the fit")
        corr = np.corrcoef(res.T)
        fc_sum += corr
        fcz.append(np.arctanh(np.clip(corr[iu], -0.999999, 0.999999)))
        if i in tables and k:
            betas.append(coef[:k])
            beta_subjects.append(subjects[i])
    measured = lag / power
    t_mean = float(np.mean(lengths))
    ar1 = np.clip(measured + (1 + 3 * measured) / t_mean, -0.98, 0.98)  # Kendall: E[r1] ~ phi - (1 + 3 phi) / T
    # A demeaned AR(1) run's sample variance is ~ sigma^2 (1 - (1 + phi) / ((1 - phi) T)): undo that bias, so that
    # surrogates measured the same way match the source (as for phi).
    shrink = np.clip(1 - (1 + ar1) / ((1 - ar1) * t_mean), 0.5, 1)
    sd = np.sqrt(sq / dof / shrink)
    means = np.array(means)
    demeaned = bool(np.median(np.abs(means)) < 0.05 * np.median(sd))
    beta = np.zeros((k, r))
    beta_between = np.zeros(k)
    if betas:
        bz = np.array(betas) / sd  # [runs, K, R] in residual-SD units
        beta = bz.mean(axis=0)
        for j in range(k):
            between = _pair_covariance(bz[:, j], np.array(beta_subjects))
            beta_between[j] = math.sqrt(max(between if between is not None else bz[:, j].var(axis=0).mean(), 0.0))
    design_run, design_events = None, None
    if tables:  # the first run with events among those with the most frames (connattractor: sub-01 run-01)
        longest = max(store.frames(i) for i in tables)
        first = min(i for i in tables if store.frames(i) == longest)
        design_events = tables[first]
        design_run = f"sub-{store.manifest['subject'].iat[first]} run-{store.manifest['run'].iat[first]}"
    return StoreStatistics(
        source=str(store.path), roi_labels=store.roi_labels, tr=tr, runs=len(store),
        subjects=int(np.unique(subjects).size), fc=fc_sum / len(store), ar1=ar1, ar1_measured=measured, sd=sd,
        demeaned=demeaned, mean=means.mean(axis=0), mean_sd=means.std(axis=0),
        fc_between=_pair_covariance(np.array(fcz), subjects), regressors=regressors, beta=beta,
        beta_between=beta_between, design_events=design_events, design_run=design_run,
        events_dir=str(folder) if folder else None, runs_with_events=len(tables),
    )


def _leading(stats: StoreStatistics, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(V Lambda^1/2 [R, R], V_k Lambda_k^1/2 [R, k], group FC [R, R]) of the group FC's eigendecomposition."""
    w, v = np.linalg.eigh(stats.fc)
    w, v = np.clip(w[::-1], 0, None), v[:, ::-1]
    root = v * np.sqrt(w)
    return root, root[:, : min(k, len(w))], (root @ root.T)


def _subject_fc(lead: tuple[np.ndarray, np.ndarray, np.ndarray], eps: float, noise: np.ndarray) -> np.ndarray:
    """[S, R, R] subject correlations from noise [S, R, k]: with C = V Lambda V^T, each of the k leading components
    sqrt(lambda_j) v_j becomes sqrt(lambda_j) v_j + eps sum_i sqrt(lambda_i) n_ij v_i (tilted towards the other
    components and rescaled), the rest of the spectrum is kept, and the sum is rescaled to a correlation matrix.
    In formulas, W = V Lambda^1/2 N and C_s ~ C + eps (W B^T + B W^T) + eps^2 W W^T (B = V_k Lambda_k^1/2), whose
    expectation is (1 + k eps^2) C: the subjects scatter around the group FC, not around a distorted one."""
    root, lead_k, group = lead
    w = root @ noise  # [S, R, k]
    cross = w @ lead_k.T
    c = group + eps * (cross + cross.transpose(0, 2, 1)) + eps**2 * (w @ w.transpose(0, 2, 1))
    d = 1 / np.sqrt(np.einsum("sii->si", c))
    c *= d[:, :, None] * d[:, None, :]
    return c


def _fc_deviation(c: np.ndarray, group: np.ndarray) -> float:
    """Mean squared Fisher-z deviation of subject correlations [S, R, R] from `group`, over ROI pairs."""
    iu = np.triu_indices(group.shape[0], 1)
    z = np.arctanh(np.clip(c[:, iu[0], iu[1]], -0.999999, 0.999999))
    g = np.arctanh(np.clip(group[iu], -0.999999, 0.999999))
    return float(((z - g) ** 2).mean())


def surrogate_jitter(stats: StoreStatistics, config: SurrogateConfig) -> float:
    """eps: `config.fc_jitter`, or (auto) the value whose subject FCs deviate from the group FC as much as the
    source's subjects do (`stats.fc_between`), found by bisection on 64 draws; DEFAULT_FC_JITTER when the store has
    no subject with two runs."""
    if config.fc_jitter != "auto":
        return float(config.fc_jitter)
    if stats.fc_between is None or stats.fc_between <= 0:
        logger.info("fc_jitter auto: no between-subject FC variance measurable in %s; using %g", stats.source,
                    DEFAULT_FC_JITTER)
        return DEFAULT_FC_JITTER
    lead = _leading(stats, config.components)
    noise = np.random.default_rng([config.seed, 9]).standard_normal(
        (_CALIBRATION_SUBJECTS, stats.num_rois, lead[1].shape[1]))

    def spread(eps: float) -> float:  # around the drawn subjects' mean FC, as the source's is around its mean
        c = _subject_fc(lead, eps, noise)
        return _fc_deviation(c, c.mean(axis=0))

    lo, hi = 0.0, 1.0
    while spread(hi) < stats.fc_between and hi < 64:
        lo, hi = hi, hi * 2
    for _ in range(25):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if spread(mid) < stats.fc_between else (lo, mid)
    return (lo + hi) / 2


def _cholesky(m: np.ndarray) -> np.ndarray:
    """Batched Cholesky factors of symmetric [S, R, R] matrices; a matrix that is not positive definite is first
    projected onto the positive definite cone (eigenvalues clipped at 1e-6 of their mean)."""
    try:
        return np.linalg.cholesky(m)
    except np.linalg.LinAlgError:
        w, v = np.linalg.eigh(m)
        w = np.maximum(w, 1e-6 * np.abs(w).mean(axis=1, keepdims=True))
        return np.linalg.cholesky((v * w[:, None, :]) @ v.transpose(0, 2, 1))


def _surrogate_chunk(stats: StoreStatistics, config: SurrogateConfig, lead: tuple, eps: float, design: np.ndarray,
                     chunk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Subjects chunk * SURROGATE_CHUNK ... of the whole (full) chunk: (x [S, T, R] float32, fc [S, R, R],
    betas [S, K, R] in source units, evoked [S] int)."""
    rng = np.random.default_rng([config.seed, 8, chunk])
    s, r, t, k, m = SURROGATE_CHUNK, stats.num_rois, config.frames, design.shape[1], lead[1].shape[1]
    fc = _subject_fc(lead, eps, rng.standard_normal((s, r, m)))
    evoked = (rng.random(s) < config.evoked_share).astype(np.int64) * (k > 0)
    betas = (stats.beta + stats.beta_between[:, None] * rng.standard_normal((s, k, r))) * stats.sd
    betas *= evoked[:, None, None]
    offsets = stats.mean + stats.mean_sd * rng.standard_normal((s, r))
    phi = stats.ar1
    innovation = _cholesky(fc * (1 - np.outer(phi, phi))).astype(np.float32)
    start = _cholesky(fc).astype(np.float32)
    z = rng.standard_normal((s, t, r), dtype=np.float32)
    x = z @ innovation.transpose(0, 2, 1)  # rows e_t with Cov(e_t) = C_s o (1 - phi phi^T)
    x[:, 0] = (z[:, 0, None, :] @ start.transpose(0, 2, 1))[:, 0]  # x_0 ~ N(0, C_s): stationary from the start
    phi32 = phi.astype(np.float32)
    for i in range(1, t):
        x[:, i] += phi32 * x[:, i - 1]
    x *= stats.sd.astype(np.float32)
    if k:
        x += (design[None] @ betas).astype(np.float32)
    if stats.demeaned:
        x -= x.mean(axis=1, keepdims=True)
    else:
        x += offsets.astype(np.float32)[:, None, :]
    return x, fc, betas, evoked


def surrogate_bold(stats: StoreStatistics, config: SurrogateConfig, *, progress: bool = True,
                   jitter: float | None = None) -> Iterator[Surrogate]:
    """Yield `config.subjects` surrogate subjects drawn from `stats` (see SURROGATE_METHOD), in order.

    Subjects are drawn SURROGATE_CHUNK at a time, vectorised; chunk c's generator is seeded by (seed, c) and always
    fills a whole chunk, so subject i's data depend only on the seed and i.
    """
    from tqdm.auto import tqdm

    config.validate()
    eps = surrogate_jitter(stats, config) if jitter is None else jitter
    lead = _leading(stats, config.components)
    design = stats.design(config.frames)
    with tqdm(total=config.subjects, desc="surrogates", unit="subj", disable=not progress) as bar, \
            _single_threaded_blas():
        for chunk in range(math.ceil(config.subjects / SURROGATE_CHUNK)):
            x, fc, betas, evoked = _surrogate_chunk(stats, config, lead, eps, design, chunk)
            n = min(SURROGATE_CHUNK, config.subjects - chunk * SURROGATE_CHUNK)
            for j in range(n):
                yield Surrogate(x[j].T, fc[j], betas[j], int(evoked[j]))
            bar.update(n)


def surrogate_store(out: str | Path, like: str | Path | RunStore, config: SurrogateConfig, *,
                    events: str | Path | None = None, overwrite: bool = False, progress: bool = True,
                    stats: StoreStatistics | None = None) -> RunStore:
    """Write `config.subjects` surrogate subjects of the store `like` into a new store at `out` and return it.

    Same ROI count, labels and TR as `like`; subjects ``sur0000``... (one run each, phenotype column ``evoked``);
    ``metadata["surrogate"]`` records that the data are surrogates, the source store, the method, the config, the
    fitted statistics' summary and the shared design; ``metadata["atlas"]`` is copied from the source. `stats`
    (from `fit_store_statistics(like, events=...)`) skips the fit, e.g. when writing several sizes.

    Raises:
        DataError / ConfigError: no such store, bad config, unusable events (see `fit_store_statistics`).
    """
    config.validate()
    source = like if isinstance(like, RunStore) else RunStore(like)
    if stats is None:
        stats = fit_store_statistics(source, events=events, progress=progress)
    eps = surrogate_jitter(stats, config)
    design = stats.design(config.frames)
    width = max(4, len(str(config.subjects - 1)))
    check_target(Path(out), overwrite=overwrite)
    spread = []
    with StoreWriter(out, stats.num_rois, roi_labels=stats.roi_labels, overwrite=overwrite) as writer:
        for i, sub in enumerate(surrogate_bold(stats, config, progress=progress, jitter=eps)):
            writer.add(sub.bold, subject=f"sur{i:0{width}d}", run="1", tr=stats.tr, source="surrogate",
                       phenotypes={"evoked": sub.evoked})
            if i < _CALIBRATION_SUBJECTS:
                spread.append(sub.fc)
        if "atlas" in source.metadata:
            writer.set_metadata("atlas", source.metadata["atlas"])
        fcs = np.array(spread)
        writer.set_metadata("surrogate", {
            "surrogates": True,
            "source_store": str(Path(source.path).resolve()),
            "source_runs": stats.runs,
            "source_subjects": stats.subjects,
            "method": SURROGATE_METHOD,
            **asdict(config),
            "fc_jitter_used": eps,
            "fc_between_source": stats.fc_between,
            "fc_between_surrogates": _fc_deviation(fcs, fcs.mean(axis=0)),
            "tr": stats.tr,
            "demeaned": stats.demeaned,
            "ar1": stats.ar1,
            "ar1_measured": stats.ar1_measured,
            "sd": stats.sd,
            "events": None if stats.design_events is None else {
                "folder": stats.events_dir, "runs_with_events": stats.runs_with_events, "design_run": stats.design_run,
                "regressors": stats.regressors, "design": design, "beta_group_sd_units": stats.beta,
                "beta_between_sd_units": stats.beta_between,
            },
        })
    return RunStore(out)
