"""Engines move data in and out of the one feature kernel and rule set: ``local`` (files, in partitions by
customer, in this process) and ``dask`` (customer partitions on a Dask cluster). The HTTP server's path is in
``churnguard.serving``."""
