"""The kernel contract in fastdnn.kernels.spec: code checks, the layout, the scalar
formulas (against the NumPy oracle in naive.py, and against their compiled CPU twins),
and that each backend implements the whole protocol.

Tolerances of the formula tests, in units of float64's eps (2.2e-16):

* activations, loss terms, updates: 8 eps relative (the oracle reaches the same values
  through SciPy's ``expit``/``erf``/``logsumexp``: measured at most 1 ulp apart);
* derivatives: 8 eps relative plus 8 eps absolute.  The derivatives read from the
  output ``a = g(z)`` lose the digits of ``a`` that ``1 - a`` or ``a + 1`` cancel (elu'
  at z = -30 is 9.4e-14, read from ``a = -1 + 9.4e-14``: an error of ~1e-17); they are
  bounded by 1.13, so an absolute error of a few eps is the honest bound.
"""
import ast
import decimal
import math
import os

import numpy as np
import pytest

import naive
from fastdnn.kernels import spec
from support import assert_implements, protocol_methods

EPS = np.finfo(np.float64).eps
RTOL = 8 * EPS
ATOL_DERIVATIVE = 8 * EPS

#: Inputs from -1e4 to 1e4: the huge ones where exp overflows or underflows, the
#: kinks at +-0, tiny (1e-300, and a subnormal) and moderate values.
GRID = np.array([-1e4, -700.0, -100.0, -30.0, -8.0, -5.0, -1.0, -1e-3, -1e-300, -0.0, 0.0,
                 5e-324, 1e-300, 1e-3, 1.0, 5.0, 8.0, 30.0, 100.0, 700.0, 1e4])
#: Codes no table holds.
BAD_CODES = [-1, 9, 99, 2**31]


def schedule_params():
    """A parameter vector per schedule code, in the named slots."""
    params = {code: np.zeros(spec.N_SCHEDULE) for code in spec.SCHEDULE_CODES}
    params[spec.INVERSE_TIME][spec.DECAY] = 0.1
    params[spec.STEP][spec.STEP_SIZE], params[spec.STEP][spec.GAMMA] = 3, 0.5
    params[spec.EXPONENTIAL][spec.RATE], params[spec.EXPONENTIAL][spec.DECAY_STEPS] = 0.9, 4
    params[spec.COSINE][spec.TOTAL_STEPS], params[spec.COSINE][spec.MIN_FACTOR] = 10, 0.1
    params[spec.PLATEAU][spec.SCALE] = 0.01
    return params


# ------------------------------------------------------------------ codes and layout
@pytest.mark.parametrize("kind,codes", [
    ("activation", spec.ACTIVATION_NAMES), ("loss", spec.LOSS_NAMES),
    ("optimizer", spec.OPTIMIZER_CODES), ("schedule", spec.SCHEDULE_CODES),
])
def test_check_code(kind, codes):
    for code in codes:
        assert spec.check_code(kind, code, codes) == code
    for bad in BAD_CODES + [len(codes), 0.5, None]:
        with pytest.raises(ValueError, match=f"unknown {kind} code"):
            spec.check_code(kind, bad, codes)


def test_code_tables_are_consistent():
    assert sorted(spec.ACTIVATIONS.values()) == list(range(len(spec.ACTIVATIONS)))
    assert sorted(spec.LOSSES.values()) == list(range(len(spec.LOSSES)))
    assert spec.NEEDS_Z <= set(spec.ACTIVATION_NAMES)
    assert spec.CLASSIFIERS <= set(spec.LOSS_NAMES)
    assert set(naive.ACTIVATIONS) == set(spec.ACTIVATIONS)
    assert set(naive.LOSSES) == set(spec.LOSSES)


