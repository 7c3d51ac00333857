"""The files underneath the stages: reading and atomically writing tables, and the machine's cores and memory.

Work files (a write in progress, a run's spilled pieces, outputs waiting to be replaced together) live in one
named place: a :func:`~churnguard._io.files.work_dir`, ``.churnguard-work-<host>-<pid>-<random>`` in the output's
directory, removed when its block ends, and by the next run in that directory when the process that made it was
killed. Formats are chosen by file extension.

The parts, each importing only the ones before it: :mod:`~churnguard._io.files` (atomic writes, work
directories, stops asked by a signal), :mod:`~churnguard._io.cores` (threads' share of the cores, malloc and
Arrow's memory pool), :mod:`~churnguard._io.codes` (text as integer codes), :mod:`~churnguard._io.read` (CSV
and Parquet input tables), :mod:`~churnguard._io.spreadsheet` (cells a spreadsheet would run as formulas) and
:mod:`~churnguard._io.write` (CSV and Parquet outputs, block by block).
"""

from churnguard._io import codes, cores, files, read, spreadsheet, write

__all__ = ["codes", "cores", "files", "read", "spreadsheet", "write"]
