"""Export a net to ONNX (the optional ``onnx`` package builds the graph)."""
import math

import numpy as np

from . import __version__, serialize
from .kernels import spec
from .model import check_net
from .validation import check_dtype, is_integer

#: Opset 17 is read by every onnxruntime since 1.13 and by onnx >= 1.12.  Softmax takes
#: its ``axis`` attribute literally from opset 13 on; older opsets are refused.
DEFAULT_OPSET = 17
MIN_OPSET = 13
#: The first opset with a ``Gelu`` operator; below it gelu is spelled with ``Erf``.
GELU_OPSET = 20
#: The metadata of the scaling ``fastdnn train`` saves with a net (``preprocess``).
_SCALING_KEYS = ("x_offset", "x_scale", "y_offset", "y_scale")
#: Bytes a protobuf message (an ONNX file without external data) can hold.
PROTOBUF_LIMIT = 2**31


def _import_onnx():
    try:
        import onnx
    except ImportError as exc:
        raise ImportError("fd.export_onnx needs the onnx package: "
                          "pip install 'fastdnn[onnx]'") from exc
    return onnx


class _Graph:
    """The nodes and initializers of a graph under construction."""

    def __init__(self, onnx, dtype):
        self.helper, self.numpy_helper = onnx.helper, onnx.numpy_helper
        self.dtype = dtype
        self.nodes, self.initializers, self.names = [], [], set()

    def constant(self, name, value, dtype=None):
        """An initializer ``name`` holding ``value`` (in the graph's dtype, or ``dtype``),
        added once however often asked."""
        if name not in self.names:
            self.names.add(name)
            self.initializers.append(self.numpy_helper.from_array(
                np.asarray(value, dtype=dtype or self.dtype), name))
        return name

    def indices(self, name, values):
        """An int64 initializer ``name`` (axes, indices), added once."""
        return self.constant(name, values, np.int64)

    def logistic_pairs(self, Z):
        """``[1 - sigmoid(z), sigmoid(z)]`` along a new last axis, as a softmax of
        ``[0, z]``: accurate in both tails, where onnxruntime's ``Sigmoid`` gave 0 below
        z = -18 in float32 (2e-9 there) and ``1 - p`` lost the small ``1 - p``."""
        last = self.indices("last_axis", [-1])
        pair = self.op("Concat", self.op("Unsqueeze", self.op("Mul", Z, self.constant(
            "zero", 0.0)), last), self.op("Unsqueeze", Z, last), axis=-1)
        return self.op("Softmax", pair, axis=-1)

    def op(self, op_type, *inputs, out=None, **attributes):
        """Append a node; return the name of its output (``out``, or a fresh name)."""
        out = out or f"t{len(self.nodes)}"
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [out], name=out,
                                                **attributes))
        return out

    def activation(self, name, Z, A, opset):
        """Append the nodes of ``A = g(Z)`` for the activation ``name`` as
        :mod:`fastdnn.kernels.spec` defines it; return the name of ``A``."""
        code = spec.activation_code(name)
        # onnxruntime has no float64 kernel for LeakyRelu (opset 16), Elu or Softplus, and
        # LeakyRelu's alpha attribute is a float32 (0.01 reads 0.0099999998, 2e-9 off in
        # float64 logits): float64 graphs spell those three with ops it runs in double.
        double = self.dtype == np.float64
        if code == spec.IDENTITY:
            return Z
        if code == spec.RELU:
            return self.op("Relu", Z, out=A)
        if code == spec.LEAKY_RELU:
            if double:  # max(z, slope z), as the slope is below 1
                slope = self.constant("leaky_slope", spec.LEAKY_SLOPE)
                return self.op("Max", Z, self.op("Mul", Z, slope), out=A)
            return self.op("LeakyRelu", Z, out=A, alpha=spec.LEAKY_SLOPE)
        if code == spec.ELU:
            if double:  # max(z, 0) + exp(min(z, 0)) - 1
                neg = self.op("Min", Z, self.constant("zero", 0.0))
                expm1 = self.op("Sub", self.op("Exp", neg), self.constant("one", 1.0))
                return self.op("Add", self.op("Relu", Z), expm1, out=A)
            return self.op("Elu", Z, out=A, alpha=1.0)
        if code == spec.TANH:
            return self.op("Tanh", Z, out=A)
        if code == spec.SIGMOID:
            return self.op("Sigmoid", Z, out=A)
        if code == spec.SOFTPLUS:
            if double:  # max(z, 0) + log(1 + exp(-|z|)), which never overflows
                exp = self.op("Exp", self.op("Neg", self.op("Abs", Z)))
                log1p = self.op("Log", self.op("Add", exp, self.constant("one", 1.0)))
                return self.op("Add", self.op("Relu", Z), log1p, out=A)
            return self.op("Softplus", Z, out=A)
        if code == spec.GELU:  # the exact form z Phi(z) = z (1 + erf(z / sqrt 2)) / 2
            if opset >= GELU_OPSET:
                return self.op("Gelu", Z, out=A, approximate="none")
            erf = self.op("Erf", self.op("Mul", Z, self.constant("inv_sqrt2", 1 / math.sqrt(2))))
            half_z = self.op("Mul", Z, self.constant("half", 0.5))
            return self.op("Mul", half_z, self.op("Add", erf, self.constant("one", 1.0)), out=A)
        if code == spec.SILU:  # z sigmoid(z)
            if double:  # z / (1 + exp(-z)): onnxruntime before 1.31 fused z * Sigmoid(z)
                # into QuickGelu, which has no double kernel (the session failed to load)
                exp = self.op("Exp", self.op("Neg", Z))
                return self.op("Div", Z, self.op("Add", exp, self.constant("one", 1.0)),
                               out=A)
            return self.op("Mul", Z, self.op("Sigmoid", Z), out=A)
        raise ValueError(f"no ONNX form for activation {name!r}")