@pytest.mark.parametrize("bad", BAD_CODES)
@pytest.mark.parametrize("sizes,position", [([3, 4, 2], 0), ([3, 4, 5, 2], 1)])
def test_layout_rejects_an_unknown_activation_code(sizes, position, bad):
    codes = [spec.RELU] * (len(sizes) - 2)
    codes[position] = bad
    with pytest.raises(ValueError, match="unknown activation code"):
        spec.Layout.build(sizes, codes, 4)


def test_layout_offsets():
    """Parameters packed as [W_1, b_1, W_2, b_2, ...]; activations after the input slot,
    Z before A only where the derivative needs it; the output layer is linear."""
    sizes, cap = [3, 4, 5, 2], 7
    codes = [spec.GELU, spec.TANH]
    layout = spec.Layout.build(sizes, codes, cap)
    t = layout.table
    assert layout.n_params == 3 * 4 + 4 + 4 * 5 + 5 + 5 * 2 + 2
    assert list(t[:, spec.W_OFF]) == [0, 16, 41] and list(t[:, spec.B_OFF]) == [12, 36, 51]
    assert list(t[:, spec.ACT]) == [spec.GELU, spec.TANH, spec.IDENTITY]
    assert t[0, spec.Z_OFF] == cap * 3 and t[0, spec.A_OFF] == cap * (3 + 4)  # gelu keeps Z
    assert t[1, spec.Z_OFF] == t[1, spec.A_OFF] == t[1, spec.IN_OFF] + cap * 4  # tanh: A over Z
    assert t[1, spec.IN_OFF] == t[0, spec.A_OFF] and t[2, spec.IN_OFF] == t[1, spec.A_OFF]
    assert layout.out_offset == t[2, spec.A_OFF]
    assert layout.work_size == layout.out_offset + cap * 2
    assert layout.delta_size == cap * 5 and layout.cap == cap


# ------------------------------------------------------------------ formulas vs naive.py
@pytest.mark.parametrize("name", list(spec.ACTIVATIONS))
def test_activation_formulas_match_the_oracle(name):
    code = spec.ACTIVATIONS[name]
    got = np.array([spec.activate(z, code) for z in GRID])
    # gelu's tail: erfc's argument z / sqrt 2 rounds, and erfc moves by 2 x^2 times that
    # (1.7e-13 at z = -30; the erf form, and the oracle's before, gave 0 there).
    rtol = 1e-12 if name == "gelu" else RTOL
    np.testing.assert_allclose(got, naive.ACTIVATIONS[name](GRID), rtol=rtol, atol=0)
    # The named formula (where there is one) is the one activate dispatches to.
    if hasattr(spec, name):
        assert [getattr(spec, name)(z) for z in GRID] == list(got)


@pytest.mark.parametrize("name", list(spec.ACTIVATIONS))
def test_derivative_formulas_match_the_oracle(name):
    code = spec.ACTIVATIONS[name]
    # As the kernels call it: a = g(z) from the forward pass, and z itself.
    got = np.array([spec.derivative(spec.activate(z, code), z, code) for z in GRID])
    np.testing.assert_allclose(got, naive.DERIVATIVES[name](GRID),
                               rtol=1e-12 if name == "gelu" else RTOL, atol=ATOL_DERIVATIVE)


