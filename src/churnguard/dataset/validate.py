"""Validation: each table's rows checked block by block (:class:`_Checker`), the date styles decided over a
whole table first, rows matching ``data.exclude`` left out, bad rows raised or set aside with their reason, and
the tables checked against each other (:func:`validate_tables`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from functools import reduce
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from churnguard._io.codes import take_codes
from churnguard._io.read import EXTRA_FIELDS
from churnguard._text import plural
from churnguard.dataset.contract import (
    _CHECKED,
    _DATES,
    _DAY,
    _FLAGS,
    _IDS,
    _LONG_ROW,
    _NULL_ID,
    _NUMERIC_RANGES,
    _REQUIRED_VALUES,
    _TEXT,
    MAX_MAGNITUDE,
    REJECT_COLUMNS,
    ROW_COLUMN,
    DataError,
    _amount_from_price,
    check_columns,
    rows_error,
)
from churnguard.dataset.tables import (
    IdCodes,
    Tables,
    _codes_found,
    _isin,
    _repeated,
    check_id_overlap,
    id_overlap,
    latest_plausible_day,
    repeated_rows,
    repeated_rows_note,
)
from churnguard.dataset.values import (
    DateCensus,
    _as_str,
    _census_of,
    _each_distinct,
    _id_codes,
    _ids_text,
    _is_text,
    _lower,
    _number,
    _numbers,
    _parse_bool,
    _parsed,
    _to_datetime,
    category_codes,
    date_style,
    dates_out_of_range,
    id_text,
    joint_codes,
    merge_census,
    mixed_styles_error,
    text_cells,
    without_null_ids,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    import pyarrow as pa

    from churnguard.config import DataConfig

logger = logging.getLogger("churnguard.dataset")  # the stage's logger, whichever part logs


class _Checker:
    """Collects bad rows of one table (first reason wins) and turns them into an error or rejects. Only the
    flagged rows' positions, column, reason and value (as text) are kept."""

    def __init__(self, df: pd.DataFrame, table: str, source: str, first_row: int = 1) -> None:
        # Row numbers as the user counts them: data rows from ``first_row`` on, or the numbers a reader recorded.
        self._rows = df.pop(ROW_COLUMN).to_numpy() if ROW_COLUMN in df else None
        self._first = first_row
        long_rows = df.pop(EXTRA_FIELDS) if EXTRA_FIELDS in df else None
        self.df, self.table, self.source = df, table, source
        self._flagged = np.zeros(len(df), dtype=bool)  # rows with a reason already
        self._groups: list[tuple[np.ndarray, str, str, np.ndarray]] = []  # positions, column, reason, values
        self.ids: tuple[pa.Array, np.ndarray] | None = None  # the customer ids' distinct values and codes
        # Text date columns whose census to take (by contract name), and then their censuses: before a style is
        # known (ISO 8601) and in the style the block was read in (see _census_pass).
        self.dates: dict[str, tuple[DateCensus, DateCensus | None] | None] = {}
        self.spare_census = False  # True: no census in the style while most values fail ISO 8601 (see below)
        if long_rows is not None:  # first: their other reasons would come from fields read out of place
            self.flag(long_rows.notna(), "(whole row)", _LONG_ROW, long_rows)

    def rows(self, where: np.ndarray) -> np.ndarray:
        """The row numbers of the rows at positions ``where``."""
        return where + self._first if self._rows is None else self._rows[where].astype(np.int64)

    @classmethod
    def joined(cls, parts: list[_Checker]) -> _Checker:
        """One checker of a table checked a block at a time (``parts``, in row order, each block's rows already
        checked): its rows, flags, reasons, row numbers and customer id codes as if it had been checked whole."""
        if len(parts) == 1:
            return parts[0]
        starts = np.cumsum([0] + [len(p.df) for p in parts])
        check = cls(pd.DataFrame(), parts[0].table, parts[0].source)
        check.df = _concat_columns([p.df for p in parts])
        check._flagged = np.concatenate([p._flagged for p in parts])
        check._groups = [(w + s, c, r, v) for p, s in zip(parts, starts, strict=False) for w, c, r, v in p._groups]
        if any(p._rows is not None or p._first != s + 1 for p, s in zip(parts, starts, strict=False)):
            check._rows = np.concatenate([p.rows(np.arange(len(p.df))) for p in parts])
        if all(p.ids is not None for p in parts):
            check.ids = joint_codes([p.ids for p in parts])
        return check

    def flag(self, mask: pd.Series | np.ndarray, column: str, reason: str, raw: pd.Series | None = None) -> None:
        new = np.asarray(mask, dtype=bool) & ~self._flagged
        if new.any():
            self._flagged |= new
            where = np.flatnonzero(new)
            src = raw if raw is not None else self.df.get(column, None)
            values = (src.iloc[where].astype(str).to_numpy(dtype=object) if src is not None
                      else np.full(len(where), pd.NA, dtype=object))
            self._groups.append((where, column, reason, values))

    def _bad_rows(self) -> pd.DataFrame:
        """The flagged rows' column, reason and value, indexed by position, in row order."""
        where, column, reason, value = (np.concatenate(parts) for parts in zip(*(
            (w, np.full(len(w), c, dtype=object), np.full(len(w), r, dtype=object), v)
            for w, c, r, v in self._groups), strict=True))
        order = np.argsort(where, kind="stable")
        return pd.DataFrame({"column": column[order], "reason": reason[order], "value": value[order]},
                            index=where[order])

    def id_codes(self, frame: pd.DataFrame) -> IdCodes | None:
        """The :class:`IdCodes` of ``frame``, this table as :meth:`finish` returned it (its usable rows, whose
        ids are all present), with only the distinct ids still in it."""
        if self.ids is None or "customer_id" not in frame:
            return None
        values, codes = self.ids
        if len(frame) != len(codes):
            codes = codes[~self._flagged]
            present = np.bincount(codes, minlength=len(values)) > 0
            if not present.all():
                values, codes = values.filter(present), (np.cumsum(present, dtype=np.int32) - 1)[codes]
        return IdCodes(values, codes, frame["customer_id"].array)

    def encode_ids(self) -> None:
        """Encode the customer ids of a table whose blocks kept them as text (:func:`_check_block`): one
        dictionary encoding of the whole column (the blocks' columns joined without a copy), rather than one per
        block and then one of the blocks' distinct ids together."""
        if self.ids is None and "customer_id" in self.df and _is_text(self.df["customer_id"]):
            self.df["customer_id"], self.ids = _id_codes(self.df["customer_id"])

    def repeated_ids(self) -> np.ndarray:
        """Whether each row's customer id occurs in another row too (missing ids: False)."""
        if self.ids is None:
            return _repeated(self.df["customer_id"])
        values, codes = self.ids
        counts = np.bincount(codes[codes >= 0], minlength=len(values))
        return (codes >= 0) & (np.append(counts, 0)[codes] > 1)

    def finish(self, mode: str, part: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
        n_bad = int(self._flagged.sum())
        if n_bad == 0 or len(self.df) == 0:
            return self.df, pd.DataFrame(columns=REJECT_COLUMNS)
        bad = self._bad_rows()
        if mode == "raise" or (n_bad == len(self.df) and not part):
            groups = bad.groupby(["column", "reason"]).groups.items()
            raise rows_error(self.source, self.table, len(self.df), [
                (column, reason, len(idx), bad.loc[idx, "value"],
                 [str(r) for r in self.rows(np.asarray(list(idx)[:3]))])
                for (column, reason), idx in groups])
        rejects = pd.DataFrame(
            {
                "table": self.table,
                "source": self.source,
                "row": self.rows(bad.index.to_numpy()),
                "customer_id": self.df["customer_id"].iloc[bad.index].astype("object").to_numpy()
                if "customer_id" in self.df
                else pd.NA,
                "column": bad["column"].to_numpy(),
                "value": bad["value"].to_numpy(),
                "reason": bad["reason"].to_numpy(),
            }
        )
        if not part:  # a part's rows are counted with the whole input's
            logger.warning("%s: set aside %s of %s (see rejects)", self.source, f"{n_bad:,}",
                           plural(len(self.df), f"{self.table} row"))
        return self.df.loc[~self._flagged].reset_index(drop=True), rejects


@dataclass(frozen=True)
class RawTable:
    """A table's raw rows in the user's column names, whole or a block at a time: its column names, its number
    of rows (None: known once the blocks are read) and its blocks (frames in row order).

    A CSV file read in blocks also names its text date columns whose style is decided on the whole column
    (``census``, contract names in file order; its blocks can then be read again), and how to read the file
    whole instead (``read_whole``), for a file Arrow's reader cannot read as pandas does
    (``_io.read.CsvNotBlockwise``)."""

    names: list[str]
    rows: int | None
    blocks: Iterable[pd.DataFrame]
    census: tuple[str, ...] = ()
    read_whole: Callable[[], RawTable] | None = None

    @classmethod
    def whole(cls, df: pd.DataFrame) -> RawTable:
        return cls(list(df.columns), len(df), [df])


def _prepare(raw: RawTable, table: str, sources: dict[str, str], config: DataConfig, allow_empty: bool,
             date_styles: dict[str, dict[str, str]]) -> tuple[_Checker, dict[str, int]]:
    """Check the columns, then per block: leave out the rows of ``data.exclude``, rename to contract names and
    parse types (dates in the table's ``date_styles``, by contract name, when given; the styles of the columns
    of ``raw.census`` decided over all blocks, see :func:`_census_pass`); bad rows are flagged on the returned
    checker (the blocks' joined), returned with the rows left out per rule. ``sources``: names for messages, per
    table."""
    source = sources.get(table, table)
    mapping: dict[str, str] = getattr(config.columns, table)
    names = [c for c in raw.names if c not in (ROW_COLUMN, EXTRA_FIELDS)]
    check_columns(table, names, source, config, rows=None if raw.rows == 0 and allow_empty else raw.rows)
    priced = table == "transactions" and _amount_from_price(names, mapping)
    rules = getattr(config.exclude, table)
    ends = [0]  # the row after each block read

    def one(start: int, block: pd.DataFrame, styles: dict[str, str] | None, spare: bool
            ) -> tuple[_Checker, dict[str, int]]:
        ends.append(start + len(block))
        df, excluded = exclude_rows(block, rules, first_row=start + 1)
        check = _Checker(df.rename(columns={u: c for c, u in mapping.items()}).reset_index(drop=True), table, source,
                         first_row=start + 1)
        check.dates = dict.fromkeys(c for c in raw.census if c in check.df and c not in date_styles.get(table, {}))
        check.spare_census = spare
        _check_block(check, config, styles, priced)
        return check, excluded

    def checked(styles: dict[str, str] | None, spare: bool = False) -> tuple[list[_Checker], list[dict[str, int]]]:
        blocks = raw.blocks
        if isinstance(blocks, list):
            return tuple(zip(*[one(0, b, styles, spare) for b in blocks], strict=True))
        return tuple(zip(*_in_order(lambda start, block: one(start, block, styles, spare), _numbered(blocks)),
                         strict=True))

    from churnguard._io.read import CsvNotBlockwise

    try:
        parts, counts = _census_pass(checked, raw, source, date_styles.get(table))
    except CsvNotBlockwise:
        return _prepare(raw.read_whole(), table, sources, config, allow_empty, date_styles)  # as pandas reads it
    excluded = _joint_counts(counts, rules)
    if excluded and not allow_empty:  # a part's exclusions are counted with the whole input's
        logger.warning("%s", exclusion_note(source, table, raw.rows if raw.rows is not None else max(ends), excluded))
    check = _Checker.joined(list(parts))
    check.encode_ids()
    return check, excluded


def _census_pass(checked: Callable[..., tuple], raw: RawTable, source: str,
                 styles: dict[str, str] | None) -> tuple:
    """``checked(styles)`` (the checkers and exclusion counts of a table's blocks read with those date styles),
    with the styles of the text date columns of ``raw.census`` decided on all their values as
    :func:`date_style` decides a column read whole: first every block is read as ISO 8601 (what most files are),
    with the census of each column; when a column turns out to be in another style (or in ISO 8601 with a
    block whose values mostly are not), the blocks are read again in the styles decided. Then a column with
    values in another style than the one decided raises :func:`mixed_styles_error`, as a column read whole does
    (styles decided first, in column order)."""
    columns = [c for c in raw.census if c not in (styles or {})]
    if not columns:
        return checked(styles)
    first = {**(styles or {}), **dict.fromkeys(columns, "ISO8601")}
    parts, counts = checked(first, spare=True)
    decided, undecided, said = {}, None, {}
    for column in columns:
        census = reduce(merge_census, [p.dates[column][0] for p in parts if p.dates.get(column)],
                        DateCensus())
        try:
            said[column] = []
            decided[column] = date_style(census, source, column,
                                         lambda *message, to=said[column]: to.append(message)) or "ISO8601"
        except DataError as error:  # raised after the columns before it are checked, as read whole
            undecided = error
            break
    if any(fmt != "ISO8601" or any(p.dates.get(c) and p.dates[c][1] is None for p in parts)
           for c, fmt in decided.items()):
        parts, counts = checked({**first, **decided})
    for column, fmt in decided.items():  # each column's warning, then its mixed styles, as read whole
        for message in said[column]:
            logger.warning(*message)
        census = reduce(merge_census, [p.dates[column][1] for p in parts if p.dates.get(column)],
                        DateCensus())
        if census.mixed:
            raise mixed_styles_error(census, source, column, fmt)
    if undecided is not None:
        raise undecided
    return parts, counts


def _numbered(blocks: Iterable[pd.DataFrame]) -> Iterator[tuple[int, pd.DataFrame]]:
    """Each block with the number of rows before it."""
    start = 0
    for block in blocks:
        yield start, block
        start += len(block)


def _in_order(fn: Callable, items: Iterable[tuple], workers: int = 2) -> Iterator:
    """``fn(*item)`` of each item, on ``workers`` threads with at most ``workers`` items taken and not yet
    returned (Arrow, numpy and pandas' parsers let go of the GIL), in the order of the items."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers, thread_name_prefix="churnguard-check") as pool:
        pending: deque = deque()
        for item in items:
            if len(pending) == workers:
                yield pending.popleft().result()
            pending.append(pool.submit(fn, *item))
        while pending:
            yield pending.popleft().result()


def _check_block(check: _Checker, config: DataConfig, styles: dict[str, str] | None, priced: bool) -> None:
    """Check and parse the columns of one block (``check.df``, in contract names), flagging its bad rows; the
    checked columns are replaced by their parsed values, the others kept as they are."""
    df = check.df
    out = df.copy(deep=False)
    for column in df.columns:
        raw = df[column]
        if column not in _CHECKED:
            continue
        if _is_text(raw) or (isinstance(raw.dtype, pd.CategoricalDtype) and column in _TEXT):
            raw = _each_distinct(raw, text_cells)
            if column == "customer_id":
                cells, raw = raw, _each_distinct(raw, without_null_ids)
                if raw is not cells:  # a null marker: a missing id, its text kept for the message
                    check.flag(cells.notna() & raw.isna(), column, _NULL_ID, cells)
        if column in _DATES:
            fmt = (styles or {}).get(column, config.date_format)
            out[column] = _checked_dates(check, raw, column, fmt, given=fmt is not None and fmt == config.date_format)
        elif column in _NUMERIC_RANGES:
            num = raw if raw.dtype == np.float64 else _numbers(raw)
            values, lo, hi = num.to_numpy(), *_NUMERIC_RANGES[column]  # float64: checked by numpy, not pandas
            missing = np.isnan(values)
            check.flag(raw.notna().to_numpy() & missing, column, "are not numeric", raw)
            check.flag(np.isinf(values), column, "are not finite numbers", raw)
            check.flag(~missing & ~((values >= lo) & (values <= hi)), column,
                       f"lie outside {_number(lo)}..{_number(hi)}", raw)
            out[column] = num
        elif column in _FLAGS:
            flags = _parse_bool(raw)
            check.flag(raw.notna() & flags.isna(), column, "are not true/false", raw)
            out[column] = flags
        elif column == "customer_id" and isinstance(raw.dtype, pd.CategoricalDtype):
            out[column] = _each_distinct(raw, _ids_text)
            check.ids = category_codes(out[column])
        elif column == "customer_id" and _is_text(df[column]):
            out[column] = raw  # cleaned; encoded once for the whole table (_Checker.encode_ids), not per block
        elif column == "customer_id":
            out[column], check.ids = _id_codes(df[column])
        elif column in _TEXT:
            out[column] = _each_distinct(raw, _ids_text if column in _IDS else _as_str)
        if column in _REQUIRED_VALUES:
            check.flag(out[column].isna(), column, "are empty", raw)
    if priced:
        out["amount"] = _priced_amount(out, check)
    check.df = out


def _checked_dates(check: _Checker, raw: pd.Series, column: str, date_format: str | None, given: bool = False
                   ) -> pd.Series:
    """A date column parsed (:func:`_parsed`), its dates out of range, unparseable or after today flagged; of a
    column in ``check.dates``, its censuses are kept there (:class:`DateCensus`: in ISO 8601 and in the style
    ``date_format`` it is read in). ``given``: ``date_format`` is the config's ``data.date_format``, which the
    reason of a date that does not parse then names (a file in another style fails whole)."""
    if column in check.dates and date_format is not None and not pd.api.types.is_datetime64_any_dtype(raw):
        text = text_cells(raw)
        parsed = _to_datetime(text, date_format)
        iso = _census_of(text, parsed, None) if date_format == "ISO8601" else DateCensus()
        # In another style: how many values that fail are dates in another way, parsed one by one (slow), so
        # not while most values fail ISO 8601 (the column may be in another style: it is read again then).
        check.dates[column] = (iso, _census_of(text, parsed, date_format)
                               if not check.spare_census or iso.present - iso.parsed <= iso.parsed else None)
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    else:
        parsed = _parsed(raw, column, check.source, date_format)
    far = dates_out_of_range(parsed)
    check.flag(far, column, "are dates outside the years 1678-2261", raw)
    parsed = (parsed.mask(far) if far.any() else parsed).astype("datetime64[ns]")
    if not pd.api.types.is_datetime64_any_dtype(raw):  # dates read as dates: a missing one was missing, one out of
        # range is flagged as such above (4.9M events' timestamps: 8.6 ms spared)
        check.flag(raw.notna() & parsed.isna(), column,  # the style the config gives is the first thing to check
                   f"are not dates in data.date_format {date_format!r}" if given else "have an unparseable date", raw)
    latest = latest_plausible_day()
    check.flag(parsed >= latest, column, f"are dated after today ({(latest - _DAY).date()})", raw)
    return parsed


def _concat_columns(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The rows of ``frames`` (the same columns) one after another, joined a column at a time and each block's
    column let go once joined, so that only one column is held twice."""
    columns = {name: pd.concat([f.pop(name) for f in frames], ignore_index=True) for name in list(frames[0].columns)}
    return pd.DataFrame(columns, copy=False)


def _priced_amount(out: pd.DataFrame, check: _Checker) -> pd.Series:
    """Each line's amount as quantity x unit price (negative quantities: returns); lines without either are
    flagged, as is a product beyond :data:`MAX_MAGNITUDE`."""
    for column in ("quantity", "unit_price"):
        check.flag(out[column].isna(), column, "are empty (amount = quantity x unit_price)")
    amount = out["quantity"] * out["unit_price"]
    check.flag(amount.abs() > MAX_MAGNITUDE, "unit_price", f"give an amount beyond {_number(MAX_MAGNITUDE)}")
    return amount


def exclude_rows(df: pd.DataFrame, rules: dict[str, tuple[str, ...]], first_row: int = 1
                 ) -> tuple[pd.DataFrame, dict[str, int]]:
    """``df`` without the rows whose cell (:func:`text_cells`; ``""`` matches an empty cell) is one of a rule's
    values, and how many rows each rule left out (as ``column = value``, first matching rule counts; only rules
    that left out rows). Rows keep their number in the file (:data:`ROW_COLUMN`; ``df``'s first row is number
    ``first_row``) for later messages."""
    if not rules or df.empty:
        return df, {}
    if ROW_COLUMN not in df:
        df = df.assign(**{ROW_COLUMN: np.arange(first_row, first_row + len(df))})
    out = np.zeros(len(df), dtype=bool)
    counts: dict[str, int] = {}
    for column, values in rules.items():
        raw = df[column]
        text = id_text(raw).mask(raw.isna()) if pd.api.types.is_float_dtype(raw) else text_cells(raw)
        for value in values:
            hit = (text.isna() if value.strip() == "" else text.eq(value.strip()).fillna(False)).to_numpy(bool)
            new = hit & ~out
            if new.any():
                counts[_rule_name(column, value)] = int(new.sum())
                out |= new
    return df[~out].reset_index(drop=True), counts


def _rule_name(column: str, value: str) -> str:
    return f"{column} = {value!r}" if value.strip() else f"{column} empty"


def _joint_counts(parts: list[dict[str, int]], rules: dict[str, tuple[str, ...]]) -> dict[str, int]:
    """The rows each rule left out of a table, from the counts of its blocks (:func:`exclude_rows`), in the
    order of the rules."""
    if len(parts) == 1:
        return parts[0]
    total = {name: sum(p.get(name, 0) for p in parts) for name in
             (_rule_name(column, value) for column, values in rules.items() for value in values)}
    return {name: n for name, n in total.items() if n}


def exclusion_note(source: str, table: str, n_rows: int, counts: dict[str, int]) -> str:
    """The sentence for rows left out by ``data.exclude``: how many of ``n_rows``, per rule."""
    rules = ", ".join(f"{rule}: {n:,}" for rule, n in counts.items())
    return (f"{source}: left out {sum(counts.values()):,} of {plural(n_rows, f'{table} row')} by data.exclude "
            f"({rules})")


def validate_tables(
    transactions: pd.DataFrame,
    tickets: pd.DataFrame | None = None,
    customers: pd.DataFrame | None = None,
    *,
    config: DataConfig,
    sources: dict[str, str] | None = None,
    allow_empty: bool = False,
    date_styles: dict[str, dict[str, str]] | None = None,
    events: pd.DataFrame | None = None,
    coded_ids: bool = False,
) -> Tables:
    """Validate in-memory tables against the contract and return them typed, with contract column names.

    Args:
        transactions, tickets, customers, events: raw frames in the user's column names.
        config: column mapping, date format and the bad-row policy.
        sources: names used in messages (file paths), per table; defaults to the table name.
        allow_empty: the tables are a part of the input (a customer partition): accept tables without rows or
            without usable rows, which only the whole input can judge.
        date_styles: per table, the style of date columns (by contract name) decided over the whole input;
            columns not named are read as without it.
        coded_ids: hold the customer ids as categoricals of the tables' one array of distinct ids (see
            :class:`IdCodes`), as the feature build and scoring read them, instead of as text.

    Raises:
        DataError: a whole table is unusable, or rows are bad and ``config.on_bad_rows`` is ``raise``.
    """
    raw = {name: RawTable.whole(df) for name, df in (("transactions", transactions), ("tickets", tickets),
                                                      ("customers", customers), ("events", events)) if df is not None}
    return _validate(raw, config, sources or {}, allow_empty, date_styles or {}, coded_ids=coded_ids)


def _validate(raw: dict[str, RawTable], config: DataConfig, sources: dict[str, str], allow_empty: bool,
              styles: dict[str, dict[str, str]], coded_ids: bool = False) -> Tables:
    """:func:`validate_tables` of raw tables whole or in blocks."""
    excluded, checks = {}, {}
    for name in filter(raw.__contains__, ("transactions", "customers", "tickets", "events")):
        checks[name], excluded[name] = _prepare(raw[name], name, sources, config, allow_empty, styles)
    if "customers" in checks:
        checks["customers"].flag(checks["customers"].repeated_ids(), "customer_id", "are duplicate customer ids")
    if "tickets" in checks:
        t = checks["tickets"]
        for col, reason in (("first_response_at", "are earlier than opened_at"), ("resolved_at", "are earlier than opened_at")):
            if col in t.df:
                t.flag(t.df[col] < t.df["opened_at"], col, reason)
    frames, ids, all_rejects = _finish_all(checks, config.on_bad_rows, allow_empty, coded_ids)
    non_empty = [r for r in all_rejects if not r.empty]
    rejects = pd.concat(non_empty, ignore_index=True) if non_empty else pd.DataFrame(columns=REJECT_COLUMNS)
    excluded = {t: counts for t, counts in excluded.items() if counts}
    tables = Tables(frames["transactions"], frames.get("tickets"), frames.get("customers"), rejects,
                    excluded=excluded, events=frames.get("events"),
                    ids={t: codes for t, codes in ids.items() if codes is not None})
    if not allow_empty:  # a part's ids and rows are judged with the whole input's
        check_id_overlap(id_overlap(tables), {t: sources.get(t, t) for t in ("transactions", "customers")})
        note = repeated_rows_note(repeated_rows(tables), sources.get("transactions", "transactions"))
        if note is not None:
            logger.warning("%s", note)
    return tables


def _finish_all(checks: dict[str, _Checker], mode: str, part: bool, coded: bool = False
                ) -> tuple[dict[str, pd.DataFrame], dict[str, IdCodes | None], list[pd.DataFrame]]:
    """Finish the checked tables (transactions and customers first: the others' rows must belong to their
    customers): the usable rows of each, their customer id codes (on one shared array of distinct ids when
    every table has codes, see :class:`IdCodes`), and the rejects. ``coded``: the customer ids of the tables on
    the shared array become categoricals of it (:func:`_coded_ids`)."""
    frames, ids, rejects = {}, {}, []
    for name in ("transactions", "customers"):
        if name in checks:
            frames[name], rej = checks[name].finish(mode, part)
            ids[name] = checks[name].id_codes(frames[name])
            rejects.append(rej)
    ids |= _shared(ids)
    known = [(frames[name]["customer_id"], ids[name]) for name in ("transactions", "customers") if name in frames]
    for name in ("tickets", "events"):
        if name in checks:
            frames[name], rej, ids[name] = _finish_owned(checks[name], known, mode, part)
            rejects.append(rej)
    return frames, _coded_ids(frames, ids) if coded else ids, rejects


def _shared(ids: dict[str, IdCodes | None]) -> dict[str, IdCodes]:
    """The transactions' and customers' :class:`IdCodes` on one array of their distinct ids (one dictionary
    encoding of the two tables' distinct ids), sorted, so that the order of the codes is the order of the ids;
    none when a table has no codes."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not ids or any(codes is None for codes in ids.values()):
        return {}
    values, codes = joint_codes([(c.distinct, c.codes) for c in ids.values()])
    order = pc.sort_indices(values).to_numpy()
    rank = np.empty(len(values) + 1, dtype=np.int32)
    rank[order], rank[-1] = np.arange(len(values), dtype=np.int32), -1  # -1: a missing id stays -1
    values, codes = values.take(pa.array(order)), take_codes(rank, codes)
    bounds = np.cumsum([0] + [len(c.codes) for c in ids.values()])
    return {name: IdCodes(values, codes[a:b], c.column)
            for (name, c), a, b in zip(ids.items(), bounds[:-1], bounds[1:], strict=True)}


def _coded_ids(frames: dict[str, pd.DataFrame], ids: dict[str, IdCodes | None]) -> dict[str, IdCodes | None]:
    """Replace the customer id column of each table on the shared array of distinct ids (:func:`_shared`) by a
    categorical of its codes (one type for every table, its categories that array, in text order): the ids are
    held as integers, each distinct id's text once. The tables' :class:`IdCodes` then describe those columns."""
    shared = [c for c in ids.values() if c is not None]
    if not shared or any(c.distinct is not shared[0].distinct for c in shared):
        return ids
    from churnguard._io.codes import distinct_categories

    text = frames["transactions"]["customer_id"].dtype
    text = text.categories.dtype if isinstance(text, pd.CategoricalDtype) else text
    dtype = distinct_categories(pd.Index(pd.array(shared[0].distinct, dtype=text)))
    out = {}
    for name, codes in ids.items():
        if codes is None:
            out[name] = None
            continue
        column = pd.Categorical.from_codes(codes.codes, dtype=dtype, validate=False)
        frames[name]["customer_id"] = pd.Series(column, index=frames[name].index, copy=False)
        out[name] = replace(codes, column=frames[name]["customer_id"].array)
    return out


def _finish_owned(check: _Checker, known: list[tuple[pd.Series, IdCodes | None]], mode: str, part: bool
                  ) -> tuple[pd.DataFrame, pd.DataFrame, IdCodes | None]:
    """Finish a table whose rows belong to customers of the transactions or customers table (tickets, events;
    ``known``: their validated ids, with their codes when they have them): rows of other customers are bad rows;
    event types are read in lower case. Also the table's :class:`IdCodes`: on the known tables' distinct ids
    when they share one array (each of this table's distinct ids looked up there once)."""
    ids = check.df["customer_id"]
    shared = None
    if check.ids is not None and all(codes is not None for _, codes in known):
        distinct = [codes.distinct for _, codes in known]
        if all(d is distinct[0] for d in distinct):
            import pyarrow.compute as pc

            shared = distinct[0]
            at = pc.index_in(check.ids[0], value_set=shared).to_numpy(zero_copy_only=False)  # float, NaN: absent
            at = np.append(np.where(np.isnan(at), -1, at), -1).astype(np.int32)  # the last for a missing id
            shared_codes = take_codes(at, check.ids[1])  # each row's position among the shared ids, -1: none
            found = shared_codes >= 0
        else:
            found = _codes_found(check.ids, distinct)
    else:
        found = _isin(ids, [values for values, _ in known])
    check.flag(ids.notna().to_numpy() & ~found, "customer_id",
               "belong to customers found in neither transactions nor customers")
    frame, rejects = check.finish(mode, part)
    if "event_type" in frame:
        frame["event_type"] = _each_distinct(frame["event_type"], _lower)
    if shared is None:
        return frame, rejects, check.id_codes(frame)
    codes = shared_codes if len(frame) == len(shared_codes) else shared_codes[~check._flagged]
    return frame, rejects, IdCodes(shared, codes, frame["customer_id"].array)
