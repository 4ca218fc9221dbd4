"""Subject identification across runs ("fingerprinting", Finn et al. 2015): does a run's feature vector pick out the
same subject's run in another session? No training is involved, so there is nothing to fit and nothing to leak.

For every ordered pair of sessions (a, b) (the store's ``run`` labels), the subjects that have both are the
candidates; each one's session-a run (the query) is assigned the candidate whose session-b run correlates best with
it, and is correct when that is the same subject. Before correlating, each session's features are centred by their
mean over that session's runs, so the pattern every run shares does not dominate the correlations. The accuracy is
reported per session pair (`Identification.by_pair`) and over all matches; chance is the mean of 1 / candidates.

The permutation null (`identification_null`) shuffles which subject each session-b run belongs to, pair by pair:
a query is then correct when its best match happens to carry its subject's label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from brainjepa.errors import DataError


@dataclass(frozen=True)
class Identification:
    """Subject identification across runs: one entry per query (a run matched against another session).

    Attributes:
        subjects: the subject of each query run [Q].
        pairs: the sessions of each query, "a->b" (run of session a matched among the runs of session b) [Q].
        matched: the subject each query was matched to [Q].
        chance: expected accuracy of a random match: mean over queries of 1 / candidates.
        query_pos, match_pos: positions of the query's subject and of its match among the pair's candidates [Q]
            (what the permutation null reshuffles).
    """

    subjects: np.ndarray
    pairs: np.ndarray
    matched: np.ndarray
    chance: float
    query_pos: np.ndarray
    match_pos: np.ndarray

    @property
    def queries(self) -> int:
        return len(self.subjects)

    @property
    def accuracy(self) -> float:
        """Fraction of the queries matched to their own subject."""
        return float(np.mean(self.matched == self.subjects)) if self.queries else math.nan

    def by_pair(self) -> dict[str, float]:
        """Accuracy of each session pair "a->b", in sorted order."""
        return {str(p): float(np.mean((self.matched == self.subjects)[self.pairs == p]))
                for p in sorted(set(self.pairs.tolist()))}


def identify_subjects(features: np.ndarray, subjects: Sequence, sessions: Sequence) -> Identification:
    """Match each run to the runs of another session by Pearson correlation of features (no training).

    Args:
        features: [N, ...] one row per run (flattened).
        subjects, sessions: [N] subject and session of each run; a subject has at most one run per session.

    Raises:
        DataError: mismatched lengths, a subject with two runs in one session, or no pair of sessions with two
            or more subjects in common.
    """
    x = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    subj, sess = np.asarray(subjects).astype(str), np.asarray(sessions).astype(str)
    if not len(x) == len(subj) == len(sess):
        raise DataError(f"identification: {len(x)} feature rows, {len(subj)} subjects, {len(sess)} sessions")
    where: dict[str, dict[str, int]] = {}
    for i, (s, r) in enumerate(zip(subj.tolist(), sess.tolist(), strict=True)):
        if r in where.setdefault(s, {}):
            raise DataError(f"identification: subject {s!r} has two runs labelled {r!r}")
        where[s][r] = i
    found: list[tuple[str, str, str, int, int]] = []  # (subject, "a->b", matched subject, query pos, match pos)
    inverse_candidates: list[float] = []
    labels = sorted(set(sess))
    for a in labels:
        for b in labels:
            both = sorted(s for s, runs in where.items() if a in runs and b in runs) if a != b else []
            if len(both) < 2:
                continue
            query = _row_zscore(_centre(x[[where[s][a] for s in both]]))
            database = _row_zscore(_centre(x[[where[s][b] for s in both]]))
            best = (query @ database.T).argmax(1)
            found += [(s, f"{a}->{b}", both[best[k]], k, int(best[k])) for k, s in enumerate(both)]
            inverse_candidates += [1.0 / len(both)] * len(both)
    if not found:
        raise DataError("identification needs two sessions (runs) shared by at least two subjects; "
                        f"found sessions {labels} with no such pair")
    subject_of, pair, matched, qpos, mpos = (np.array(column) for column in zip(*found, strict=True))
    return Identification(subject_of, pair, matched, float(np.mean(inverse_candidates)), qpos.astype(np.int64),
                          mpos.astype(np.int64))


def identification_null(found: Sequence[Identification], n: int, seed: int = 0) -> np.ndarray:
    """Accuracy under `n` random relabellings of the database runs [n], averaged over `found` (one per model
    seed, all with the same queries): in each session pair, the candidates' subject labels are permuted (the same
    permutation for every seed), and a query counts as correct when its best match carries its own label."""
    first = found[0]
    rng = np.random.default_rng(seed)
    correct = np.zeros((n, len(found), first.queries), dtype=bool)
    for pair in sorted(set(first.pairs.tolist())):
        rows = np.flatnonzero(first.pairs == pair)
        size = int(first.query_pos[rows].max()) + 1
        perms = np.argsort(rng.random((n, size)), axis=1)  # perms[k, j]: the label database run j now carries
        for m, ident in enumerate(found):
            correct[:, m, rows] = perms[:, ident.match_pos[rows]] == ident.query_pos[rows]
    return correct.mean(2).mean(1)


def _centre(x: np.ndarray) -> np.ndarray:
    return x - x.mean(0, keepdims=True)


def _row_zscore(x: np.ndarray) -> np.ndarray:
    """Rows scaled so that a dot product is their Pearson correlation (constant rows -> 0)."""
    x = x - x.mean(1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


__all__ = ["Identification", "identification_null", "identify_subjects"]
