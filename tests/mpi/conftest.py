"""The MPI tests run only under an MPI launcher with several ranks:

    mpiexec -n 2 python -m mpi4py -m pytest -q -p no:cacheprovider tests/mpi
    mpiexec -n 3 python -m mpi4py -m pytest -q -p no:cacheprovider tests/mpi

Every rank runs every test; a test's collectives meet because the ranks run the same
tests in the same order.  ``-m mpi4py`` turns an exception that escapes a rank into
``MPI_Abort`` of all of them (no rank waits forever on one that died); CI also puts a
timeout on the launcher.  Elsewhere (the plain ``python -m pytest`` run, a machine
without mpi4py) the tests here are skipped; mpi4py is not even imported, since
importing it starts MPI.
"""
import os
import tempfile

import pytest

#: Environment variables by which the common launchers announce the job's size
#: (MPICH's Hydra, Open MPI, Slurm's srun).
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "SLURM_NTASKS")
SKIP_REASON = ("MPI tests: run them as mpiexec -n 2 python -m mpi4py -m pytest tests/mpi "
               "(pip install -e '.[test,mpi]')")


def _launched_ranks():
    for name in _SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


def _world():
    """``MPI.COMM_WORLD`` when this process is one of several ranks, else None."""
    if _launched_ranks() < 2:
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    return MPI.COMM_WORLD if MPI.COMM_WORLD.Get_size() > 1 else None


WORLD = _world()
if WORLD is not None:
    # One pytest temporary root per rank: ranks sharing one raced to clean up old folders.
    _root = os.path.join(tempfile.gettempdir(), f"pytest-mpi-rank{WORLD.Get_rank()}")
    os.makedirs(_root, exist_ok=True)
    os.environ["PYTEST_DEBUG_TEMPROOT"] = _root


def pytest_collection_modifyitems(config, items):
    if WORLD is not None:
        return
    here = os.path.dirname(os.path.abspath(__file__))
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if str(item.fspath).startswith(here + os.sep):
            item.add_marker(skip)


@pytest.fixture
def comm():
    """The world communicator (every test here runs on all its ranks)."""
    return WORLD


@pytest.fixture
def shared_tmp(comm, tmp_path):
    """A folder every rank sees: rank 0's ``tmp_path`` (the ranks share a machine here)."""
    return comm.bcast(str(tmp_path))
