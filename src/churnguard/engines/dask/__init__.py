"""Scale-out on Dask: the local engine's tables, features, scores and models, computed on a cluster.

The local engine holds every table in one process. This package runs the same steps on a
``dask.distributed`` cluster (a ``LocalCluster`` on this machine, or a scheduler given by address) and
gives the same results:

* :func:`read_tables_dask` runs the steps of :mod:`churnguard.engines.partitions` as tasks: CSV files, Parquet
  files and Parquet datasets read in chunks on the workers, every table split by customer (each partition holds
  its customers' whole history) and validated, what depends on a whole file decided over all of it. So the kept
  rows, the rejects and the errors are the local engine's.
* :func:`build_features_dask` computes the population-level quantities over all customers first: the
  lifespan behind CLTV, the VIP threshold, and whether each customer attribute is numeric or categorical
  (and its levels). Each partition's features are then built with them, so the result equals
  ``build_features`` on all the data, column for column.
* :func:`score_dask` scores the partitions in parallel with the model's own lifespan and VIP threshold and
  selects customers within the budget over all of them: the scores equal ``score_tables``.
* :func:`train_dask` builds the training set per partition and trains ``lightgbm.dask``'s classifier.

Failures: a task whose worker dies is retried on another worker, up to
``distributed.scheduler.allowed-failures`` times (3 by default). When the retries are used up, or a task
raises, the call raises ``RuntimeError`` naming the step and the customer partition; a :class:`DataError`
about the input passes through as it is. Output files are written atomically, so a failed run leaves none.

Workers read the input files themselves: with a remote scheduler, every worker must see the same paths
(a shared file system). The shuffle by customer makes ``chunks x partitions`` small tasks per table;
input is read in chunks of about 64 MB and partitioned at about 128 MB per partition by default.
"""

from __future__ import annotations

from churnguard.engines.dask._cluster import connect, describe
from churnguard.engines.dask._read import DaskTables, read_tables_dask
from churnguard.engines.dask.features import build_features_dask, features_and_unseen_dask
from churnguard.engines.dask.scoring import score_dask
from churnguard.engines.dask.training import train_dask

__all__ = ["DaskTables", "build_features_dask", "connect", "describe", "features_and_unseen_dask", "read_tables_dask",
           "score_dask", "train_dask"]
