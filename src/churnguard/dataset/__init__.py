"""Loading and validating the input tables: the data contract.

Four tables, CSV (UTF-8, also gzipped as ``.csv.gz``) or Parquet, chosen by extension:

* **transactions** (required): ``customer_id``, ``timestamp``, ``amount`` (negative = refund or return; without
  an ``amount`` column, ``quantity`` x ``unit_price``); optional ``order_id``, ``quantity``, ``unit_price``,
  ``category``, ``channel``, ``discount``.
* **tickets** (optional): ``customer_id``, ``opened_at``; optional ``first_response_at``, ``resolved_at``,
  ``channel``, ``csat`` (1-5), ``ticket_id``.
* **customers** (optional): ``customer_id``; optional ``signup_date``, ``loyalty_member``, ``loyalty_points``,
  ``nps`` (0-10) and any other attribute columns.
* **events** (optional): ``customer_id``, ``timestamp``, ``event_type`` (``visit``, ``page_view``,
  ``app_session``, ``email_sent``, ``email_open``, ``email_click``, ``cart_add``, ... read in lower case);
  optional ``duration_seconds`` (>= 0), ``channel``, ``session_id``. Events of customers found in neither the
  transactions nor the customers table are bad rows.
* **campaigns** (for ``train-uplift``): ``customer_id``, ``sent_at`` (the day the action was taken), ``action``,
  ``treated`` (true = contacted, false = held out as control); optional ``campaign_id``, ``cost``. A scores file
  of ``churnguard score`` is read as one campaign (:func:`load_campaigns`).

Users' own column names map onto these through ``data.columns`` in the config; CSV files are read in
``data.encoding`` with ``data.delimiter``; rows matching ``data.exclude`` (postage, fees) are left out before
validation, and how many is logged per rule. Problems that make a whole
file unusable (missing file or column, empty file, dates in mixed styles) raise :class:`DataError`. Rows
that cannot be used (empty id, unparseable date, non-numeric amount, a ticket of an unknown customer, ...)
either raise too (``on_bad_rows: raise``, the default) or are set aside in ``Tables.rejects`` with the
reason (``on_bad_rows: reject``). No row is ever dropped without a trace. A CSV row with more fields than the
header (an unquoted ``1,234.50``) is such a row: none of its fields is read. Ids (customer, order, ticket) are
text; an integer written as a float (``12346.0``, or a Parquet float column) is read as the integer, so it
joins the same id written as an integer; transactions and customers that share almost no ids are refused.

The stage in parts, in the order the data passes them: :mod:`~churnguard.dataset.contract` (the tables and
columns, their limits, the errors), :mod:`~churnguard.dataset.values` (cell values: text, ids, dates, numbers),
:mod:`~churnguard.dataset.tables` (validated tables, id codes, "today"), :mod:`~churnguard.dataset.validate`
(the checks of every row and of the tables together) and :mod:`~churnguard.dataset.read` (the files and
databases read in blocks).
"""

from __future__ import annotations

from churnguard.dataset.contract import (
    CONTRACT,
    FEATURE_INPUTS,
    MAX_MAGNITUDE,
    MIN_IDS_JUDGED,
    REJECT_COLUMNS,
    ROW_COLUMN,
    DataError,
    check_columns,
    check_unique_columns,
    dialect,
    feature_columns,
    header,
    missing_tables_note,
    rejects_summary,
    rows_error,
    write_rejects,
)
from churnguard.dataset.read import (
    BLOCK_ROWS,
    CSV_BLOCK_BYTES,
    load_campaigns,
    load_tables,
    validate_campaigns,
)
from churnguard.dataset.tables import (
    IdCodes,
    IdOverlap,
    RepeatedRows,
    Tables,
    check_id_overlap,
    id_overlap,
    last_day,
    latest_plausible_date,
    latest_plausible_day,
    merge_overlap,
    merge_repeated,
    repeated_rows,
    repeated_rows_note,
    text_dtype,
    today,
)
from churnguard.dataset.validate import (
    RawTable,
    exclusion_note,
    validate_tables,
)
from churnguard.dataset.values import (
    NULL_IDS,
    DateCensus,
    arrow_column,
    category_codes,
    clean_id_list,
    clean_ids,
    date_census,
    date_style,
    dates_out_of_range,
    dictionary_codes,
    id_text,
    joint_codes,
    merge_census,
    mixed_styles_error,
    text_cells,
)

__all__ = ["BLOCK_ROWS", "CONTRACT", "CSV_BLOCK_BYTES", "FEATURE_INPUTS", "MAX_MAGNITUDE", "MIN_IDS_JUDGED",
           "NULL_IDS", "REJECT_COLUMNS", "ROW_COLUMN", "DataError", "DateCensus", "IdCodes", "IdOverlap", "RawTable", "RepeatedRows", "Tables", "arrow_column",
           "category_codes", "check_columns", "check_id_overlap", "check_unique_columns", "clean_id_list", "clean_ids", "date_census", "date_style",
           "dates_out_of_range", "dialect", "dictionary_codes", "exclusion_note", "feature_columns", "header",
           "id_overlap", "id_text", "joint_codes", "last_day", "latest_plausible_date", "latest_plausible_day",
           "load_campaigns", "load_tables", "merge_census", "merge_overlap", "merge_repeated", "missing_tables_note",
           "mixed_styles_error", "rejects_summary", "repeated_rows", "repeated_rows_note", "rows_error", "text_cells", "text_dtype", "today", "validate_campaigns",
           "validate_tables", "write_rejects"]
