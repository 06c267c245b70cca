"""Intel MKL for the big products (:mod:`fastdnn.kernels.cpu.mkl`): which library a
process binds and when it refuses, that the big products run on MKL and the small ones
stay on SciPy's BLAS, and that MKL's products are right, serial, and independent of the
thread count and of the operands' alignment.

The cases that run MKL skip where it is not installed (``pip install 'fastdnn[mkl]'``);
they run in fresh interpreters, since a process binds its BLAS once.
"""
import json

import pytest

from fastdnn import config
from fastdnn.kernels.cpu import blas, haswell, mkl

from support import run_python

needs_mkl = pytest.mark.skipif(mkl.find() is None, reason="Intel MKL is not installed")


@pytest.mark.parametrize("vendor, found, want", [
    ("GenuineIntel", "/x/libmkl_rt.so.2", "mkl"),
    ("AuthenticAMD", "/x/libmkl_rt.so.2", "scipy"),
    ("", "/x/libmkl_rt.so.2", "scipy"),
    ("GenuineIntel", None, "scipy"),
])
def test_auto_takes_mkl_only_where_installed_on_an_intel_cpu(monkeypatch, vendor, found, want):
    monkeypatch.setattr(config, "BLAS", None)
    monkeypatch.delenv("FASTDNN_BLAS", raising=False)
    monkeypatch.setattr(mkl, "cpu_vendor", lambda: vendor)
    monkeypatch.setattr(mkl, "find", lambda: found)
    monkeypatch.setattr(haswell, "wanted", lambda core: False)  # no Zen 4 (test_haswell)
    assert blas.library() == want
    monkeypatch.setenv("FASTDNN_BLAS", "auto")
    assert blas.library() == want


def test_the_setting_names_the_library(monkeypatch):
    monkeypatch.setattr(mkl, "cpu_vendor", lambda: "GenuineIntel")
    monkeypatch.setattr(mkl, "find", lambda: "/x/libmkl_rt.so.2")
    monkeypatch.setenv("FASTDNN_BLAS", "mkl")
    monkeypatch.setattr(config, "BLAS", "scipy")  # the config wins over the environment
    assert blas.library() == "scipy"
    monkeypatch.setattr(config, "BLAS", None)
    assert blas.library() == "mkl"


@pytest.mark.parametrize("bad", ["MKL", "openblas", "", 1, None])
def test_a_bad_config_setting_is_refused(monkeypatch, bad):
    monkeypatch.setenv("FASTDNN_BLAS", "scipy")
    monkeypatch.setattr(config, "BLAS", bad)
    if bad is None:  # not a bad value: the environment decides
        assert blas.library() == "scipy"
        return
    with pytest.raises(ValueError, match="fastdnn.config.BLAS"):
        blas.library()


@pytest.mark.parametrize("bad", ["MKL", "openblas", " mkl"])
def test_a_bad_environment_setting_is_refused(monkeypatch, bad):
    monkeypatch.setattr(config, "BLAS", None)
    monkeypatch.setenv("FASTDNN_BLAS", bad)
    with pytest.raises(ValueError, match="FASTDNN_BLAS"):
        blas.library()


def test_a_process_keeps_the_library_it_bound(monkeypatch):
    blas.prepare()
    other = "scipy" if blas._prepared == "mkl" else "mkl"
    monkeypatch.setattr(config, "BLAS", blas._prepared)
    blas.prepare()  # the same library: nothing to say
    monkeypatch.setattr(config, "BLAS", other)
    with pytest.raises(RuntimeError, match="bound once"):
        blas.prepare()


def test_mkl_asked_for_and_missing_says_how_to_install(monkeypatch):
    monkeypatch.setattr(mkl, "_lib", None)
    monkeypatch.setattr(mkl, "find", lambda: None)
    with pytest.raises(ImportError, match=r"fastdnn\[mkl\]"):
        mkl.load()


def test_an_mkl_without_the_64_bit_interface_says_which_version_is_needed(monkeypatch):
    class OldMKL:  # a library without cblas_sgemm_64 (before oneMKL 2024)
        cblas_sgemm = None

    monkeypatch.setattr(mkl, "_lib", OldMKL())
    monkeypatch.setattr(mkl, "_engine", None)
    with pytest.raises(ImportError, match="oneMKL 2024"):
        mkl.gemm_address()


