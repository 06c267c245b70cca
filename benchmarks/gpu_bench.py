"""GPU benchmark, run by ``benchmarks/gpu_check.sh`` on a machine with an NVIDIA GPU:

1. GEMM: fastdnn's CUDA forward kernel (``Z = A @ W + b``, identity epilogue) against
   cuBLAS through ``torch.addmm`` in fp32 (TF32 off, PyTorch's default), in TFLOP/s,
   for each register tile the kernel can take and for the one it picks itself.
2. Epochs: ``fd.MLP(..., device="cuda").fit`` against the textbook PyTorch CUDA loop
   (zero_grad, forward, loss, backward, SGD step; data already on the GPU), same nets,
   same initial weights, plain SGD, batches in order, float32.

    python benchmarks/gpu_bench.py --out DIR [--quick]

Writes ``DIR/gpu_bench.json`` and ``DIR/gpu_bench.md``.
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

import fastdnn as fd  # noqa: E402
from fastdnn.kernels.cuda import dense as cuda_dense  # noqa: E402
from fastdnn.kernels.cuda.backend import CUDABackend  # noqa: E402
from fastdnn.kernels.spec import MSE  # noqa: E402
from numba import cuda  # noqa: E402

GEMM_SHAPES = [(512, 4096, 4096), (4096, 4096, 4096), (512, 1024, 1024), (256, 1024, 1024),
               (256, 784, 1024)]
# (name, sizes, batch, loss, samples per epoch)
NETS = [("16-32-32-32-2", [16, 32, 32, 32, 2], 64, "cross_entropy", 16384),
        ("64-128-128-10", [64, 128, 128, 10], 128, "cross_entropy", 16384),
        ("784-1024-1024-10", [784, 1024, 1024, 10], 256, "cross_entropy", 16384),
        ("1024-4096-4096-1024", [1024, 4096, 4096, 1024], 512, "mse", 8192)]
LR = 0.01


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def time_events(fn, reps):
    """Mean milliseconds of ``fn()`` over ``reps`` calls, timed with CUDA events."""
    fn()
    cuda.synchronize()
    start, stop = cuda.event(), cuda.event()
    start.record()
    for _ in range(reps):
        fn()
    stop.record()
    stop.synchronize()
    return start.elapsed_time(stop) / reps


def bench_gemm(shapes, quick):
    torch = _torch()
    rows = []
    rng = np.random.default_rng(0)
    for m, k, n in shapes:
        flops = 2.0 * m * k * n
        reps = 3 if quick else max(5, min(200, int(3e11 / flops)))
        backend = CUDABackend([k, n], [], MSE, np.dtype(np.float32))
        layout, bufs = backend._inference(m)  # the inference buffers for m rows (m <= 4096)
        A = rng.normal(size=(m, k)).astype(np.float32)
        theta = (rng.normal(size=backend.n_params) / np.sqrt(k)).astype(np.float32)
        backend.set_theta(theta)
        work = np.zeros(layout.work_size, dtype=np.float32)
        work[:m * k] = A.ravel()
        bufs.work.copy_to_device(work)
        row = dict(shape=f"{m}x{k}x{n}", m=m, k=k, n=n)
        for micro in (None, 8, 4, 2, 1):
            ms = time_events(lambda: cuda_dense.dense_forward(bufs, layout.table, 0, m, micro=micro), reps)
            row[f"fastdnn_micro{micro or 'auto'}_tflops"] = flops / ms / 1e9
        Z = bufs.work.copy_to_host()[layout.out_offset:layout.out_offset + m * n].reshape(m, n)
        want = A.astype(np.float64) @ theta[:k * n].reshape(k, n) + theta[k * n:]
        row["fastdnn_max_rel_err"] = float(np.abs(Z - want).max() / np.abs(want).max())
        if torch is not None:
            torch.backends.cuda.matmul.allow_tf32 = False
            At = torch.from_numpy(A).cuda()
            Wt = torch.from_numpy(theta[:k * n].reshape(k, n).copy()).cuda()
            bt = torch.from_numpy(theta[k * n:].copy()).cuda()
            torch.cuda.synchronize()
            ev0, ev1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.addmm(bt, At, Wt)
            torch.cuda.synchronize()
            ev0.record()
            for _ in range(reps):
                torch.addmm(bt, At, Wt)
            ev1.record()
            ev1.synchronize()
            row["cublas_tflops"] = flops / (ev0.elapsed_time(ev1) / reps) / 1e9
            row["fastdnn_vs_cublas"] = row["fastdnn_microauto_tflops"] / row["cublas_tflops"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def make_data(sizes, loss, n, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, sizes[0])).astype(np.float32)
    if loss == "mse":
        return X, X[:, :sizes[-1]].copy()
    return X, (X[:, :sizes[-1]].argmax(axis=1)).astype(np.int64)


def torch_epochs(torch, sizes, loss, X, y, batch, weights, epochs):
    from peers import torch_sequential  # benchmarks/ is the script's folder

    model = torch_sequential(torch, weights).cuda()
    crit = torch.nn.CrossEntropyLoss() if loss == "cross_entropy" else torch.nn.MSELoss()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    Xt, yt = torch.from_numpy(X).cuda(), torch.from_numpy(y).cuda()
    n = X.shape[0]

    def run_epoch():
        for s in range(0, n, batch):
            opt.zero_grad(set_to_none=True)
            out = crit(model(Xt[s:s + batch]), yt[s:s + batch])
            out.backward()
            opt.step()
        torch.cuda.synchronize()

    times = []
    for e in range(epochs + 1):  # the first is a warm-up
        t0 = time.perf_counter()
        run_epoch()
        times.append(time.perf_counter() - t0)
    with torch.no_grad():
        final = float(crit(model(Xt[:2048]), yt[:2048]))
    return times, final


def bench_epochs(nets, quick):
    torch = _torch()
    rows = []
    for name, sizes, batch, loss, n in nets:
        if quick:
            n = 4 * batch
        X, y = make_data(sizes, loss, n)
        epochs = 3
        net = fd.MLP(sizes, activation="relu", loss=loss, device="cuda", seed=0)
        weights = net.get_weights()
        t0 = time.perf_counter()
        net.fit(X, y, epochs=1, batch_size=batch, optimizer=fd.SGD(lr=LR), shuffle=False)
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        hist = net.fit(X, y, epochs=epochs, batch_size=batch, optimizer=fd.SGD(lr=LR), shuffle=False)
        wall = (time.perf_counter() - t0) / epochs
        row = dict(net=name, batch=batch, samples=n, steps=-(-n // batch),
                   fastdnn_warmup_s=warm, fastdnn_epoch_s=statistics.median(hist.seconds),
                   fastdnn_fit_wall_per_epoch_s=wall,
                   fastdnn_final_loss=float(net.loss(X[:2048], y[:2048])))
        row["fastdnn_samples_per_s"] = n / row["fastdnn_epoch_s"]
        if torch is not None:
            times, final = torch_epochs(torch, sizes, loss, X, y, batch, weights, epochs)
            row.update(torch_warmup_s=times[0], torch_epoch_s=statistics.median(times[1:]),
                       torch_final_loss=final)
            row["torch_samples_per_s"] = n / row["torch_epoch_s"]
            row["speedup_vs_torch"] = row["torch_epoch_s"] / row["fastdnn_epoch_s"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def render(gemm, epochs):
    lines = ["## GEMM: forward kernel vs cuBLAS (fp32, TFLOP/s)", "",
             "| m x k x n | fastdnn (auto tile) | micro 8 | micro 4 | micro 2 | micro 1 | cuBLAS | fastdnn / cuBLAS |",
             "|---|---|---|---|---|---|---|---|"]
    for r in gemm:
        cub = r.get("cublas_tflops", float("nan"))
        lines.append(f"| {r['shape']} | {r['fastdnn_microauto_tflops']:.2f} | {r['fastdnn_micro8_tflops']:.2f} | "
                     f"{r['fastdnn_micro4_tflops']:.2f} | {r['fastdnn_micro2_tflops']:.2f} | "
                     f"{r['fastdnn_micro1_tflops']:.2f} | {cub:.2f} | {r.get('fastdnn_vs_cublas', float('nan')):.0%} |")
    lines += ["", "## Training epochs: fastdnn device='cuda' vs PyTorch CUDA (float32, SGD, in order)", "",
              "| net | batch | steps/epoch | fastdnn epoch (s) | fit wall/epoch (s) | PyTorch epoch (s) | fastdnn samples/s | PyTorch samples/s | speed-up | final loss fastdnn / torch |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in epochs:
        lines.append(f"| {r['net']} | {r['batch']} | {r['steps']} | {r['fastdnn_epoch_s']:.4f} | "
                     f"{r['fastdnn_fit_wall_per_epoch_s']:.4f} | {r.get('torch_epoch_s', float('nan')):.4f} | "
                     f"{r['fastdnn_samples_per_s']:,.0f} | {r.get('torch_samples_per_s', float('nan')):,.0f} | "
                     f"{r.get('speedup_vs_torch', float('nan')):.2f}x | "
                     f"{r['fastdnn_final_loss']:.4f} / {r.get('torch_final_loss', float('nan')):.4f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=".")
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test, simulator)")
    p.add_argument("--skip-gemm", action="store_true")
    args = p.parse_args(argv)
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":  # smoke test: small launches
        from fastdnn import config
        config.CUDA_TILE, config.CUDA_MICRO, config.CUDA_THREADS_PER_BLOCK = 4, 2, 8
    shapes = [(9, 33, 7)] if args.quick else GEMM_SHAPES
    gemm = [] if args.skip_gemm else bench_gemm(shapes, args.quick)
    nets = NETS[:1] if args.quick else NETS
    epochs = bench_epochs(nets, args.quick)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "gpu_bench.json"), "w") as f:
        json.dump(dict(gemm=gemm, epochs=epochs), f, indent=1)
    md = render(gemm, epochs)
    with open(os.path.join(args.out, "gpu_bench.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
