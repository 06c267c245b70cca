"""Interop: PyTorch state dicts, ONNX export and the documented ``.npz`` format.

* fastdnn -> ``state_dict`` -> torch ``nn.Sequential`` gives the same logits, and
  torch's own state dict -> ``MLP.from_state_dict`` gives back the same weights, bit for
  bit (skipped without torch);
* fastdnn -> ONNX -> onnxruntime gives the same logits and probabilities, for every
  activation, both dtypes and every loss (skipped without onnx and onnxruntime);
* the NumPy reader printed in ``docs/model-format.md``, run as printed, reads saved nets;
* every bad state dict and export argument is refused with a message naming it.

Tolerances are relative to the largest logit (``support.assert_close``): both sides
compute in the net's dtype, summing in different orders.
"""
import os
import re
import sys

import numpy as np
import pytest

import fastdnn as fd
from fastdnn import serialize
from fastdnn.kernels import spec
from support import TESTS, assert_close, assert_same_weights, build

ACTIVATIONS = list(spec.ACTIVATIONS)
DTYPES = ["float32", "float64"]
RTOL = {"float32": 1e-5, "float64": 1e-12}
#: No square layer: a transposed weight cannot pass for the right one by its shape.
SIZES = [5, 7, 6, 3]
#: Every activation in one net, one per hidden layer, with square layers among them (a
#: transposed weight fits there and must be caught by its values); ten Linear layers put
#: module indices 0..18 in its state dict, where a string sort puts "10" before "2".
MIXED_SIZES = [4, 6, 6, 5, 7, 7, 6, 5, 5, 6, 3]


@pytest.fixture
def X(rng):
    """Inputs that reach both branches of every activation (pre-activations ~ +-3)."""
    return rng.normal(scale=2.0, size=(9, SIZES[0]))


# ----------------------------------------------------------------- PyTorch
@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def torch_sequential(torch, sizes, activations, dtype):
    """``nn.Sequential(nn.Linear, act, ..., nn.Linear)`` computing fastdnn's activations."""
    nn = torch.nn
    modules = {"identity": nn.Identity, "relu": nn.ReLU,
               "leaky_relu": lambda: nn.LeakyReLU(spec.LEAKY_SLOPE), "elu": lambda: nn.ELU(1.0),
               "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "softplus": nn.Softplus,
               "gelu": lambda: nn.GELU(approximate="none"), "silu": nn.SiLU}
    layers = []
    for i, (k, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(k, n))
        if i < len(activations):
            layers.append(modules[activations[i]]())
    return nn.Sequential(*layers).to(getattr(torch, dtype))


def torch_logits(torch, model, X, dtype):
    with torch.no_grad():
        return model(torch.from_numpy(np.asarray(X, dtype=dtype))).numpy()