def test_an_unusable_mkl_under_auto_leaves_scipys_blas_with_a_warning():
    """An MKL older than 2024 on the system's library path of an Intel machine: "auto"
    took it, and every CPU network failed with its ImportError; MKL was never asked
    for."""
    out = run_python("""
        import json, warnings
        import numpy as np
        import fastdnn as fd
        from fastdnn.kernels.cpu import blas, mkl
        mkl.cpu_vendor = lambda: "GenuineIntel"
        mkl.find = lambda: "/x/libmkl_rt.so.1"
        def old():
            raise ImportError("Intel MKL at /x/libmkl_rt.so.1 lacks 'cblas_sgemm_64'")
        mkl.gemm_address = old
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            X = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
            fd.MLP([4, 8, 2], seed=0).fit(X, (X[:, 0] > 0).astype(int), epochs=1)
            fd.MLP([4, 8, 2], seed=0)  # a second network: the same library, no error
        print(json.dumps([blas._prepared, blas.library(),
                          [str(w.message) for w in caught if w.category is RuntimeWarning]]))
    """, FASTDNN_BLAS="auto")
    prepared, chosen, said = json.loads(out.strip().splitlines()[-1])
    assert prepared == chosen and chosen in ("scipy", "scipy-haswell")
    assert len(said) == 1 and "cblas_sgemm_64" in said[0] and "SciPy's BLAS" in said[0]


def test_an_mkl_asked_for_by_name_and_unusable_still_raises():
    run_python("""
        import numpy as np, pytest
        import fastdnn as fd
        from fastdnn.kernels.cpu import mkl
        mkl.find = lambda: "/x/libmkl_rt.so.1"
        def old():
            raise ImportError("Intel MKL at /x/libmkl_rt.so.1 lacks 'cblas_sgemm_64'")
        mkl.gemm_address = old
        with pytest.raises(ImportError, match="cblas_sgemm_64"):
            fd.MLP([4, 8, 2], seed=0)
    """, FASTDNN_BLAS="mkl")


def test_a_library_without_mkls_settings_is_an_import_error(monkeypatch):
    """A libmkl_rt without MKL_Set_Threading_Layer raised AttributeError from load."""
    class Stripped:
        pass

    monkeypatch.setattr(mkl, "_lib", None)
    monkeypatch.setattr(mkl, "find", lambda: "/x/libmkl_rt.so.1")
    monkeypatch.setattr(mkl.ctypes, "CDLL", lambda path: Stripped())
    monkeypatch.delenv("MKL_THREADING_LAYER", raising=False)
    with pytest.raises(ImportError, match="lacks .*MKL_Set_Threading_Layer"):
        mkl.load()
    assert mkl._lib is None


@pytest.mark.parametrize("where", ["prefix", "user"])
def test_find_looks_where_pip_puts_the_library(monkeypatch, tmp_path, where):
    lib = tmp_path / where / "lib"
    lib.mkdir(parents=True)
    (lib / "libmkl_rt.so.2").write_bytes(b"")
    empty = str(tmp_path / "empty")
    monkeypatch.setattr(mkl.sys, "prefix", str(tmp_path / "prefix") if where == "prefix"
                        else empty)
    monkeypatch.setattr(mkl.sys, "base_prefix", empty)
    monkeypatch.setattr(mkl.site, "USER_BASE", str(tmp_path / "user"))
    assert mkl.find() == str(lib / "libmkl_rt.so.2")


def test_cpu_vendor_reads_the_vendor_line(tmp_path):
    amd, bare = tmp_path / "amd", tmp_path / "bare"
    amd.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n")
    bare.write_text("processor\t: 0\n")
    assert mkl.cpu_vendor(amd) == "AuthenticAMD"
    assert mkl.cpu_vendor(bare) == ""
    assert mkl.cpu_vendor(tmp_path / "missing") == ""


# Products in a child on one library: bits (as hex), the float64 error, and which
# library bound.  Shapes: big (MKL where used), big with a narrow output (SciPy's for
# X @ Y and X.T @ D), and small (SciPy's).
PRODUCTS = """
import json
import numpy as np
from fastdnn.kernels.cpu import blas
from fastdnn.kernels.cpu.threads import limit_threads
blas.prepare()
out = dict(library=blas._prepared, products={})
rng = np.random.default_rng(0)
for dtype in ("float32", "float64"):
    for m, k, n in ((1100, 1200, 1050), (256, 1200, 10), (16, 12, 20)):
        X = rng.standard_normal((m, k)).astype(dtype)
        Y = rng.standard_normal((k, n)).astype(dtype)
        D = rng.standard_normal((m, n)).astype(dtype)
        runs = []
        for threads in (1, 2):
            with limit_threads(threads):
                C, G, B = np.empty((m, n), dtype), np.empty((k, n), dtype), np.empty((m, k), dtype)
                blas.matmul(X, Y, C)
                blas.matmul_tn(X, D, G)
                blas.matmul_nt(D, Y, B)
            runs.append([a.tobytes().hex() for a in (C, G, B)])
        X64, Y64, D64 = (a.astype(np.float64) for a in (X, Y, D))
        err = max(float(np.abs(got - want).max() / np.abs(want).max()) for got, want in (
            (C, X64 @ Y64), (G, X64.T @ D64), (B, D64 @ Y64.T)))
        out["products"][f"{dtype} {m}x{k}x{n}"] = dict(
            bits=runs[0], same_threads=runs[0] == runs[1], err=err)
print(json.dumps(out))
"""