def _build(onnx, net, opset, dtype, preprocessing=True):
    """The ``ModelProto`` of ``net``: a Gemm per layer, the hidden activations between
    (and, with ``preprocessing``, the scaling saved with the net around them)."""
    from .preprocess import Preprocessing
    helper = onnx.helper
    elem_type = helper.np_dtype_to_tensor_dtype(dtype)
    graph = _Graph(onnx, dtype)
    A = "input"
    scaled = any(key in getattr(net, "metadata", {}) for key in _SCALING_KEYS)
    prep = Preprocessing.from_net(net) if preprocessing and scaled else Preprocessing()
    if prep.x_scaler is not None:  # (x - offset) / scale, as Scaler.transform
        A = graph.op("Div", graph.op("Sub", A, graph.constant("x_offset", prep.x_scaler.offset)),
                     graph.constant("x_scale", prep.x_scaler.scale), out="scaled_input")
    weights = net.get_weights()
    for i, (W, b) in enumerate(weights, start=1):
        last = i == len(weights)
        Z = graph.op("Gemm", A, graph.constant(f"W{i}", W), graph.constant(f"b{i}", b),
                     out="logits" if last else f"Z{i}")  # A @ W + b
        A = Z if last else graph.activation(net.activations[i - 1], Z, f"A{i}", opset)
    n_out, loss = net.sizes[-1], spec.loss_code(net.loss_name)
    outputs = [helper.make_tensor_value_info("logits", elem_type, ["batch", n_out])]
    n_classes = n_out
    if loss == spec.CROSS_ENTROPY:
        graph.op("Softmax", "logits", out="probabilities", axis=-1)
    elif loss == spec.BINARY_CROSS_ENTROPY and n_out == 1:  # [1 - p, p], as predict_proba
        graph.op("Squeeze", graph.logistic_pairs("logits"), graph.indices("axis_1", [1]),
                 out="probabilities")
        n_classes = 2
    elif loss == spec.BINARY_CROSS_ENTROPY:  # p of each label
        graph.op("Gather", graph.logistic_pairs("logits"), graph.indices("one_index", 1),
                 out="probabilities", axis=-1)
    if loss in spec.CLASSIFIERS:
        outputs.append(helper.make_tensor_value_info("probabilities", elem_type,
                                                     ["batch", n_classes]))
    if prep.y_scaler is not None:  # regression in the targets' units, as fastdnn predict
        graph.op("Add", graph.op("Mul", "logits", graph.constant("y_scale", prep.y_scaler.scale)),
                 graph.constant("y_offset", prep.y_scaler.offset), out="predictions")
        outputs.append(helper.make_tensor_value_info("predictions", elem_type, ["batch", n_out]))
    inputs = [helper.make_tensor_value_info("input", elem_type, ["batch", net.sizes[0]])]
    opset_id = helper.make_opsetid("", opset)
    model = helper.make_model(
        helper.make_graph(graph.nodes, "fastdnn_mlp", inputs, outputs, graph.initializers),
        opset_imports=[opset_id], producer_name="fastdnn", producer_version=__version__,
        doc_string=repr(net),
        # The oldest IR version that carries this opset, not the newest the installed
        # onnx knows: an older onnxruntime refuses IR versions newer than its own.
        ir_version=helper.find_min_ir_version_for([opset_id]))
    onnx.checker.check_model(model, full_check=True)
    return model


