"""Weights in PyTorch's layout, without importing PyTorch.

A net ``[n0, n1, ..., nL]`` corresponds to ``nn.Sequential(nn.Linear(n0, n1), act,
nn.Linear(n1, n2), act, ..., nn.Linear(n_{L-1}, nL))``: its state dict has the keys
``"0.weight"``, ``"0.bias"``, ``"2.weight"``, ... (each activation module sits at the odd
index between two Linear layers and holds no parameters), and ``nn.Linear`` stores
``W`` as ``(fan_out, fan_in)``, the transpose of fastdnn's ``(fan_in, fan_out)``.
"""
import re
from collections.abc import Mapping

import numpy as np

from .validation import check_dtype

#: ``"<index>.weight"`` or ``"<index>.bias"``, the index written as ``str(int)`` does.
_KEY = re.compile(r"(0|[1-9][0-9]*)\.(weight|bias)")


def state_dict(net):
    """The weights of ``net`` in the layout of ``nn.Sequential(nn.Linear, act, ...)``.

    Parameters
    ----------
    net : MLP

    Returns
    -------
    dict of str to numpy.ndarray
        ``{"0.weight": W1.T, "0.bias": b1, "2.weight": W2.T, ...}`` in layer order, each
        a fresh C-contiguous array of the net's dtype; ``"2i.weight"`` has shape
        ``(fan_out, fan_in)``.  For ``torch.nn.Module.load_state_dict``, wrap the
        arrays first: ``{k: torch.from_numpy(v) for k, v in sd.items()}``.
    """
    from .model import check_net  # model imports this module
    check_net(net, "state_dict(estimator.net_)")
    sd = {}
    for i, (W, b) in enumerate(net.get_weights()):
        sd[f"{2 * i}.weight"] = np.ascontiguousarray(W.T)
        sd[f"{2 * i}.bias"] = b
    return sd


def _as_array(value, key):
    """``value`` as a NumPy array of real numbers; a tensor is detached and moved to
    the host first (duck-typed, so torch is never imported here)."""
    if hasattr(value, "detach"):
        try:
            value = np.asarray(value.detach().cpu())
        except TypeError as exc:  # e.g. bfloat16, which NumPy has no type for
            raise TypeError(f"{key!r} cannot be read as a NumPy array ({exc}); convert it "
                            f"with .float() first") from None
        except (NotImplementedError, RuntimeError) as exc:  # e.g. a 'meta' tensor: no data
            raise ValueError(f"{key!r} holds no values that can be read ({exc})") from None
    try:
        a = np.asarray(value)
    except ValueError as exc:  # e.g. ragged nested lists
        raise TypeError(f"{key!r} is not an array ({exc})") from None
    if a.dtype.kind not in "iuf":
        raise TypeError(f"{key!r} must hold real numbers; got an array of dtype {a.dtype}")
    return a


def _layers(sd):
    """``[(index, weight, bias), ...]`` sorted by the module index, every key checked."""
    if not isinstance(sd, Mapping):
        raise TypeError(f"expected a state dict (a mapping of 'N.weight'/'N.bias' to "
                        f"arrays), got {type(sd).__name__}")
    params = {}
    for key, value in sd.items():
        match = _KEY.fullmatch(key) if isinstance(key, str) else None
        if match is None:
            raise ValueError(f"unexpected key {key!r}: the state dict of nn.Sequential("
                             f"nn.Linear, activation, ...) holds only 'N.weight' and "
                             f"'N.bias' keys")
        params.setdefault(int(match[1]), {})[match[2]] = _as_array(value, key)
    if not params:
        raise ValueError("the state dict holds no layers")
    layers = []
    # Numerical order: "10.weight" comes after "8.weight" (a string sort puts it first).
    for index in sorted(params):
        for name in ("weight", "bias"):
            if name not in params[index]:
                raise ValueError(f"missing key '{index}.{name}'")
        layers.append((index, params[index]["weight"], params[index]["bias"]))
    return layers


def _sizes(layers):
    """The layer widths ``[fan_in of the first, fan_out of each, ...]``, checking that
    each weight is 2-D, its bias matches it, and consecutive layers chain."""
    sizes = []
    for index, W, b in layers:
        if W.ndim != 2 or W.shape[0] < 1 or W.shape[1] < 1:
            raise ValueError(f"'{index}.weight' must be a non-empty 2-D (fan_out, fan_in) "
                             f"array; got shape {W.shape}")
        fan_out, fan_in = W.shape
        if sizes and fan_in != sizes[-1]:
            hint = " (transposed? nn.Linear's weight is (fan_out, fan_in))" if (
                fan_out == sizes[-1]) else ""
            raise ValueError(f"'{index}.weight' has shape {W.shape}: {fan_in} inputs, but the "
                             f"layer before it has {sizes[-1]} outputs{hint}")
        if b.shape != (fan_out,):
            raise ValueError(f"'{index}.bias' has shape {b.shape}; '{index}.weight' of shape "
                             f"{W.shape} needs ({fan_out},)")
        if not sizes:
            sizes.append(fan_in)
        sizes.append(fan_out)
    return sizes


def from_state_dict(cls, sd, activation="relu", loss="cross_entropy", dtype=None,
                    device="cpu", seed=None):
    """A net of class ``cls`` holding the weights of ``sd``.

    Parameters
    ----------
    cls : type
        :class:`~fastdnn.MLP` or a subclass.
    sd : mapping of str to array-like
        ``{"0.weight": ..., "0.bias": ..., "2.weight": ...}`` as ``nn.Sequential``'s
        ``state_dict()`` has it (PyTorch tensors, NumPy arrays or nested lists).  The
        numerical order of the module indices is the order of the layers; any spacing
        is accepted (``0, 2, 4`` with activation modules between the Linear layers,
        ``0, 1, 2`` without).
    activation, loss, device, seed
        As for :class:`~fastdnn.MLP`; the state dict holds no activations or loss.
    dtype : {"float32", "float64"}, optional
        Default: float64 when any array is float64 (of either byte order) or wider,
        else float32 (PyTorch's default).

    Returns
    -------
    MLP
        A net of widths ``[fan_in of "0.weight", fan_out of each weight, ...]``.

    Raises
    ------
    TypeError
        For something that is not a mapping, or arrays that do not hold real numbers.
    ValueError
        For an unexpected or missing key, inconsistent shapes, or values that are NaN,
        infinite or beyond the range of ``dtype``.
    """
    layers = _layers(sd)
    sizes = _sizes(layers)
    if dtype is None:
        # By kind and size: a big-endian float64 ('>f8') is not np.float64, and a
        # longdouble is wider still (both gave float32 nets).
        wide = any(a.dtype.kind == "f" and a.dtype.itemsize >= 8
                   for _, W, b in layers for a in (W, b))
        dtype = "float64" if wide else "float32"
    dtype = check_dtype(dtype)
    weights = []
    for index, W, b in layers:
        with np.errstate(over="ignore"):
            W, b = W.T.astype(dtype), b.astype(dtype)
        for name, a in (("weight", W), ("bias", b)):
            if not np.isfinite(a).all():
                raise ValueError(f"'{index}.{name}' holds NaN, infinity or values beyond "
                                 f"{dtype.name}'s range")
        weights.append((W, b))
    net = cls(sizes, activation=activation, loss=loss, dtype=dtype, device=device, seed=seed)
    net.set_weights(weights)
    return net
