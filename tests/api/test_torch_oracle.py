"""fastdnn against PyTorch, the trusted oracle, in float64.

* gradients of the mean loss match torch autograd to 1e-9 (relative to the largest
  entry of each array; both sides compute in float64, so the real agreement is
  ~1e-15 and 1e-9 leaves room only for different summation orders);
* a short deterministic training run (shuffle=False, fixed batch order) ends with
  the same weights as the same loop written with torch.optim and a LambdaLR that
  is stepped once per iteration, to 1e-9.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import fastdnn as fd  # noqa: E402
import naive  # noqa: E402
from support import assert_close, build  # noqa: E402

RTOL = 1e-9

TORCH_ACTIVATIONS = {
    "identity": lambda z: z,
    "relu": F.relu,
    "leaky_relu": F.leaky_relu,  # negative_slope 0.01
    "elu": F.elu,  # alpha 1.0
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "softplus": F.softplus,  # beta 1 (threshold 20 is never reached here)
    "gelu": F.gelu,  # approximate="none": the exact erf form
    "silu": F.silu,
}

TORCH_LOSSES = {
    "cross_entropy": lambda Z, y: F.cross_entropy(Z, y),
    "mse": lambda Z, y: F.mse_loss(Z, y.reshape(Z.shape)),
    "binary_cross_entropy": lambda Z, y: F.binary_cross_entropy_with_logits(Z, y.reshape(Z.shape)),
    "poisson": lambda Z, y: F.poisson_nll_loss(Z, y.reshape(Z.shape), log_input=True, full=False),
}

HEADS, HEAD_IDS = naive.HEADS, naive.HEAD_IDS


def torch_params(params):
    return [
        torch.tensor(a, dtype=torch.float64, requires_grad=True) for Wb in params for a in Wb
    ]


def torch_logits(flat, activation, X):
    n_layers = len(flat) // 2
    acts = [activation] * (n_layers - 1) if isinstance(activation, str) else activation
    A = torch.as_tensor(X, dtype=torch.float64)
    for i in range(n_layers):
        A = A @ flat[2 * i] + flat[2 * i + 1]
        if i < n_layers - 1:
            A = TORCH_ACTIVATIONS[acts[i]](A)
    return A


def torch_targets(loss, y):
    return torch.as_tensor(y, dtype=torch.int64 if loss == "cross_entropy" else torch.float64)


@pytest.mark.parametrize("size", [1, 7, 33])
@pytest.mark.parametrize("head", HEADS, ids=HEAD_IDS)
@pytest.mark.parametrize("activation", naive.ACTIVATION_NAMES)
def test_gradients_match_autograd(activation, head, size, make_data):
    loss, k = head
    X, y = make_data(loss, size, 4, k)
    net, params = build([4, size, 7, k], activation, loss)

    flat = torch_params(params)
    value = TORCH_LOSSES[loss](torch_logits(flat, activation, X), torch_targets(loss, y))
    value.backward()

    assert net.loss(X, y) == pytest.approx(value.item(), rel=RTOL)
    got = [g for dWb in net.gradients(X, y) for g in dWb]
    for g, p in zip(got, flat):
        assert_close(g, p.grad.numpy(), RTOL)


OPTIMIZERS = {
    "sgd": (lambda: fd.SGD(lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    "sgd-momentum": (
        lambda: fd.SGD(lr=0.1, momentum=0.9),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
    ),
    "sgd-momentum-wd": (
        lambda: fd.SGD(lr=0.1, momentum=0.5, weight_decay=0.05),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.5, weight_decay=0.05),
    ),
    "sgd-nesterov-wd": (
        lambda: fd.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.05),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.05),
    ),
    "adam": (lambda: fd.Adam(lr=0.01), lambda p: torch.optim.Adam(p, lr=0.01)),
    "adam-wd": (
        lambda: fd.Adam(lr=0.01, weight_decay=0.05),
        lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.05),
    ),
    "adamw": (
        lambda: fd.AdamW(lr=0.01, weight_decay=0.1),
        lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
    ),
}

DECAY = 0.1  # strong enough that the lr falls by almost half over the 9 steps


@pytest.mark.parametrize("head", [HEADS[0], HEADS[2], HEADS[4]], ids=[HEAD_IDS[0], HEAD_IDS[2], HEAD_IDS[4]])
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_training_run_matches_torch(optimizer, head, make_data):
    loss, k = head
    n, batch_size, epochs = 14, 4, 3  # a short last batch of 2 (12 had none)
    X, y = make_data(loss, n, 4, k)
    net, params = build([4, 7, 5, k], "tanh", loss)
    make_fd_optimizer, make_torch_optimizer = OPTIMIZERS[optimizer]

    flat = torch_params(params)
    opt = make_torch_optimizer(flat)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 / (1.0 + DECAY * t))
    Xt, yt = torch.as_tensor(X), torch_targets(loss, y)
    for _ in range(epochs):
        for start in range(0, n, batch_size):
            batch = slice(start, start + batch_size)
            opt.zero_grad()
            TORCH_LOSSES[loss](torch_logits(flat, "tanh", Xt[batch]), yt[batch]).backward()
            opt.step()
            sched.step()

    hist = net.fit(X, y, epochs=epochs, batch_size=batch_size, optimizer=make_fd_optimizer(),
                   schedule=fd.InverseTimeDecay(decay=DECAY), shuffle=False, verbose=False)
    assert len(hist) == epochs
    got = [a for Wb in net.get_weights() for a in Wb]
    moved = max(np.abs(g - a).max() for g, a in zip(got, naive.flatten(params)))
    assert moved > 1e-3  # the run did train
    for g, p in zip(got, flat):
        assert_close(g, p.detach().numpy(), RTOL)