def assert_torch_round_trip(torch, net, X):
    """net -> torch: same logits; torch -> from_state_dict: the same net, bit for bit."""
    dtype = net.dtype.name
    model = torch_sequential(torch, net.sizes, net.activations, dtype)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in net.state_dict().items()})
    Z = torch_logits(torch, model, X, dtype)
    assert_close(Z, net.forward(X), RTOL[dtype])

    back = fd.MLP.from_state_dict(model.state_dict(), activation=net.activations,
                                  loss=net.loss_name)
    assert (back.sizes, back.activations, back.loss_name) == (net.sizes, net.activations,
                                                              net.loss_name)
    assert back.dtype == net.dtype  # inferred from the tensors
    assert_same_weights(back.get_weights(), net.get_weights())
    assert_close(back.forward(X), Z, RTOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_torch_round_trip(torch, activation, dtype, X):
    net, _ = build(SIZES, activation=activation, dtype=dtype)
    assert_torch_round_trip(torch, net, X)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", ["mse", "binary_cross_entropy", "poisson"])
def test_torch_round_trip_losses(torch, loss, dtype, X):
    net, _ = build(SIZES, activation="elu", loss=loss, dtype=dtype)
    assert_torch_round_trip(torch, net, X)


@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_round_trip_every_activation_in_one_net(torch, dtype, rng):
    net, _ = build(MIXED_SIZES, activation=ACTIVATIONS, dtype=dtype)
    assert_torch_round_trip(torch, net, rng.normal(scale=2.0, size=(9, MIXED_SIZES[0])))


def test_from_torch_sequential_without_activation_modules(torch, X):
    """Keys 0, 1, 2: a Sequential of Linear layers only (a linear net)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Linear(7, 6),
                                torch.nn.Linear(6, 3))
    net = fd.MLP.from_state_dict(model.state_dict(), activation="identity")
    assert net.sizes == SIZES
    assert_close(net.forward(X), torch_logits(torch, model, X, "float32"), RTOL["float32"])


def test_from_torch_parameters_that_require_grad(torch):
    """Tensors are detached first (NumPy refuses a tensor that requires grad)."""
    model = torch_sequential(torch, SIZES, ["tanh", "tanh"], "float64")
    params = dict(model.named_parameters())
    assert params["0.weight"].requires_grad
    net = fd.MLP.from_state_dict(params, activation="tanh")
    np.testing.assert_array_equal(net.get_weights()[1][0], params["2.weight"].detach().numpy().T)


def test_from_state_dict_refuses_bfloat16(torch):
    sd = {k: v.to(torch.bfloat16) for k, v in torch_sequential(
        torch, [3, 2], [], "float32").state_dict().items()}
    with pytest.raises(TypeError, match=re.escape("'0.weight' cannot be read as a NumPy "
                                                  "array") + ".*convert it with .float()"):
        fd.MLP.from_state_dict(sd)


def test_from_state_dict_names_a_meta_tensor(torch):
    # A 'meta' tensor has a shape but no values: torch's NotImplementedError leaked.
    sd = {k: v.to("meta") for k, v in torch_sequential(
        torch, [3, 2], [], "float32").state_dict().items()}
    with pytest.raises(ValueError, match="'0.weight' holds no values that can be read"):
        fd.MLP.from_state_dict(sd)


# ----------------------------------------------------------------- state dicts, NumPy only
def test_state_dict_layout():
    net, params = build(SIZES, dtype="float32")
    sd = net.state_dict()
    assert list(sd) == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
    for i, (W, b) in enumerate(params):
        weight, bias = sd[f"{2 * i}.weight"], sd[f"{2 * i}.bias"]
        assert weight.shape == (W.shape[1], W.shape[0])  # (fan_out, fan_in)
        np.testing.assert_array_equal(weight, W.T)
        np.testing.assert_array_equal(bias, b)
        assert weight.dtype == bias.dtype == np.float32 and weight.flags.c_contiguous
    sd["0.weight"][:] = 0  # a copy: the net keeps its weights
    assert_same_weights(net.get_weights(), params)


@pytest.mark.parametrize("dtype", DTYPES)
def test_state_dict_round_trip(dtype):
    net, params = build(MIXED_SIZES, activation=ACTIVATIONS, loss="mse", dtype=dtype)
    back = fd.MLP.from_state_dict(net.state_dict(), activation=ACTIVATIONS, loss="mse")
    assert back.dtype == net.dtype and back.sizes == MIXED_SIZES
    assert_same_weights(back.get_weights(), params)


def test_from_state_dict_orders_layers_by_index_in_any_spacing_and_key_order():
    """Indices 0, 3, 6 (nn.Sequential(Linear, ReLU, Dropout, Linear, ...)), keys in
    scrambled order: the layers follow the numerical index."""
    net, params = build(SIZES, activation="relu")
    sd = {f"{3 * (int(k[0]) // 2)}{k[1:]}": v for k, v in net.state_dict().items()}
    scrambled = {k: sd[k] for k in ["6.bias", "0.weight", "3.bias", "6.weight", "0.bias",
                                    "3.weight"]}
    assert_same_weights(fd.MLP.from_state_dict(scrambled, dtype="float64").get_weights(),
                        params)


def test_from_state_dict_takes_lists_and_integers():
    sd = {"0.weight": [[1, 2], [3, 4], [5, 6]], "0.bias": np.arange(3)}
    net = fd.MLP.from_state_dict(sd, loss="mse")
    assert net.sizes == [2, 3] and net.dtype == np.float32  # integers: PyTorch's default
    np.testing.assert_array_equal(net.get_weights()[0][0], [[1, 3, 5], [2, 4, 6]])
    assert fd.MLP.from_state_dict({"0.weight": [[0.5]], "0.bias": [0.0]},
                                  loss="mse").dtype == np.float64  # Python floats


def test_from_state_dict_passes_its_arguments_on():
    sd = fd.MLP([3, 4, 2], seed=0).state_dict()
    net = fd.MLP.from_state_dict(sd, activation="gelu", loss="binary_cross_entropy",
                                 dtype="float64", seed=7)
    assert (net.activations, net.loss_name, net.dtype, net.seed) == (
        ["gelu"], "binary_cross_entropy", np.float64, 7)


def _with(**changes):
    """A change to the state dict of a [5, 4, 3] net (keys 0 and 2); ``None`` drops."""
    def change(sd):
        sd = dict(sd)
        for key, value in changes.items():
            key = key.replace("_", ".")
            if value is None:
                del sd[key]
            else:
                sd[key] = value(sd[key]) if callable(value) else value
        return sd
    return change


BAD_STATE_DICTS = {
    "not a mapping": (lambda sd: list(sd.items()), {}, TypeError,
                      "expected a state dict (a mapping of 'N.weight'/'N.bias' to arrays), "
                      "got list"),
    "empty": (lambda sd: {}, {}, ValueError, "the state dict holds no layers"),
    "unexpected key": (lambda sd: {**sd, "0.running_mean": np.zeros(4)}, {}, ValueError,
                       "unexpected key '0.running_mean': the state dict of nn.Sequential("),
    "prefixed keys": (lambda sd: {f"net.{k}": v for k, v in sd.items()}, {}, ValueError,
                      "unexpected key 'net.0.weight'"),
    "non-string key": (lambda sd: {**sd, 2: sd["2.weight"]}, {}, ValueError,
                       "unexpected key 2:"),
    "index with a leading zero": (lambda sd: {**sd, "02.weight": sd["2.weight"]}, {},
                                  ValueError, "unexpected key '02.weight'"),
    "missing bias": (_with(**{"2_bias": None}), {}, ValueError, "missing key '2.bias'"),
    "missing weight": (_with(**{"0_weight": None}), {}, ValueError, "missing key '0.weight'"),
    "1-D weight": (_with(**{"0_weight": np.ravel}), {}, ValueError,
                   "'0.weight' must be a non-empty 2-D (fan_out, fan_in) array; got shape (20,)"),
    "empty weight": (_with(**{"0_weight": np.zeros((0, 5))}), {}, ValueError,
                     "'0.weight' must be a non-empty 2-D (fan_out, fan_in) array; got shape (0, 5)"),
    "bias of the wrong width": (_with(**{"0_bias": np.zeros(3)}), {}, ValueError,
                                "'0.bias' has shape (3,); '0.weight' of shape (4, 5) needs (4,)"),
    "transposed weight": (_with(**{"2_weight": np.transpose}), {}, ValueError,
                          "'2.weight' has shape (4, 3): 3 inputs, but the layer before it has 4 "
                          "outputs (transposed? nn.Linear's weight is (fan_out, fan_in))"),
    "layers that do not chain": (_with(**{"2_weight": np.zeros((3, 5))}), {}, ValueError,
                                 "'2.weight' has shape (3, 5): 5 inputs, but the layer before it "
                                 "has 4 outputs"),
    "NaN": (_with(**{"2_weight": lambda W: np.where(W == W.max(), np.nan, W)}), {}, ValueError,
            "'2.weight' holds NaN, infinity or values beyond float32's range"),
    "infinity": (_with(**{"0_bias": np.array([0, 0, np.inf, 0])}), {}, ValueError,
                 "'0.bias' holds NaN, infinity"),
    "beyond float32": (_with(**{"0_bias": np.array([0, 1e39, 0, 0])}), {"dtype": "float32"},
                       ValueError, "'0.bias' holds NaN, infinity or values beyond float32's range"),
    "text": (_with(**{"0_weight": np.full((4, 5), "a")}), {}, TypeError,
             "'0.weight' must hold real numbers; got an array of dtype <U1"),
    "None": (lambda sd: {**sd, "0.bias": None}, {}, TypeError,
             "'0.bias' must hold real numbers; got an array of dtype object"),
    "ragged lists": (_with(**{"0_bias": [[0.0], [0.0, 1.0], [0.0], [0.0]]}), {}, TypeError,
                     "'0.bias' is not an array ("),
    "complex": (_with(**{"0_weight": lambda W: W + 1j}), {}, TypeError,
                "'0.weight' must hold real numbers; got an array of dtype complex"),
    "booleans": (_with(**{"2_bias": np.array([True, False, True])}), {}, TypeError,
                 "'2.bias' must hold real numbers; got an array of dtype bool"),
    "unknown dtype": (lambda sd: sd, {"dtype": "float16"}, ValueError,
                      "dtype must be 'float32' or 'float64'; got 'float16'"),
    "activations for another depth": (lambda sd: sd, {"activation": ["relu", "relu"]},
                                      ValueError, "got 2 activations for 1 hidden layers"),
}


@pytest.mark.parametrize("case", BAD_STATE_DICTS)
def test_from_state_dict_refuses(case):
    change, kwargs, error, message = BAD_STATE_DICTS[case]
    sd = fd.MLP([5, 4, 3], dtype="float32", seed=0).state_dict()
    with pytest.raises(error, match=re.escape(message)):
        fd.MLP.from_state_dict(change(sd), **kwargs)


# ----------------------------------------------------------------- ONNX
@pytest.fixture
def ort():
    pytest.importorskip("onnx")
    return pytest.importorskip("onnxruntime")


def run_onnx(ort, path, X, dtype):
    """``{output name: array}`` of the model at ``path`` run by onnxruntime on ``X``."""
    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    names = [out.name for out in session.get_outputs()]
    return dict(zip(names, session.run(None, {"input": np.asarray(X, dtype=dtype)})))


def assert_onnx_matches(outputs, net, X, rtol):
    assert_close(outputs["logits"], net.forward(X), rtol)
    if net.loss_name in ("mse", "poisson"):  # poisson's means are exp(logits)
        assert list(outputs) == ["logits"]
    else:
        assert list(outputs) == ["logits", "probabilities"]
        assert_close(outputs["probabilities"], net.predict_proba(X), rtol)


#: onnxruntime has no float64 Erf, which float64 gelu needs: test_onnx_float64_gelu.
ONNX_CASES = [(a, d) for d in DTYPES for a in ACTIVATIONS if (a, d) != ("gelu", "float64")]


@pytest.mark.parametrize(("activation", "dtype"), ONNX_CASES)
def test_onnx_matches_net(ort, activation, dtype, X, tmp_path):
    net, _ = build(SIZES, activation=activation, dtype=dtype)
    fd.export_onnx(net, tmp_path / "net.onnx")
    assert_onnx_matches(run_onnx(ort, tmp_path / "net.onnx", X, dtype), net, X, RTOL[dtype])


@pytest.mark.parametrize("opset", [13, 17, 20])
def test_onnx_gelu_in_each_opset(ort, opset, X, tmp_path):
    """Spelled with Erf before opset 20, the Gelu operator from it on."""
    import onnx

    if opset > onnx.defs.onnx_opset_version():  # onnx 1.14 (the declared minimum): 19
        pytest.skip(f"the installed onnx {onnx.__version__} has no opset {opset}")
    net, _ = build(SIZES, activation="gelu", dtype="float32")
    fd.export_onnx(net, tmp_path / "net.onnx", opset=opset)
    ops = {node.op_type for node in onnx.load(tmp_path / "net.onnx").graph.node}
    assert ("Gelu" in ops) == (opset >= 20) and ("Erf" in ops) == (opset < 20)
    assert_onnx_matches(run_onnx(ort, tmp_path / "net.onnx", X, "float32"), net, X,
                        RTOL["float32"])


def test_onnx_float64_gelu(ort, X, tmp_path):
    """A float64 gelu net runs in onnx's reference evaluator (whose Erf rounds to float32,
    hence 1e-6) and, exported as float32, in onnxruntime."""
    from onnx.reference import ReferenceEvaluator

    net, _ = build(SIZES, activation="gelu", dtype="float64")
    fd.export_onnx(net, tmp_path / "net64.onnx")
    logits, probabilities = ReferenceEvaluator(os.fspath(tmp_path / "net64.onnx")).run(
        None, {"input": X})
    assert logits.dtype == np.float64
    assert_close(logits, net.forward(X), 1e-6)
    assert_close(probabilities, net.predict_proba(X), 1e-6)

    fd.export_onnx(net, tmp_path / "net32.onnx", dtype="float32")
    assert_onnx_matches(run_onnx(ort, tmp_path / "net32.onnx", X, "float32"), net, X,
                        RTOL["float32"])


@pytest.mark.parametrize(("loss", "n_out"), [("cross_entropy", 3), ("mse", 1), ("mse", 3),
                                             ("binary_cross_entropy", 1),
                                             ("binary_cross_entropy", 3), ("poisson", 2)])
def test_onnx_outputs_of_each_loss(ort, loss, n_out, X, tmp_path):
    net, _ = build([5, 7, n_out], activation="relu", loss=loss, dtype="float64")
    fd.export_onnx(net, tmp_path / "net.onnx")
    assert_onnx_matches(run_onnx(ort, tmp_path / "net.onnx", X, "float64"), net, X,
                        RTOL["float64"])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_out", [1, 2])
def test_logistic_probabilities_hold_their_tails(ort, dtype, n_out, tmp_path):
    """onnxruntime's float32 Sigmoid gave 0 below z = -18 (2e-9 there), and ``1 - p``
    lost the small probability of the other class (predict_proba too: 3.4e-8 relative
    at z = 20 in float64).  Both now follow the exact logistic to the tails."""
    net = fd.MLP([1, n_out], loss="binary_cross_entropy", dtype=dtype)
    net.set_weights([(np.array([[1.0, -1.0][:n_out]]), np.zeros(n_out))])
    z = np.array([[-50.0], [-30.0], [-20.0], [-5.0], [0.0], [5.0], [17.0], [20.0], [30.0]])
    exact = 1 / (1 + np.exp(-np.hstack([-z, z]) if n_out == 1 else -np.hstack([z, -z])))
    rtol = 1e-6 if dtype == "float32" else 1e-14
    np.testing.assert_allclose(net.predict_proba(z), exact, rtol=rtol, atol=0)
    fd.export_onnx(net, tmp_path / "net.onnx")
    outputs = run_onnx(ort, tmp_path / "net.onnx", z, dtype)
    np.testing.assert_allclose(outputs["probabilities"], exact, rtol=rtol, atol=0)


def test_onnx_every_activation_in_one_net_any_batch_size(ort, rng, tmp_path):
    import onnx

    net, _ = build(MIXED_SIZES, activation=ACTIVATIONS, dtype="float32")
    fd.export_onnx(net, tmp_path / "net.onnx")
    batch = onnx.load(tmp_path / "net.onnx").graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param == "batch"
    for n in (1, 13):
        X = rng.normal(scale=2.0, size=(n, MIXED_SIZES[0]))
        assert_onnx_matches(run_onnx(ort, tmp_path / "net.onnx", X, "float32"), net, X,
                            RTOL["float32"])


def test_onnx_net_without_hidden_layers(ort, X, tmp_path):
    net, _ = build([5, 3], dtype="float64")
    fd.export_onnx(net, os.fspath(tmp_path / "net.onnx"))  # a str path works too
    assert_onnx_matches(run_onnx(ort, tmp_path / "net.onnx", X, "float64"), net, X,
                        RTOL["float64"])


def test_onnx_export_replaces_a_file_atomically(ort, monkeypatch, tmp_path):
    """A failure mid-write leaves the earlier file as it was and nothing else behind."""
    path = tmp_path / "net.onnx"
    path.write_bytes(b"earlier model")

    def fail(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        fd.export_onnx(fd.MLP([3, 2], seed=0), path)
    assert path.read_bytes() == b"earlier model"
    assert os.listdir(tmp_path) == ["net.onnx"]


def test_onnx_export_without_onnx(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(ImportError, match=re.escape("pip install 'fastdnn[onnx]'")):
        fd.export_onnx(fd.MLP([3, 2], seed=0), tmp_path / "net.onnx")
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"net": "model"}, TypeError, "net must be a fastdnn MLP, got str"),
    ({"opset": "17"}, TypeError, "opset must be an integer, got str"),
    ({"opset": True}, TypeError, "opset must be an integer, got bool"),
    ({"opset": 12}, ValueError, "opset must be between 13 and"),
    ({"opset": 1000}, ValueError, "got 1000"),
    ({"dtype": "float16"}, ValueError, "dtype must be 'float32' or 'float64'"),
], ids=["net", "opset text", "opset bool", "opset too old", "opset too new", "dtype"])
def test_onnx_export_refuses(ort, kwargs, error, message, tmp_path):
    args = {"net": fd.MLP([3, 2], seed=0), "path": tmp_path / "net.onnx", **kwargs}
    with pytest.raises(error, match=re.escape(message)):
        fd.export_onnx(**args)
    assert not os.listdir(tmp_path)


def test_onnx_export_of_weights_beyond_protobufs_limit_says_so(ort, monkeypatch, tmp_path):
    """Nets of 2 GiB of weights and more (537M float32 parameters) failed inside onnx with
    protobuf's bare "Failed to serialize proto"."""
    from fastdnn import onnx_export

    net = fd.MLP([30, 20, 2], seed=0)  # 662 parameters: 2,648 bytes in float32
    monkeypatch.setattr(onnx_export, "PROTOBUF_LIMIT", 2649)
    fd.export_onnx(net, tmp_path / "net.onnx")  # below the limit
    with pytest.raises(ValueError, match="662 float64 parameters take .* less than 2 GiB"):
        fd.export_onnx(net, tmp_path / "net64.onnx", dtype="float64")
    assert os.listdir(tmp_path) == ["net.onnx"]