def export_onnx(net, path, opset=DEFAULT_OPSET, dtype=None, preprocessing=True):
    """Write ``net`` to ``path`` as an ONNX model, atomically.

    The graph takes ``input`` of shape ``(batch, n_features)`` (any batch size) and
    gives ``logits``, the outputs of the last layer (``net.forward``); classifiers add
    ``probabilities`` (``net.predict_proba``): ``Softmax`` for cross_entropy; for
    binary_cross_entropy the logistic ``p`` of each output (``[1 - p, p]`` for one
    output), each pair a ``Softmax`` of ``[0, z]`` (accurate to the tails, as
    ``predict_proba``).  Each layer
    is a ``Gemm`` with ``W`` stored as ``(fan_in, fan_out)``; each hidden activation
    maps to ONNX ops as :mod:`fastdnn.kernels.spec` defines it: ``Relu``,
    ``LeakyRelu`` (slope 0.01), ``Elu`` (alpha 1), ``Tanh``, ``Sigmoid``, ``Softplus``,
    gelu in its exact erf form (``Gelu`` from opset 20, ``Erf`` before), silu as
    ``z * Sigmoid(z)``.  In float64 graphs leaky_relu, elu and softplus are spelled
    with elementary ops that onnxruntime runs in double; gelu's ``Erf`` has no double
    kernel there (export with ``dtype="float32"`` for onnxruntime).

    Parameters
    ----------
    net : MLP
    path : str or os.PathLike
    opset : int, default 17
        ONNX opset version, from 13 up to what the installed onnx supports.
    dtype : {"float32", "float64"}, optional
        Element type of the graph's input, weights and outputs; default the net's.
    preprocessing : bool, default True
        For a net that holds the scaling ``fastdnn train`` saves (``net.metadata``'s
        ``x_offset``/``x_scale``, ``y_offset``/``y_scale``), put it in the graph, so that
        it takes raw rows as ``fastdnn predict`` does: the input is scaled first, and a
        scaled regression adds the output ``predictions`` in the targets' units
        (``logits`` stay the net's).  ``False`` exports the net alone.

    Raises
    ------
    ImportError
        When the onnx package is not installed (``pip install 'fastdnn[onnx]'``).
    TypeError
        When ``net`` is not an :class:`~fastdnn.MLP` or ``opset`` not an integer.
    ValueError
        For an opset outside the supported range, an unknown dtype, or weights of 2 GiB
        or more (protobuf's limit for one file).
    """
    check_net(net, "export_onnx(estimator.net_, path)")
    if not is_integer(opset):
        raise TypeError(f"opset must be an integer, got {type(opset).__name__}")
    dtype = net.dtype if dtype is None else check_dtype(dtype)
    onnx = _import_onnx()
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset must be between {MIN_OPSET} and {newest} (the newest the "
                         f"installed onnx {onnx.__version__} knows); got {opset}")
    if np.finfo(dtype).max < np.finfo(net.dtype).max:  # a narrower type: do they fit?
        largest = float(np.abs(net._backend.get_theta()).max())
        if largest > float(np.finfo(dtype).max):  # (a float32 max cast largest: inf, warning)
            raise ValueError(f"the net's weights reach {largest:g}, beyond "
                             f"{np.dtype(dtype).name}'s range: export it in {net.dtype.name}")
    size = net.n_params * np.dtype(dtype).itemsize
    if size >= PROTOBUF_LIMIT:  # protobuf's EncodeError, from inside onnx, said nothing of it
        raise ValueError(f"the net's {net.n_params:,} {np.dtype(dtype).name} parameters take "
                         f"{size / 2**30:.1f} GiB; an ONNX file holds less than 2 GiB "
                         "(protobuf's limit) without external data, which export_onnx does "
                         "not write")
    if not isinstance(preprocessing, (bool, np.bool_)):
        raise TypeError(f"preprocessing must be True or False; got {preprocessing!r}")
    data = _build(onnx, net, int(opset), dtype, bool(preprocessing)).SerializeToString()
    serialize.write_atomic(path, lambda f: f.write(data))
