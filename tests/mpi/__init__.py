"""Tests of the data-parallel fit over MPI (run under mpiexec; see conftest.py)."""