@pytest.mark.filterwarnings("error::RuntimeWarning")  # NumPy 2 warned of its overflow
def test_onnx_export_to_a_dtype_too_narrow_for_the_weights_is_refused(ort, tmp_path):
    net = fd.MLP([2, 3, 2], dtype="float64", seed=0)
    net.set_weights([(W * 1e300, b) for W, b in net.get_weights()])
    with pytest.raises(ValueError, match="beyond float32's range: export it in float64"):
        fd.export_onnx(net, tmp_path / "net.onnx", dtype="float32")
    assert not os.listdir(tmp_path)
    fd.export_onnx(net, tmp_path / "net.onnx")


def test_onnx_model_names_its_producer_and_a_net_in_an_estimator(ort, tmp_path):
    import onnx
    from sklearn.neural_network import MLPClassifier as _  # noqa: F401 - needs sklearn
    from fastdnn.sklearn import MLPClassifier

    fd.export_onnx(fd.MLP([3, 2], seed=0), tmp_path / "net.onnx")
    model = onnx.load(tmp_path / "net.onnx")
    assert (model.producer_name, model.producer_version) == ("fastdnn", fd.__version__)
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=2).fit([[0, 1], [1, 0]] * 4,
                                                                  [0, 1] * 4)
    with pytest.raises(TypeError, match=r"export_onnx\(estimator.net_, path\)"):
        fd.export_onnx(clf, tmp_path / "clf.onnx")


