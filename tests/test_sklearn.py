"""BrainJEPAEmbedder follows scikit-learn's conventions and gives the same numbers as `brainjepa.embed`."""

from __future__ import annotations

import pickle

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from brainjepa import BrainJEPA, BrainJEPAEmbedder, embed, model_config
from brainjepa.errors import ConfigError
from brainjepa.evaluation.embed import EmbedOptions
from conftest import tiny_model

R, T, D = 12, 48, 32


@pytest.fixture(scope="module")
def model() -> BrainJEPA:
    return tiny_model(R, embed_dim=D).eval()


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """Two classes that differ in the amplitude of the first half of the ROIs."""
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 12)
    x = rng.normal(size=(24, R, T)).astype(np.float32)
    x[y == 1, : R // 2] *= 3.0
    return x, y


def test_params_stored_unchanged_and_clone(model):
    est = BrainJEPAEmbedder(model=model, pooling="roi", windows=2, device=None, batch_size=4)
    params = est.get_params()
    assert params["model"] is model and params["pooling"] == "roi" and params["windows"] == 2
    twin = clone(est)
    assert twin.get_params()["pooling"] == "roi" and not hasattr(twin, "model_")
    est.set_params(pooling="bogus", windows=0)  # no validation until fit, as scikit-learn requires
    assert est.pooling == "bogus"
    with pytest.raises(ValueError, match="pooling must be one of .*, got 'bogus'"):
        est.fit(np.zeros((2, R, T)))


def test_transform_equals_embed_for_3d_and_flat_input(model, data):
    x, _ = data
    est = BrainJEPAEmbedder(model=model, windows=2)
    out = est.fit_transform(x)
    assert out.shape == (24, D) and out.dtype == np.float32
    assert est.n_features_in_ == R * T
    want = embed(model, x, options=EmbedOptions(windows=2)).numpy()
    np.testing.assert_allclose(out, want, atol=1e-6)
    np.testing.assert_allclose(est.transform(x.reshape(24, -1)), want, atol=1e-6)
    roi = BrainJEPAEmbedder(model=model, pooling="roi").fit_transform(x)
    assert roi.shape == (24, R * D)
    np.testing.assert_allclose(roi.reshape(24, R, D).mean(1), embed(model, x).numpy(), atol=1e-5)


def test_not_fitted_and_shape_errors(model, data):
    x, _ = data
    with pytest.raises(NotFittedError):
        BrainJEPAEmbedder(model=model).transform(x)
    est = BrainJEPAEmbedder(model=model).fit(x)
    with pytest.raises(ValueError, match=rf"X has {R * (T - 8)} features, but BrainJEPAEmbedder is expecting {R * T} "):
        est.transform(x[:, :, :-8])
    with pytest.raises(ValueError, match=rf"2-D X needs R\*T columns with R = {R} ROIs; got 13 columns"):
        est.transform(np.zeros((2, 13)))
    with pytest.raises(ValueError, match=rf"X must be \[N, {R}, T\]"):
        est.transform(np.zeros((2, R + 1, T)))
    with pytest.raises(ConfigError, match="mask_keep"):
        BrainJEPAEmbedder(model=model, mask_keep=0).fit(x)
    with pytest.raises(ValueError, match="needs model="):
        BrainJEPAEmbedder().fit(x)


def test_feature_names_and_pandas_output(model, data):
    x, _ = data
    est = BrainJEPAEmbedder(model=model).fit(x)
    names = est.get_feature_names_out()
    assert names.tolist() == [f"emb_{d}" for d in range(D)]
    frame = est.set_output(transform="pandas").transform(x[:3])
    assert list(frame.columns) == names.tolist() and frame.shape == (3, D)
    roi_names = BrainJEPAEmbedder(model=model, pooling="roi").fit(x).get_feature_names_out()
    assert roi_names[0] == "roi0_emb_0" and roi_names[D] == "roi1_emb_0" and len(roi_names) == R * D


def test_pipeline_pickle_and_loading_from_a_folder(model, data, tmp_path):
    x, y = data
    folder = model.save_pretrained(tmp_path / "m")
    pipe = make_pipeline(BrainJEPAEmbedder(model=str(folder)), StandardScaler(), LogisticRegression(max_iter=500))
    pipe.fit(x[::2], y[::2])
    by_hand = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(embed(model, x[::2]).numpy(),
                                                                                   y[::2])
    np.testing.assert_allclose(pipe.predict_proba(x[1::2]), by_hand.predict_proba(embed(model, x[1::2]).numpy()),
                               atol=1e-6)
    again = pickle.loads(pickle.dumps(pipe))
    np.testing.assert_array_equal(again.predict_proba(x), pipe.predict_proba(x))
    pipe.set_params(brainjepaembedder__windows=3)
    assert pipe.named_steps["brainjepaembedder"].windows == 3


def _check_model() -> BrainJEPA:
    """One ROI, so that scikit-learn's checks (2-D X of 1 to 10 columns) are [N, 1, T] series."""
    torch.manual_seed(0)
    cfg = model_config("vit_tiny", num_rois=1, num_frames=8, patch_size=4, embed_dim=8, depth=1, num_heads=1,
                       pred_embed_dim=8, pred_depth=1, gradient_dim=1)
    return BrainJEPA(cfg, np.ones((1, 1))).eval()


# Checks the embedder fails by design, each with the reason.
EXPECTED_FAILED_CHECKS = {
    "check_estimators_overwrite_params": "a false alarm for a torch model passed as a parameter: the check compares "
    "joblib hashes of the model and of a deepcopy, and torch pickles storage addresses, so they never agree; "
    "test_fit_leaves_the_model_unchanged checks that fit mutates nothing",
    "check_estimators_dtypes": "its integer data gives some samples constant series, which the per-sample z-score "
    "(normalization='model' without a record) refuses: a constant series has no signal to embed",
}


@pytest.mark.filterwarnings("ignore")  # the embedding health check warns about this untrained model
@parametrize_with_checks([BrainJEPAEmbedder(model=_check_model(), pad=True)],
                         expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_fit_leaves_the_model_unchanged(model, data):
    x, _ = data
    state = {k: v.clone() for k, v in model.state_dict().items()}
    attrs = joblib.hash({k: v for k, v in vars(model).items() if k != "_modules"})
    est = BrainJEPAEmbedder(model=model).fit(x)
    est.transform(x)
    assert est.model is model and est.get_params()["model"] is model and not model.training
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert joblib.hash({k: v for k, v in vars(model).items() if k != "_modules"}) == attrs


def test_invalid_input_is_refused_in_scikit_learns_words(model, data):
    x, _ = data
    est = BrainJEPAEmbedder(model=model).fit(x)
    bad = x[:2].copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="Input contains NaN"):
        est.transform(bad)
    with pytest.raises(ValueError, match="Reshape your data"):
        est.transform(x[0, 0])
    with pytest.raises(TypeError, match="Sparse data was passed, but dense data is required"):
        import scipy.sparse

        est.transform(scipy.sparse.csr_matrix(x[:2].reshape(2, -1)))


def test_tokenfc_feature_names_are_the_roi_pairs_in_output_order(model: BrainJEPA, data: tuple) -> None:
    """tokenfc columns are the upper triangle of the ROI x ROI matrix, row-major without the diagonal (token_fc's
    order): one name per column, each ROI pair once, i < j."""
    x, _ = data
    est = BrainJEPAEmbedder(model=model, pooling="tokenfc").fit(x)
    rows, cols = np.triu_indices(R, k=1)
    assert est.get_feature_names_out().tolist() == [f"fc_roi{i}_roi{j}" for i, j in zip(rows, cols, strict=True)]
    assert est.transform(x[:2]).shape == (2, len(rows))


def test_the_series_tr_reaches_the_resampling_to_target_tr(model: BrainJEPA, data: tuple) -> None:
    """`tr` is the input's TR that `target_tr` resampling needs: the transformer gives what `embed` gives with it."""
    x, _ = data
    out = BrainJEPAEmbedder(model=model, tr=1.0, target_tr=0.5).fit_transform(x[:4])
    np.testing.assert_allclose(out, embed(model, x[:4], options=EmbedOptions(target_tr=0.5), tr=1.0).numpy(), atol=1e-6)
