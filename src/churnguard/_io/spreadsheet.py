"""CSV cells a spreadsheet would run as formulas, quoted on the way out and unquoted on the way in."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


_FORMULA = r"'*[=+\-@\t\r]"  # what a spreadsheet runs as a formula, after any apostrophes already added


_FORMULA_STARTS = ("'", "=", "+", "-", "@", "\t", "\r")  # the first characters it can match


def _text_cells(values: pd.Series, pattern: str, starts: tuple[str, ...]) -> np.ndarray | None:
    """Which cells of a text column match ``pattern`` at their start (None for a column of no text). The cells
    are first sifted, as Arrow text (a categorical column: its categories), by ``starts``, the first characters
    ``pattern`` can match; only those that pass are matched one Python object at a time (1M scores rows' text
    columns took 3.4-3.9 s matched whole so, 0.4-0.7 s sifted first)."""
    import numpy as np
    import pandas as pd

    if values.dtype != object and values.dtype.kind in "biufcmM":
        return None
    if isinstance(values.dtype, pd.CategoricalDtype):
        found = _text_cells(pd.Series(values.cat.categories), pattern, starts)
        codes = values.cat.codes.to_numpy()
        return None if found is None else np.where(codes >= 0, found[codes], False)
    maybe = values.astype("str").str.startswith(starts, na=False).to_numpy(dtype=bool)
    out = np.zeros(len(values), dtype=bool)
    if maybe.any():
        try:  # a number in an object column passed as its text: only text cells match
            out[maybe] = values[maybe].astype(object).str.match(pattern, na=False).to_numpy(dtype=bool)
        except AttributeError:  # no text among them
            return None
    return out


def spreadsheet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with a leading apostrophe on every text cell a spreadsheet would run as a formula (starting with
    ``= + - @``, a tab or a carriage return, after any apostrophes), so opening a CSV never runs one; numbers
    are left alone. :func:`spreadsheet_restored` undoes it."""
    out = df.copy(deep=False)
    for name in out.columns:
        risky = _text_cells(out[name], _FORMULA, _FORMULA_STARTS)
        if risky is not None and risky.any():
            cells = out[name].to_numpy(dtype=object, copy=True)
            cells[risky] = [f"'{v}" for v in cells[risky]]
            out[name] = cells
    return out


def spreadsheet_restored(df: pd.DataFrame) -> pd.DataFrame:
    """:func:`spreadsheet_safe` undone: one leading apostrophe taken off the text cells it was put on."""
    out = df.copy(deep=False)
    for name in out.columns:
        marked = _text_cells(out[name], "'" + _FORMULA, ("'",))
        if marked is not None and marked.any():
            cells = out[name].to_numpy(dtype=object, copy=True)
            cells[marked] = [v[1:] for v in cells[marked]]
            out[name] = cells
    return out
