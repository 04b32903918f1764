"""What waiting for a collective in Python costs: MPI's blocking ``Allreduce`` against
``Ranks._wait`` polling an ``Iallreduce`` (``charrnn.distributed``), per call, with both ranks
arriving together (the case where the naps cannot help and only the polling's overhead shows).

Two sizes: the control allreduce (3 float64, 24 bytes) and the gradients of
``configs/default.yaml`` (104,780 float32, 0.4 MiB). The two ways take turns, twice each.
Run from the repository root::

    OPENBLAS_NUM_THREADS=1 mpiexec -n 2 python benchmarks/collective_wait.py

Rank 0 prints one line per turn: microseconds per call.
"""

import os
import sys
import time

import numpy as np
from mpi4py import MPI

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from charrnn.distributed import Ranks  # noqa: E402


def main() -> None:
    comm = MPI.COMM_WORLD
    ranks = Ranks(comm, MPI)

    def blocking(b):
        comm.Allreduce(MPI.IN_PLACE, b, op=MPI.SUM)

    def polled(b):
        ranks._wait(comm.Iallreduce(MPI.IN_PLACE, b, op=MPI.SUM))

    sizes = (("control, 24 B", np.zeros(3), 20000), ("gradients, 0.4 MiB", np.zeros(104_780, np.float32), 2000))
    for name, buf, n in sizes:
        for how, call in (("blocking", blocking), ("polled", polled)) * 2:
            comm.Barrier()
            t = time.perf_counter()
            for _ in range(n):
                call(buf)
            per_call = (time.perf_counter() - t) / n
            if comm.Get_rank() == 0:
                print(f"{name:20s} {how:9s} {per_call * 1e6:8.1f} us per call", flush=True)


if __name__ == "__main__":
    main()