def _products(library, **env):
    return json.loads(run_python(PRODUCTS, FASTDNN_BLAS=library, **env).splitlines()[-1])


@needs_mkl
def test_big_products_run_on_mkl_and_the_others_on_scipy():
    on_mkl, on_scipy = _products("mkl"), _products("scipy")
    assert (on_mkl["library"], on_scipy["library"]) == ("mkl", "scipy")
    for name, got in on_mkl["products"].items():
        want = on_scipy["products"][name]
        tol = 1e-5 if name.startswith("float32") else 1e-13
        assert got["err"] < tol and want["err"] < tol, name
        assert got["same_threads"] and want["same_threads"], name
        # Which library ran a product shows in its last bits, where the inner dimension
        # is beyond both libraries' blocking of it (with an inner dimension of a few
        # hundred, up to 768, both summed in one order and agreed to the bit).
        same = [a == b for a, b in zip(got["bits"], want["bits"])]
        if name.endswith("1100x1200x1050"):  # inner dimensions 1200, 1100, 1050
            assert not any(same), name
        elif name.endswith("256x1200x10"):  # X @ Y: a narrow output, on SciPy's BLAS
            assert same[0], name
        else:
            assert all(same), name


@needs_mkl
def test_the_big_product_rule_is_read_when_a_network_is_set_up():
    """``config.MKL_MIN_MACS`` set before the first network: no product is big enough,
    and every product has SciPy's bits."""
    none_big = json.loads(run_python(
        "from fastdnn import config\nconfig.MKL_MIN_MACS = 1 << 62\n" + PRODUCTS,
        FASTDNN_BLAS="mkl").splitlines()[-1])
    on_scipy = _products("scipy")
    assert none_big["library"] == "mkl"
    for name, got in none_big["products"].items():
        assert got["bits"] == on_scipy["products"][name]["bits"], name


ALIGNMENT = """
import json
import numpy as np
from fastdnn.kernels.cpu import blas, mkl
blas.prepare()
lib = mkl.load()
rng = np.random.default_rng(1)
X0 = rng.standard_normal((256, 300)).astype("float32")
Y0 = rng.standard_normal((300, 512)).astype("float32")

def at(a, offset):  # a copy of ``a`` starting ``offset`` bytes past a 64-byte boundary
    buf = np.empty(a.nbytes + 128, np.uint8)
    start = (-buf.ctypes.data) % 64 + offset
    view = buf[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    view[...] = a
    return view

bits = []
for offset in (0, 4, 8, 16, 36):
    C = at(np.zeros((256, 512), "float32"), offset)
    blas.matmul(at(X0, offset), at(Y0, (3 * offset) % 64), C)
    bits.append(C.tobytes().hex())
print(json.dumps(dict(same=len(set(bits)) == 1, threads=lib.MKL_Get_Max_Threads())))
"""


@needs_mkl
def test_mkl_products_do_not_depend_on_alignment_and_run_serially():
    got = json.loads(run_python(ALIGNMENT, FASTDNN_BLAS="mkl").splitlines()[-1])
    assert got == dict(same=True, threads=1)


@needs_mkl
def test_the_users_mkl_settings_are_kept():
    """``MKL_THREADING_LAYER`` set by the user is not overridden (each call is still
    serial: MKL's per-thread count is set to 1 around it)."""
    got = json.loads(run_python(ALIGNMENT, FASTDNN_BLAS="mkl", MKL_THREADING_LAYER="GNU",
                                MKL_NUM_THREADS="2").splitlines()[-1])
    assert got == dict(same=True, threads=2)


FIT = """
import json
import numpy as np
import fastdnn as fd
rng = np.random.default_rng(0)
X = rng.standard_normal((512, 300)).astype("float32")
y = rng.integers(0, 4, 512)
weights = []
for threads in (1, 2):
    net = fd.MLP([300, 512, 4], activation="relu", loss="cross_entropy", dtype="float32",
                 seed=0, n_threads=threads)
    net.fit(X, y, epochs=2, batch_size=256, optimizer="sgd")
    weights.append([a.tobytes().hex() for W, b in net.get_weights() for a in (W, b)])
print(json.dumps(dict(same=weights[0] == weights[1], loss=float(net.loss(X, y)))))
"""


@needs_mkl
def test_a_fit_on_mkl_has_the_same_bits_for_any_thread_count():
    on_mkl = json.loads(run_python(FIT, FASTDNN_BLAS="mkl").splitlines()[-1])
    on_scipy = json.loads(run_python(FIT, FASTDNN_BLAS="scipy").splitlines()[-1])
    assert on_mkl["same"] and on_scipy["same"]
    assert on_mkl["loss"] == pytest.approx(on_scipy["loss"], rel=1e-4)
