"""`brainjepa simulate`: write a ready store of simulated BOLD with known per-subject parameters, or (with
``--like STORE``) of surrogate subjects in a real store's ROI space."""

from __future__ import annotations

import argparse
import time

from brainjepa.data.simulate import SimulationConfig, SurrogateConfig, simulate_store, surrogate_store
from brainjepa.errors import ConfigError

_HOPF_ONLY = ("rois", "tr", "modules", "batch_size", "allow_unusual_tr")
_LIKE_ONLY = ("events", "components", "fc_jitter", "evoked_share")


def _jitter(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a number, got {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="write a store of simulated BOLD (Hopf oscillators + HRF, or --like STORE: surrogates of a real store)",
        description="Without --like: Stuart-Landau oscillators on a modular connectome, convolved with a "
        "double-gamma HRF and sampled every TR. Phenotype columns: coupling (raises mean FC), group (0/1: module 0 "
        "crosses the Hopf bifurcation in group 1) and age (slows the oscillations). With --like STORE: surrogate "
        "subjects in STORE's ROI space (same ROIs, labels, TR and units), each with its own FC drawn around the "
        "store's group FC, per-ROI AR(1) dynamics and SD fitted to the store, and (where the store's runs have "
        "events) an evoked component from one run's block design with subject-specific ROI betas; see "
        "docs/samples.md. Events: a store from `brainjepa samples prepare` finds its sample cache's events/ "
        "folder; otherwise give --events DIR.",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="store directory to create")
    p.add_argument("--like", metavar="STORE", help="draw surrogate subjects of this store instead of the Hopf model")
    p.add_argument("--subjects", type=int, default=100, help="number of subjects, one run each (default 100)")
    p.add_argument("--frames", type=int, default=None,
                   help="frames T per run (default 160; 200 with --like)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same data (default 0)")
    p.add_argument("--rois", type=int, default=None, help="number of ROIs R (default 100; not with --like)")
    p.add_argument("--tr", type=float, default=None,
                   help="repetition time in seconds (default 2.0; not with --like, which uses the store's)")
    p.add_argument("--allow-unusual-tr", action="store_true",
                   help="accept a --tr outside what scanners use (0.05-30 s), which is refused by default")
    p.add_argument("--modules", type=int, default=None, help="number of network modules (default 4; not with --like)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="subjects integrated together, memory vs speed (default 32; not with --like)")
    p.add_argument("--events", metavar="DIR",
                   help="with --like: folder of BIDS-like sub-<id>[_...]_run-<id>_events.tsv files (onset or "
                   "onset_run, duration, trial_type) for the store's runs (default: the sample cache's events/ of a "
                   "store from `brainjepa samples prepare`; none: no evoked component)")
    p.add_argument("--components", type=int, default=None,
                   help="with --like: leading FC eigenvectors perturbed per subject (default 10)")
    p.add_argument("--fc-jitter", type=_jitter, default=None, metavar="auto|EPS",
                   help="with --like: size of the per-subject FC perturbation; auto matches the store's "
                   "between-subject FC variance (default auto)")
    p.add_argument("--evoked-share", type=float, default=None, metavar="F",
                   help="with --like: share of subjects given the evoked component (default 1.0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store at --out")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def _refuse(args: argparse.Namespace, names: tuple[str, ...], why: str) -> None:
    given = [f"--{n.replace('_', '-')}" for n in names if getattr(args, n) not in (None, False)]
    if given:
        raise ConfigError(f"{', '.join(given)} {why}")


def _or(value, default):
    return default if value is None else value


def run(args: argparse.Namespace) -> int:
    if args.like is not None:
        _refuse(args, _HOPF_ONLY, "cannot be used with --like (ROIs and TR are the store's)")
        config = SurrogateConfig(subjects=args.subjects, frames=_or(args.frames, 200), seed=args.seed,
                                 components=_or(args.components, 10), fc_jitter=_or(args.fc_jitter, "auto"),
                                 evoked_share=_or(args.evoked_share, 1.0))
        start = time.perf_counter()
        store = surrogate_store(args.out, args.like, config, events=args.events, overwrite=args.overwrite,
                                progress=not args.no_progress)
        meta = store.metadata["surrogate"]
        evoked = "no events" if meta["events"] is None else f"evoked design of {meta['events']['design_run']}"
        print(f"wrote {store.path}: {len(store)} surrogate runs x {store.num_rois} ROIs x {config.frames} frames "
              f"like {args.like} (fc_jitter {meta['fc_jitter_used']:.3g}, {evoked}) in "
              f"{time.perf_counter() - start:.1f} s")
        return 0
    _refuse(args, _LIKE_ONLY, "only apply with --like STORE")
    config = SimulationConfig(
        subjects=args.subjects,
        rois=_or(args.rois, 100),
        frames=_or(args.frames, 160),
        tr=_or(args.tr, 2.0),
        modules=_or(args.modules, 4),
        seed=args.seed,
        batch_size=_or(args.batch_size, 32),
    )
    store = simulate_store(args.out, config, overwrite=args.overwrite, progress=not args.no_progress,
                           allow_unusual_tr=args.allow_unusual_tr)
    print(f"wrote {store.path}: {len(store)} runs x {store.num_rois} ROIs x {config.frames} frames "
          f"(phenotypes: coupling, group, age)")
    return 0
