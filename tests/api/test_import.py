"""``import fastdnn`` has no side effects: it compiles nothing, starts no thread pool and
imports neither kernel tree's heavy parts nor numba.cuda.  Checked in a fresh
interpreter, then -- in the same one, as a control that the signals work -- the first
CPU net does all three things the import must not.
"""
import json

from support import run_python

PROBE = """
    import json
    import sys

    def state():
        from numba.core.dispatcher import Dispatcher
        from numba.np.ufunc import parallel

        modules = [m for m in sys.modules if m.startswith("fastdnn")]
        compiled = sorted(f"{m}.{name}" for m in modules
                          for name, obj in vars(sys.modules[m]).items()
                          if isinstance(obj, Dispatcher) and obj.signatures)
        return dict(modules=sorted(modules), compiled=compiled,
                    pool_started=bool(parallel._is_initialized),
                    threading_layer=parallel._threading_layer,
                    cuda="numba.cuda" in sys.modules or "numba_cuda" in sys.modules)

    import fastdnn as fd
    after_import = state()

    import numpy as np
    net = fd.MLP([3, 4, 2], seed=0)
    net.fit(np.ones((4, 3)), [0, 1, 0, 1], epochs=1, batch_size=2)
    print(json.dumps(dict(after_import=after_import, after_fit=state())))
"""

#: The modules that compile or start something when used: none may load at import.
HEAVY = ["fastdnn.kernels.cpu.blas", "fastdnn.kernels.cpu.train", "fastdnn.kernels.cpu.backend",
         "fastdnn.kernels.cpu.threads", "fastdnn.kernels.cuda", "fastdnn.kernels.cuda.backend"]


def test_import_compiles_nothing_and_starts_no_threads():
    out = json.loads(run_python(PROBE).strip().splitlines()[-1])
    imported, used = out["after_import"], out["after_fit"]

    assert imported["compiled"] == []
    assert not imported["pool_started"] and imported["threading_layer"] is None
    assert not imported["cuda"]
    assert [m for m in HEAVY if m in imported["modules"]] == []

    # The control: a CPU net loads the CPU tree, starts the pool and compiles (or loads
    # from the cache) its kernels -- and still imports nothing of CUDA.
    assert used["pool_started"] and used["threading_layer"] is not None
    assert "fastdnn.kernels.cpu.train.train_steps" in used["compiled"]
    assert {"fastdnn.kernels.cpu.blas", "fastdnn.kernels.cpu.train"} <= set(used["modules"])
    assert not used["cuda"] and "fastdnn.kernels.cuda" not in used["modules"]


def test_a_bad_fastdnn_cache_is_one_error_line_not_an_import_traceback():
    """Raised at import, it reached every CLI command (``--version`` too) as a traceback
    from the console script's import; now the first network raises it."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["FASTDNN_CACHE"] = "abc"
    cli = [sys.executable, "-c", "import sys; from fastdnn.cli import run; sys.exit(run())"]
    version = subprocess.run(cli + ["--version"], env=env, capture_output=True, text=True,
                             timeout=120)
    assert version.returncode == 0 and "Traceback" not in version.stderr
    train = subprocess.run(cli + ["train", "--epochs", "1", "--no-save"], env=env,
                           capture_output=True, text=True, timeout=120)
    assert train.returncode != 0 and "Traceback" not in train.stderr
    assert "fastdnn: error: FASTDNN_CACHE must be 0 or 1" in train.stderr
    out = run_python("""
        import fastdnn as fd
        try:
            fd.MLP([2, 3, 2])
        except ValueError as exc:
            print(exc)
    """, FASTDNN_CACHE="abc")
    assert out.startswith("FASTDNN_CACHE must be 0 or 1")


def test_numba_disable_jit_is_said_at_the_first_network():
    """NUMBA_DISABLE_JIT=1 (Numba's debugging switch) failed in the kernels' set-up
    with AttributeError: 'function' object has no attribute 'py_func'."""
    out = run_python("""
        import fastdnn as fd
        try:
            fd.MLP([2, 3, 2])
        except ValueError as exc:
            print(exc)
    """, NUMBA_DISABLE_JIT="1")
    assert "NUMBA_DISABLE_JIT=1" in out
