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
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from brainjepa.bounds import bounded, check_bounds
from brainjepa.data.store import RunStore, StoreWriter
from brainjepa.errors import ConfigError

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
    out: str | Path, config: SimulationConfig, *, overwrite: bool = False, progress: bool = True
) -> RunStore:
    """Simulate `config.subjects` subjects (one run each) into a new store at `out` and return it.

    Subjects are named ``sim0000``...; ``metadata["simulation"]`` holds every parameter plus the model name,
    and ROI labels are ``mod<m>_roi<j>``.
    """
    config.validate()
    width = max(4, len(str(config.subjects - 1)))
    with StoreWriter(out, config.rois, roi_labels=roi_labels(config), overwrite=overwrite) as writer:
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