# ----------------------------------------------------------------- the documented format
DOC = os.path.join(TESTS, os.pardir, "docs", "model-format.md")


def doc_reader():
    """The namespace of the NumPy reader that ``docs/model-format.md`` prints."""
    with open(DOC, encoding="utf-8") as f:
        section = f.read().split("## Reading a model with NumPy", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)[1]
    namespace = {}
    exec(compile(code, DOC, "exec"), namespace)
    return namespace


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("sizes", "activation", "loss"), [
    (MIXED_SIZES, ACTIVATIONS, "cross_entropy"),
    ([5, 3], [], "binary_cross_entropy"),  # no hidden layer: an empty activations array
], ids=["every activation", "no hidden layer"])
def test_doc_reader_reads_saved_nets(sizes, activation, loss, dtype, rng, tmp_path):
    doc = doc_reader()
    net, params = build(sizes, activation=activation, loss=loss, dtype=dtype)
    net.save(tmp_path / "net.npz")
    layers, activations, loss_name = doc["read_model"](tmp_path / "net.npz")
    assert_same_weights(layers, params)
    assert (activations, loss_name) == (net.activations, loss)
    X = rng.normal(scale=2.0, size=(9, sizes[0]))
    assert_close(doc["logits"](layers, activations, X), net.forward(X), RTOL[dtype])


