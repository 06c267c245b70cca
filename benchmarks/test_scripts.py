"""The benchmark scripts refuse bad arguments before any work, with argparse's exit 2 and
the option named (a traceback, or a run that measured the wrong thing, before)."""
import pytest

import ab_trees
import activations
import compile_profile
import one_row
import peers


@pytest.mark.parametrize("main, argv, says", [
    # --quick --no-write: were a check lost, the run would be short and write nothing.
    (peers.main, ["--quick", "--no-write", "--timeout", "-3"], "--timeout must be positive"),
    (peers.main, ["--quick", "--no-write", "--fastdnn-threads", "0"],
     "--fastdnn-threads must be at least 1"),
    (peers.main, ["--worker", "pytorch", "--workload", "a"], "--worker takes one of"),
    (peers.main, ["--worker", "torch", "--workload", "zz"], "--worker takes one of"),
    (peers.main, ["--worker", "matmul", "--workload", "e,zz"], "--worker takes one of"),
    (peers.main, ["--quick", "--json", "{tmp}/missing/r.json"], "--json"),
    (ab_trees.main, ["{tmp}", "src"], "no fastdnn package in"),
    (ab_trees.main, ["src", "src", "--rounds", "0"], "--rounds must be at least 1"),
    (ab_trees.main, ["src", "src", "--env-before", "NAME"], "take NAME=VALUE"),
    (ab_trees.main, ["src", "src", "--workloads", "q"], "unknown workload 'q'"),
    (one_row.main, ["--nets", "16x32x2"], "--nets widths joined by '-'"),
    (one_row.main, ["--thresholds", "1k"], "--thresholds takes whole numbers"),
    (one_row.main, ["--rounds", "0"], "--rounds must be at least 1"),
    (compile_profile.main, ["--top", "-1"], "--top must be at least 1"),
    (activations.main, ["src", "--rounds", "0"], "--rounds must be at least 1"),
    (activations.main, ["src", "src", "src"], "give one src folder, or two"),
    (activations.main, ["{tmp}"], "no fastdnn package in"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_a_bad_argument_is_refused_before_any_work(main, argv, says, tmp_path, capsys,
                                                   monkeypatch):
    monkeypatch.chdir(ab_trees.ROOT)  # "src" is the repository's
    with pytest.raises(SystemExit) as exit:
        main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert exit.value.code == 2
    assert says in capsys.readouterr().err


def test_the_matmul_worker_is_a_worker(capsys, monkeypatch):
    """The argument check refused --worker matmul (workloads e,f): every run since lost
    its SGEMM rate and the targets on it, with nothing said."""
    import json
    monkeypatch.setattr(peers, "worker_matmul", lambda shapes: {"x": float(len(shapes))})
    assert peers.main(["--worker", "matmul", "--workload", "e,f"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out == {"system": "matmul", "gflops": {"x": float(len(peers.matmul_shapes(
        [peers.WORKLOADS["e"], peers.WORKLOADS["f"]])))}}
