"""MPI ranks in containers.

  env.py     the environment policy: the MPI variables for a container's
             interfaces (mpi_env), for a launcher reached over the network
             (launcher_env), and why each is set (describe)
  relay.py   the launcher's loopback PMIx server, reachable from a rank's
             own network namespace (`pyctr run` under mpirun)
  doctor.py  `pyctr mpi-doctor`: what in a setup will break MPI, in words

The policy is what most callers need, so its names are here too:
`from pyctr import mpi; mpi.mpi_env(...)`. env.py imports nothing heavy;
relay and doctor are imported only by their users.
"""
from pyctr.mpi.env import (LAUNCHERS, Iface, describe, iface, launcher_env, merge, mpi_env,
                           pmix_servers, pmix_uris)

__all__ = ["LAUNCHERS", "Iface", "describe", "iface", "launcher_env", "merge", "mpi_env",
           "pmix_servers", "pmix_uris"]
