"""`BrainJEPAEmbedder`: Brain-JEPA embeddings as a scikit-learn transformer (drops into a `Pipeline`).

It follows scikit-learn's conventions: `__init__` stores its parameters unchanged, `fit` loads the model into
``model_`` and records ``n_features_in_``, `transform` refuses to run unfitted, and `clone`, `set_params`,
pickling and `set_output(transform="pandas")` work.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_array, check_is_fitted

from brainjepa.errors import DataError
from brainjepa.evaluation.embed import EmbedOptions, embed
from brainjepa.evaluation.options import option_fields
from brainjepa.models import BrainJEPA
from brainjepa.models.encoder import POOLINGS

# The settings of `EmbedOptions` that are this estimator's parameters, by parameter name (scikit-learn's
# `random_state` for the seed).
OPTION_PARAMETERS = {("random_state" if f.name == "seed" else f.name): f for f in option_fields(EmbedOptions)}


def _with_option_parameters(init: Callable) -> Callable:
    """`init` with `OPTION_PARAMETERS` in its signature as keyword parameters (and their defaults) in place of its
    ``**options``: scikit-learn reads an estimator's parameters from the signature of its `__init__`."""
    signature = inspect.signature(init)
    own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    options = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type)
               for name, f in OPTION_PARAMETERS.items()]
    init.__signature__ = signature.replace(parameters=own + options)
    return init


class BrainJEPAEmbedder(TransformerMixin, BaseEstimator):
    """Frozen Brain-JEPA features of ROI time series.

    Input X is [N, R, T] (raw series) or its 2-D flattening [N, R*T] (row-major, as ``X.reshape(N, -1)``);
    R must be the model's ROI count; T is cut into windows as described in `brainjepa.evaluation.embed`.
    Output is float32 [N, D] for ``pooling="mean"``, [N, R*D] for ``"roi"`` (ROI-major), [N, R*P*D] for
    ``"tokens"`` and [N, R(R-1)/2] for ``"tokenfc"`` (token FC, `brainjepa.models.encoder.token_fc`).

    Args:
        model: a BrainJEPA, or a save_pretrained / run folder, or a reference ``jepa-ep*.pth.tar``.
        gradient: gradient CSV for a reference checkpoint `model`.
        pooling: "mean", "roi", "tokens" or "tokenfc".
        tr: TR of the input series in seconds (needed with `target_tr`).
        progress: show a progress bar in `transform`.
        **options: every setting of `EmbedOptions` (they are this estimator's parameters, with their defaults):
            encoder, layer, windows, sampling_rate, target_tr, pad, normalization, masked_views, mask_keep,
            batch_size, device (None: where the model is), precision, and the masked views' seed, named
            ``random_state`` as scikit-learn names seeds. As in scikit-learn's own estimators, `random_state`
            is used only where there is something random (here: ``masked_views`` > 0); the other masked-view
            setting, `mask_keep`, is refused without views.
    """

    @_with_option_parameters
    def __init__(
        self,
        model: BrainJEPA | str | Path | None = None,
        *,
        gradient: str | Path | None = None,
        pooling: str = "mean",
        tr: float | None = None,
        progress: bool = False,
        **options: Any,
    ) -> None:
        unknown = sorted(set(options) - set(OPTION_PARAMETERS))
        if unknown:
            raise TypeError(f"BrainJEPAEmbedder got unexpected keyword argument(s) {unknown}")
        self.model = model
        self.gradient = gradient
        self.pooling = pooling
        self.tr = tr
        self.progress = progress
        for name, f in OPTION_PARAMETERS.items():
            setattr(self, name, options.get(name, f.default))

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> BrainJEPAEmbedder:  # noqa: N803 (sklearn API)
        """Load the model and check X's shape; `y` is ignored (features are unsupervised)."""
        if self.model is None:
            raise DataError("BrainJEPAEmbedder needs model=<BrainJEPA, folder or checkpoint>")
        self.options_ = self._options()
        self.model_ = BrainJEPA.load(self.model, gradient=self.gradient)
        series = self._series(X)
        self.n_features_in_ = int(series.shape[1] * series.shape[2])
        self._n_features_out = math.prod(self.model_.encoder.pooled_shape(self.pooling))
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:  # noqa: N803 (sklearn API)
        """Embeddings float32 [N, n_features_out] of X ([N, R, T] or [N, R*T])."""
        check_is_fitted(self, "model_")
        series = self._series(X)
        if series.shape[1] * series.shape[2] != self.n_features_in_:
            raise ValueError(  # scikit-learn's wording (check_n_features_in_after_fitting)
                f"X has {series.shape[1] * series.shape[2]} features, but BrainJEPAEmbedder is expecting "
                f"{self.n_features_in_} features as input (values per sample: ROIs x frames)"
            )
        out = embed(self.model_, series, pooling=self.pooling, options=self.options_, tr=self.tr,
                    progress=self.progress)
        return out.reshape(len(series), -1).numpy()

    def __sklearn_tags__(self):  # scikit-learn >= 1.6
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]  # embeddings are float32 whatever the input
        return tags

    def _more_tags(self) -> dict:  # scikit-learn 1.3 - 1.5 (pyproject's minimum is 1.3)
        return {"preserves_dtype": [np.float32]}

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        """``emb_<d>`` (mean), ``roi<r>_emb_<d>`` (roi), ``tok<n>_emb_<d>`` (tokens) or ``fc_roi<i>_roi<j>``
        (tokenfc, i < j), in output order."""
        check_is_fitted(self, "model_")
        cfg = self.model_.config
        dims = range(cfg.embed_dim)
        if self.pooling == "mean":
            names = [f"emb_{d}" for d in dims]
        elif self.pooling == "tokenfc":
            names = [f"fc_roi{i}_roi{j}" for i in range(cfg.num_rois) for j in range(i + 1, cfg.num_rois)]
        else:
            prefix, count = ("roi", cfg.num_rois) if self.pooling == "roi" else ("tok", cfg.num_patches)
            names = [f"{prefix}{i}_emb_{d}" for i in range(count) for d in dims]
        return np.asarray(names, dtype=object)

    def _options(self) -> EmbedOptions:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {list(POOLINGS)}, got {self.pooling!r}")
        values = {f.name: getattr(self, name) for name, f in OPTION_PARAMETERS.items()}
        if not values["masked_views"]:  # scikit-learn sets random_state on any estimator that has one
            values.pop("seed")
        return EmbedOptions(**values)

    def _series(self, X: np.ndarray) -> np.ndarray:  # noqa: N803 (sklearn API)
        """X as float32 [N, R, T]; a 2-D X is unflattened with the model's ROI count. scikit-learn's `check_array`
        refuses what the model cannot take, in its usual words: sparse, complex, NaN / inf, 1-D, empty."""
        arr = check_array(X, dtype=np.float32, allow_nd=True)
        rois = self.model_.config.num_rois
        if arr.ndim == 2:
            if arr.shape[1] % rois:
                raise ValueError(f"2-D X needs R*T columns with R = {rois} ROIs; got {arr.shape[1]} columns")
            arr = arr.reshape(len(arr), rois, -1)
        if arr.ndim != 3 or arr.shape[1] != rois:
            raise ValueError(f"X must be [N, {rois}, T] or [N, {rois}*T], got shape {list(np.shape(X))}")
        return arr