def test_doc_states_the_format_as_written():
    """The format name and version the doc gives are the ones save writes."""
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    assert f'`"{serialize.FORMAT}"`' in text
    assert f"the format version, `{serialize.VERSION}`" in text


def test_onnx_takes_raw_rows_of_a_model_that_carries_its_scaling(ort, tmp_path):
    """A `fastdnn train` model (scaling in net.metadata) exported lost its scaling: the
    graph read raw diabetes rows as scaled ones (318.7 off what `fastdnn predict` gave)."""
    from fastdnn.preprocess import Preprocessing, Scaler
    rng = np.random.default_rng(0)
    X = rng.normal(50, 20, size=(40, 3))
    y = X @ [1.0, -2.0, 0.5] + 100
    prep = Preprocessing(x_scaler=Scaler.fit("standard", X),
                         y_scaler=Scaler.fit("standard", y[:, None]))
    fd.MLP([3, 5, 1], loss="mse", dtype="float64", seed=0).save(
        tmp_path / "m.npz", metadata=prep.to_metadata())
    net = fd.MLP.load(tmp_path / "m.npz")
    fd.export_onnx(net, tmp_path / "m.onnx")
    out = run_onnx(ort, tmp_path / "m.onnx", X, np.float64)
    scaled = prep.inputs(X, np.float64)
    assert_close(out["predictions"].ravel(), np.ravel(prep.outputs(net.predict(scaled))), 1e-12)
    assert_close(out["logits"], net.forward(scaled), 1e-12)
    fd.export_onnx(net, tmp_path / "bare.onnx", preprocessing=False)  # the net alone
    bare = run_onnx(ort, tmp_path / "bare.onnx", X, np.float64)
    assert list(bare) == ["logits"]
    assert_close(bare["logits"], net.forward(X), 1e-12)
    # A classifier's probabilities from raw rows; other metadata changes nothing.
    prep = Preprocessing(x_scaler=Scaler.fit("minmax", X), classes=np.array(["a", "b"]))
    fd.MLP([3, 6, 2], dtype="float64", seed=0).save(tmp_path / "c.npz",
                                                    metadata=prep.to_metadata())
    net = fd.MLP.load(tmp_path / "c.npz")
    fd.export_onnx(net, tmp_path / "c.onnx")
    out = run_onnx(ort, tmp_path / "c.onnx", X, np.float64)
    assert_close(out["probabilities"], net.predict_proba(prep.inputs(X, np.float64)), 1e-12)
    fd.MLP([3, 4, 2], seed=0).save(tmp_path / "n.npz", metadata={"note": 1})
    net = fd.MLP.load(tmp_path / "n.npz")
    fd.export_onnx(net, tmp_path / "n.onnx")
    assert_onnx_matches(run_onnx(ort, tmp_path / "n.onnx", X, np.float32), net,
                        X.astype(np.float32), 1e-6)
    with pytest.raises(TypeError, match="preprocessing"):
        fd.export_onnx(net, tmp_path / "x.onnx", preprocessing="yes")


@pytest.mark.parametrize("dtype", [">f8", np.longdouble])
def test_a_float64_state_dict_of_other_byte_order_or_wider_gives_a_float64_net(dtype):
    # '>f8' is not np.float64, and a longdouble is wider still: both gave float32 nets.
    net = fd.MLP([3, 4, 2], dtype="float64", seed=0)
    sd = {k: v.astype(dtype) for k, v in net.state_dict().items()}
    back = fd.MLP.from_state_dict(sd)
    assert back.dtype == np.float64
    for (W, b), (W0, b0) in zip(back.get_weights(), net.get_weights()):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)


def test_float32_and_float16_state_dicts_still_give_float32_nets():
    net = fd.MLP([3, 4, 2], dtype="float32", seed=0)
    for dtype in ("<f4", ">f4", np.float16):
        sd = {k: v.astype(dtype) for k, v in net.state_dict().items()}
        assert fd.MLP.from_state_dict(sd).dtype == np.float32