#: Rows of logits for the cross-entropy term, with every label of each.
CE_ROWS = [[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [0.0, 0.0, 0.0], [1e-300, -1e-300, 5e-324],
           [-30.0, 30.0, 8.0], [-1e4, -1e4 + 1.0, -1e4], [700.0, 699.0, -700.0]]


def exact_cross_entropy(z, label):
    """``log(sum_j exp(z_j - z_label))`` to 50 digits (decimal), rounded once."""
    with decimal.localcontext() as context:
        context.prec = 50
        d = [decimal.Decimal(v) for v in z]  # exact: every float is a decimal
        top = max(d)
        return float((top - d[label]) + sum((v - top).exp() for v in d).ln())


@pytest.mark.parametrize("row", CE_ROWS + [[1e16, 1e16, -1e16], [1e30, 1e30, 1e30]])
def test_cross_entropy_term_matches_the_oracle(row):
    """Against the term to 50 digits, within a few rounding errors of the loss's scale:
    where the label's logit is the largest the term is ``log(sum_exp)`` of a sum >= 1,
    whose rounding is absolute (row [-30, 30, 8], label 1: 2.79e-10, which scipy's
    ``logsumexp(z) - z[y]`` gets wrong by 1.6e-15, and ``zmax + log(sum_exp) - z[y]``
    did too; logits of 1e16 lost the whole log 2)."""
    z = np.array(row)
    zmax = z.max()
    sum_exp = float(np.exp(z - zmax).sum())
    for label in range(len(row)):
        want = exact_cross_entropy(row, label)
        got = spec.cross_entropy_term(zmax, sum_exp, z[label])
        assert math.isfinite(got)
        assert abs(got - want) <= 4 * EPS * max(1.0, abs(want)), (label, got, want)


TARGETS = {"mse": [-1e4, -1.0, 0.0, 1e-300, 0.5, 1e4], "binary_cross_entropy": [0.0, 0.3, 1.0],
           "poisson": [0.0, 1e-300, 0.5, 1.0, 3.0, 1e4, 1e300]}
ELEMENTWISE = {"mse": spec.squared_error, "binary_cross_entropy": spec.sigmoid_cross_entropy,
               "poisson": spec.poisson_nll}


@pytest.mark.parametrize("loss", list(TARGETS))
def test_elementwise_loss_terms_match_the_oracle(loss):
    """The term and its share ``inv * dL/dz`` of the gradient, for one element: the
    oracle's mean over a 1 x 1 array is the term itself.  Finite everywhere but where
    poisson's exp(z) overflows: +inf there, and never the NaN of inf - inf where t z
    overflows too (the oracle's answer there)."""
    formula = ELEMENTWISE[loss]
    inv = 1.0 / 3.0
    for z in GRID:
        for t in TARGETS[loss]:
            with np.errstate(over="ignore", invalid="ignore"):
                want, want_grad = naive.LOSSES[loss](np.array([[z]]), np.array([[t]]))
            term, grad = formula(z, t, inv)
            if loss == "poisson" and z > 709.78:
                assert term == grad == math.inf, (z, t)
                continue
            assert math.isfinite(term) and math.isfinite(grad), (z, t)
            np.testing.assert_allclose(term, want, rtol=RTOL, atol=0, err_msg=f"{z}, {t}")
            np.testing.assert_allclose(grad, want_grad[0, 0] * inv, rtol=RTOL, atol=0,
                                       err_msg=f"{z}, {t}")
    if loss == "poisson":
        assert formula(1e4, 1e306, inv) == (math.inf, math.inf)  # t z = 1e310 overflows


@pytest.mark.parametrize("code", sorted(spec.LOSS_NAMES) + BAD_CODES)
def test_inverse_link_is_the_prediction_of_each_regression_loss(code):
    """z (mse), exp(z) (poisson; inf beyond float64, where Python's math.exp would
    raise), NaN for any other code."""
    for z in GRID:
        got = spec.inverse_link(z, code)
        if code == spec.MSE:
            assert got == z
        elif code == spec.POISSON:
            with np.errstate(over="ignore"):
                assert got == pytest.approx(np.exp(z), rel=RTOL, abs=0)
        else:
            assert math.isnan(got)


T_VALUES = [0, 1, 2, 3, 7, 10, 11, 10**6]


@pytest.mark.parametrize("code", sorted(spec.SCHEDULE_CODES))
def test_lr_factor_matches_the_oracle(code):
    p = schedule_params()[code]
    oracle = {
        spec.CONSTANT: naive.constant_factor,
        spec.INVERSE_TIME: lambda t: naive.inverse_time_factor(t, p[spec.DECAY]),
        spec.STEP: lambda t: naive.step_factor(t, int(p[spec.STEP_SIZE]), p[spec.GAMMA]),
        spec.EXPONENTIAL: lambda t: naive.exponential_factor(t, p[spec.RATE], p[spec.DECAY_STEPS]),
        spec.COSINE: lambda t: naive.cosine_factor(t, p[spec.TOTAL_STEPS], p[spec.MIN_FACTOR]),
        spec.PLATEAU: lambda t: 0.01,  # the scale the host sets, the same at every step
    }[code]
    for t in T_VALUES:
        np.testing.assert_allclose(spec.lr_factor(code, p, t), oracle(t), rtol=RTOL, atol=0,
                                   err_msg=f"t={t}")


@pytest.mark.parametrize("momentum,nesterov,wd", [(0.0, False, 0.0), (0.9, False, 0.01),
                                                  (0.9, True, 0.0)])
def test_sgd_step_matches_the_oracle(momentum, nesterov, wd):
    rng = np.random.default_rng(0)
    theta = rng.standard_normal(5)
    ref = naive.SGD(0.1, momentum=momentum, nesterov=nesterov, weight_decay=wd)
    want = [theta.copy()]
    velocity = np.zeros(5)
    for step in range(3):
        g = rng.standard_normal(5)
        ref.step(want, [g])
        for i in range(5):
            theta[i], velocity[i] = spec.sgd_step(theta[i], g[i], velocity[i], 0.1, momentum,
                                                  nesterov, wd, step == 0, 0.0)
        np.testing.assert_allclose(theta, want[0], rtol=RTOL, atol=0)


@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_step_matches_the_oracle(decoupled):
    rng = np.random.default_rng(1)
    theta = rng.standard_normal(5)
    lr, betas, eps, wd = 1e-2, (0.9, 0.999), 1e-8, 0.1
    ref = naive.Adam(lr, betas=betas, eps=eps, weight_decay=wd, decoupled=decoupled)
    want = [theta.copy()]
    avg_grad, avg_sq = np.zeros(5), np.zeros(5)
    for t in range(1, 4):
        g = rng.standard_normal(5)
        ref.step(want, [g])
        step_size, inv_sqrt_bias2 = spec.adam_scalars(lr, *betas, t)
        for i in range(5):
            if decoupled:
                theta[i] = spec.decoupled_decay(theta[i], lr, wd)
            theta[i], avg_grad[i], avg_sq[i] = spec.adam_step(
                theta[i], g[i], avg_grad[i], avg_sq[i], step_size, inv_sqrt_bias2, *betas,
                1.0 - betas[0], 1.0 - betas[1], eps, wd, decoupled, 0.0)
        np.testing.assert_allclose(theta, want[0], rtol=RTOL, atol=0)


# ------------------------------------------------------------------ unknown codes
@pytest.mark.parametrize("bad", BAD_CODES)
def test_dispatching_formulas_give_nan_for_an_unknown_code(bad):
    assert math.isnan(spec.activate(0.5, bad))
    assert math.isnan(spec.derivative(0.5, 0.5, bad))
    assert math.isnan(spec.lr_factor(bad, np.ones(spec.N_SCHEDULE), 3))


# ------------------------------------------------------------------ compiled CPU twins
def formula_cases():
    """Arguments for every formula in spec.FORMULAS (one list of tuples per name)."""
    sched = schedule_params()
    act_codes = sorted(spec.ACTIVATION_NAMES) + BAD_CODES[:2]
    cases = {name: [(z,) for z in GRID] for name in (
        "tanh_rational", "sigmoid", "relu", "leaky_relu", "elu", "softplus", "gelu", "silu", "gelu_grad",
        "silu_grad")}
    # Derivatives read from the output take the outputs of their activation (outside
    # that range Python's math raises OverflowError where compiled code gives inf).
    for name in ("relu", "leaky_relu", "elu", "tanh", "sigmoid", "softplus"):
        code = spec.ACTIVATIONS[name]
        cases[name + "_grad"] = [(spec.activate(z, code),) for z in GRID]
    cases["activate"] = [(z, c) for z in GRID for c in act_codes]
    cases["derivative"] = [(spec.activate(z, c), z, c) for z in GRID for c in act_codes]
    cases["cross_entropy_term"] = [(max(r), float(np.exp(np.array(r) - max(r)).sum()), r[0])
                                   for r in CE_ROWS]
    cases["squared_error"] = [(z, t, 0.25) for z in GRID for t in TARGETS["mse"]]
    cases["sigmoid_cross_entropy"] = [(z, t, 0.25) for z in GRID for t in TARGETS["binary_cross_entropy"]]
    cases["poisson_nll"] = [(z, t, 0.25) for z in GRID for t in TARGETS["poisson"]]
    cases["inverse_link"] = [(z, c) for z in GRID for c in sorted(spec.LOSS_NAMES) + BAD_CODES[:2]]
    rows = [np.array(r, dtype=np.float64) for r in CE_ROWS] + [np.array([2.0, 5.0, 5.0, -1.0])]
    cases["softmax_row"] = [(r, np.empty_like(r)) for r in rows]
    cases["first_argmax"] = [(r,) for r in rows]
    cases["flush"] = [(x, tiny) for x in (0.0, 1e-310, -1e-310, 1e-300, -3.0)
                      for tiny in (0.0, 2.2250738585072014e-308)]
    cases["sgd_step"] = [(0.3, -1.2, 0.7, 0.1, m, n, wd, first, 0.0)
                         for m, n in ((0.0, False), (0.9, False), (0.9, True))
                         for wd in (0.0, 0.01) for first in (True, False)]
    cases["adam_scalars"] = [(1e-3, 0.9, 0.999, t) for t in (1, 2, 10, 1000)]
    cases["decoupled_decay"] = [(0.3, 1e-3, wd) for wd in (0.0, 0.01, 1.0)]
    cases["adam_step"] = [(0.3, -1.2, 0.05, 0.02, 1e-2, 0.3, 0.9, 0.999, 0.1, 0.001, 1e-8, wd, dec,
                           0.0)
                          for wd in (0.0, 0.1) for dec in (False, True)]
    cases["step_l2"] = [(l2, ref, w) for l2 in (0.0, 0.3) for ref in (0.0, 16.0)
                        for w in (0.0, 12.0, 16.0, 40.5)]
    cases["clip_factor"] = [(root, scale, bound) for root in (0.0, 0.5, 1.0, 2.0, 1.9e300)
                            for scale in (1.0, 1.5e308, 1e-170) for bound in (1e-175, 1.0, 1e308)]
    cases["lr_factor"] = [(c, sched.get(c, np.ones(spec.N_SCHEDULE)), t)
                          for c in sorted(spec.SCHEDULE_CODES) + BAD_CODES[:2] for t in T_VALUES]
    keys = [np.uint64(k) for k in (0, 1, 12345, 2**63, 2**64 - 1)]
    cases["mix64"] = [(k,) for k in keys]
    cases["step_key"] = [(seed, step) for seed in (0, 7, 2**31 - 2) for step in (0, 1, 10**6)]
    cases["shuffle_key"] = [(seed,) for seed in (0, 7, 2**31 - 2, 2**62)]
    cases["random_index"] = [(k, i, n) for k in keys for i in (0, 5) for n in (1, 3, 10**9)]
    cases["dropout_scale"] = [(k, row, layer, unit, spec.dropout_threshold(rate))
                              for k in keys[:3] for row in (0, 9) for layer in (0, 2)
                              for unit in (0, 31) for rate in (0.0, 0.1, 0.5, 0.9)]
    return cases


def test_step_l2_is_sklearns_alpha_over_the_batch_weight():
    # l2 holds at the batch weight ref; scikit-learn's alpha / (c w) at any other w.
    assert spec.step_l2(0.3, 0.0, 12.0) == 0.3  # a penalty the same every step
    assert spec.step_l2(0.3, 16.0, 16.0) == 0.3  # a full batch: l2 as it is, to the bit
    assert spec.step_l2(0.3, 16.0, 12.0) == pytest.approx(0.3 * 16 / 12, rel=1e-15)
    assert spec.step_l2(0.3, 16.0, 0.0) == 0.3  # a batch of no weight: no division


def test_every_formula_has_cases():
    assert set(formula_cases()) == set(spec.FORMULAS)


@pytest.mark.parametrize("name", spec.FORMULAS)
def test_compiled_cpu_twins_agree_with_the_plain_formulas(name):
    from fastdnn.kernels.cpu import formulas as compiled

    plain, twin = getattr(spec, name), getattr(compiled, name)
    assert twin is not plain and twin.py_func.__code__ is plain.__code__
    for args in formula_cases()[name]:
        with np.errstate(over="ignore"):  # the hashes wrap around 2**64 on purpose
            want, got = plain(*args), twin(*args)
        # Same arithmetic, same libm, except that Numba takes a float to an integer power
        # by repeated squaring (0.999**10 comes out one ulp above Python's correctly
        # rounded pow; the error grows to ~t ulps of beta^t), and adam_scalars'
        # sqrt(1 - beta2^t) divides that by 1 - beta2^t.
        rtol = 4 * EPS
        if name == "adam_scalars":
            power = args[2] ** args[3]
            rtol += 4 * EPS * args[3] * power / (1.0 - power)
        np.testing.assert_allclose(got, want, rtol=rtol, atol=0, err_msg=f"{name}{args}")


# ------------------------------------------------------------------ the float32 tanh
def test_tanh_rational_is_tanh_to_float32_accuracy():
    """Within 2.5e-7 of tanh over every float32 magnitude that matters (and +-1 beyond),
    odd, NaN kept, computed the way the CPU's float32 activation does."""
    from fastdnn.kernels.cpu import formulas as compiled

    x = np.concatenate([np.linspace(-20, 20, 200_001), [0.0, 1e-30, -1e-5, 3.9e-4, 4.1e-4,
                                                        np.inf, -np.inf, 1e30, -1e30]])
    x = x.astype(np.float32).astype(np.float64)
    got = np.array([np.float32(compiled.tanh_rational(v)) for v in x], dtype=np.float64)
    np.testing.assert_allclose(got, np.tanh(x), rtol=0, atol=2.5e-7)
    np.testing.assert_array_equal(got[x > 0], -np.array([np.float32(compiled.tanh_rational(-v))
                                                         for v in x[x > 0]]))
    assert math.isnan(compiled.tanh_rational(math.nan))


# ------------------------------------------------------------------ random bits
def test_mix64_is_splitmix64():
    """Known answers: the first two outputs of splitmix64 seeded with 0."""
    with np.errstate(over="ignore"):  # the hash wraps around 2**64 on purpose
        first = spec.mix64(np.uint64(0))
        second = spec.mix64(np.uint64(0x9E3779B97F4A7C15))
    assert int(first) == 0xE220A8397B1DCDAF and int(second) == 0x6E789E6AA1B965F4


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_dropout_scale_drops_the_rate_and_keeps_the_mean(rate):
    from fastdnn.kernels.cpu import formulas as compiled

    threshold = spec.dropout_threshold(rate)
    key = compiled.step_key(3, 7)
    scales = np.array([compiled.dropout_scale(key, row, 1, unit, threshold)
                       for row in range(100) for unit in range(100)])
    kept = spec.DROP_ONE / (spec.DROP_ONE - threshold)  # 1 / (1 - rate), rate in 2**-32 steps
    assert set(np.unique(scales)) == {0.0, kept} and kept == pytest.approx(1 / (1 - rate))
    # 10,000 Bernoulli draws: the dropped share within 4 standard deviations.
    assert abs((scales == 0).mean() - rate) < 4 * np.sqrt(rate * (1 - rate) / scales.size)
    assert abs(scales.mean() - 1.0) < 4 * np.sqrt(rate / (1 - rate) / scales.size)


def test_random_index_is_uniform():
    from fastdnn.kernels.cpu import formulas as compiled

    key = compiled.mix64(np.uint64(11))
    counts = np.bincount([compiled.random_index(key, i, 7) for i in range(7000)], minlength=7)
    assert counts.min() > 850 and counts.max() < 1150  # 1000 +- ~4.5 sigma


# ------------------------------------------------------------------ the protocol
def test_protocols_declare_what_the_model_uses():
    assert set(protocol_methods(spec.Backend)) == {
        "limit_threads", "check_X", "pack_targets", "get_theta", "set_theta", "theta_finite",
        "outputs", "to_numpy", "evaluate", "gradient", "compile_ahead", "trainer",
        "trainer_group"}
    assert set(protocol_methods(spec.Trainer)) == {"run_epoch", "run_steps"}
    assert set(spec.Backend.__annotations__) == {"device", "n_params"}


def test_cpu_backend_implements_the_whole_protocol():
    from fastdnn.kernels.cpu.backend import CPUBackend, CPUTrainer

    assert_implements(CPUBackend, spec.Backend)
    assert_implements(CPUTrainer, spec.Trainer)
    backend = CPUBackend([3, 4, 2], [spec.RELU], spec.MSE, np.dtype(np.float64))
    assert backend.device == "cpu" and backend.n_params == 3 * 4 + 4 + 4 * 2 + 2


def _source_methods(path, class_name):
    """``{name: parameter names without self}`` of a class read from source, not imported
    (importing the CUDA tree imports numba.cuda, which this run must not)."""
    tree = ast.parse(open(path).read())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name)
    methods = {n.name: [a.arg for a in n.args.args if a.arg != "self"]
               for n in cls.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")}
    attributes = {t.id for n in cls.body if isinstance(n, ast.Assign) for t in n.targets
                  if isinstance(t, ast.Name)}
    init = next((n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"),
                None)
    if init is not None:
        attributes |= {t.attr for n in ast.walk(init) if isinstance(n, ast.Assign)
                       for t in n.targets if isinstance(t, ast.Attribute)}
    return methods, attributes


def test_cuda_backend_implements_the_whole_protocol_by_source():
    path = os.path.join(os.path.dirname(spec.__file__), "cuda", "backend.py")
    for protocol, class_name in ((spec.Backend, "CUDABackend"), (spec.Trainer, "CUDATrainer")):
        methods, attributes = _source_methods(path, class_name)
        for name, params in protocol_methods(protocol).items():
            assert name in methods, f"{class_name} lacks {name}"
            assert methods[name] == params, f"{class_name}.{name}{methods[name]} vs {params}"
    _, attributes = _source_methods(path, "CUDABackend")
    assert {"device", "n_params"} <= attributes


@pytest.mark.parametrize("row", CE_ROWS + [[2.0, 5.0, 5.0, -1.0]])
def test_row_formulas_match_numpy(row):
    from scipy.special import logsumexp, softmax

    z = np.array(row, dtype=np.float64)
    e = np.empty_like(z)
    zmax, total = spec.softmax_row(z, e)
    np.testing.assert_allclose(e / total, softmax(z), rtol=1e-15, atol=0)
    assert zmax + np.log(total) == pytest.approx(logsumexp(z), rel=1e-15)
    assert spec.first_argmax(z) == np.argmax(z)  # the first of tied maxima, as NumPy


def test_the_cpu_layout_holds_no_input_and_the_deltas_no_input_width():
    """A 20000-input net's predict kept 937 MB of buffers, 0.4 MB of them used: an input
    slot only CUDA gathers into, and deltas as wide as the input, whose dL/dX no kernel
    computes."""
    from fastdnn.kernels.cpu.backend import _layout
    sizes, cap = [20000, 8, 2], 4096
    cpu = _layout(sizes, [spec.activation_code("relu")], cap)
    cuda = spec.Layout.build(sizes, [spec.activation_code("relu")], cap)
    assert cpu.delta_size == cuda.delta_size == cap * 8
    assert cuda.work_size - cpu.work_size == cap * sizes[0]
    assert cpu.work_size < cap * 40


# ------------------------------------------------------------------ one float type
def test_float32_twins_compute_in_float32_to_its_accuracy():
    """Compiled with ``floats=numba.float32`` (CUDA's float32 epilogues), g and g' take and
    return float32 (a float64 literal made a float32 net's epilogues float64: 183 float64
    instructions in the float32 GEMM kernel) and follow the float64 formulas to float32
    accuracy; g' reads a = g(z) as the kernels store it, in float32."""
    import numba
    from numba import njit

    twins = spec.compile_formulas(njit, spec.ACTIVATION_FORMULAS, floats=numba.float32)
    z = np.linspace(-20, 20, 4001).astype(np.float32)
    for name, code in spec.ACTIVATIONS.items():
        a = np.array([twins["activate"](v, code) for v in z], dtype=np.float32)
        want = np.array([spec.activate(float(v), code) for v in z])
        # gelu's tail: erfc's argument, rounded to float32, moves erfc by up to 2 x^2
        # times that (1e-5 relative at z = -12, where gelu is -1e-32)
        rtol = 2e-5 if name == "gelu" else 3e-7
        np.testing.assert_allclose(a, want, rtol=rtol, atol=1e-37, err_msg=name)
        stored = want.astype(np.float32)
        d = np.array([twins["derivative"](s, v, code) for s, v in zip(stored, z)])
        want_d = np.array([spec.derivative(float(s), float(v), code)
                           for s, v in zip(stored, z)])
        # silu' crosses 0 at z = -1.28: there its terms cancel (2e-5 relative, 7e-9
        # absolute); tanh' = 1 - a * a cancels near saturation in float32 (3e-8
        # absolute at z = -4.68)
        np.testing.assert_allclose(d, want_d, rtol=rtol, atol=6e-8, err_msg=name)
    assert twins["activate"].nopython_signatures[0].return_type == numba.float32
    assert twins["derivative"].nopython_signatures[0].return_type == numba.float32


def test_gelu_and_tanh_grad_keep_their_tails():
    """gelu's 1 + erf(z / sqrt 2) cancelled in the left tail (all of it in float32 below
    z = -3.9); tanh' = 1 - a * a holds to 2e-10 relative at z = -8 in float64."""
    from scipy.special import ndtr

    for z in (-5.0, -10.0, -30.0):
        assert spec.gelu(z) == pytest.approx(z * ndtr(z), rel=1e-13)
        assert spec.derivative(spec.gelu(z), z, spec.GELU) == pytest.approx(
            ndtr(z) + z * math.exp(-z * z / 2) / math.sqrt(2 * math.pi), rel=1e-12)
    a = math.tanh(-8.0)
    assert spec.tanh_grad(a) == pytest.approx(1 / math.cosh(8.0) ** 2, rel=1e-9)


def test_clip_factor_is_bound_over_the_norm_without_forming_it():
    # The norm scale * root of 1.5e308 * sqrt(2) is inf in float64: the factor was 0.
    assert spec.clip_factor(math.sqrt(2.0), 1.5e308, 1.0) == pytest.approx(
        1.0 / 1.5e308 / math.sqrt(2.0), rel=1e-15)
    assert spec.clip_factor(5.0, 1e-170, 1e-175) == pytest.approx(2e-6, rel=1e-15)
    assert spec.clip_factor(1.0, 1.0, 1.0) == 1.0 and spec.clip_factor(0.5, 2.0, 1.0) == 1.0
    assert spec.clip_factor(2.0, 1.0, 1.0) == 0.5
