"""scikit-learn's estimator checks (``check_estimator``) on both estimators.

Each estimator is checked with its defaults (Adam on minibatches) and with
``solver="lbfgs"`` (full batch; ``max_iter=50``: with 200 iterations L-BFGS fits the
checks' small multilabel set so tightly that float64 sigmoids round to exactly 1, which
``check_classifiers_multilabel_output_format_predict_proba`` refuses, as it would
scikit-learn's own MLP).  No check is expected to fail.
"""
import pytest

pytest.importorskip("sklearn")

from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from fastdnn.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

ESTIMATORS = [MLPClassifier(), MLPRegressor(),
              MLPClassifier(solver="lbfgs", max_iter=50), MLPRegressor(solver="lbfgs", max_iter=50)]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(ESTIMATORS)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
