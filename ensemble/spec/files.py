"""What the command line reads: run id lists (``1 2 5-9``) and CSV files of samples."""
from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from typing import Any

from ensemble.errors import EnsembleError
from ensemble.spec import check_text

#: Run ids are SQLite integers; no run has a larger id.
MAX_RUN_ID = 2**63 - 1
#: Ids one command line may name (a range of more would only exhaust memory).
MAX_IDS = 2_000_000


def parse_ids(tokens: Sequence[str]) -> list[int]:
    """Run ids from ``1 2 5-9`` or ``1,2,5-9``; EnsembleError for anything else, for an id past
    the largest possible and for more than :data:`MAX_IDS` ids."""
    ids: list[int] = []
    for token in ",".join(tokens).split(","):
        token = token.strip()
        if not token:
            continue
        try:
            low, _, high = token.partition("-") if "-" in token[1:] else (token, "", token)
            first, last = int(low), int(high)
        except ValueError:
            raise EnsembleError(f"run ids: {token!r} is not a run id or a range such as 3-7") from None
        if not (0 <= first <= MAX_RUN_ID and 0 <= last <= MAX_RUN_ID):
            raise EnsembleError(f"run ids: {token!r} is outside 0..{MAX_RUN_ID}")
        if len(ids) + max(0, last - first + 1) > MAX_IDS:
            raise EnsembleError(f"run ids: more than {MAX_IDS:,} ids given (at {token!r}); name fewer at a time")
        ids.extend(range(first, last + 1))
    return ids


def cell_value(text: str, where: str) -> Any:
    """``text`` as an int or float if it reads as a number, else the text; ``where`` names the cell in errors."""
    check_text(where, text)
    for kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise EnsembleError(f"{where}: {text!r} is not a finite number (NaN and infinity cannot be stored)")
        return value
    return text


#: Largest CSV field accepted (bytes); Python's default limit is 128 KiB.
MAX_FIELD_BYTES = 16 << 20


def read_samples(path: str) -> list[dict[str, Any]]:
    """Samples from a CSV file with a header row; numbers become int or float (NaN and infinity are refused).

    An empty file, a header without data rows, a repeated column name, an unclosed quote, an
    oversized field or a row with another number of fields is an EnsembleError naming the
    file and the line.
    """
    rows: list[tuple[int, dict[str, Any]]] = []
    header: list[str] = []
    csv.field_size_limit(MAX_FIELD_BYTES)
    try:
        with open(path, newline="", encoding="utf-8") as stream:
            reader = csv.DictReader(stream, strict=True)
            header = list(reader.fieldnames or [])
            rows.extend((reader.line_num, row) for row in reader)
    except OSError as exc:
        raise EnsembleError(f"samples: cannot read {path!r}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise EnsembleError(f"samples: {path!r} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        line = rows[-1][0] + 1 if rows else 2 if header else 1
        raise EnsembleError(f"samples: {path!r} line {line}: {exc} (an unclosed quote reads to the end of the file)"
                            if "end of data" in str(exc) else f"samples: {path!r} line {line}: {exc}") from None
    if not header:
        raise EnsembleError(f"samples: {path!r} is empty (expected a header row and one row per run)")
    for key in header:
        check_text(f"samples: {path!r} line 1, column", key)
    repeated = sorted({key for key in header if header.count(key) > 1})
    if repeated:
        raise EnsembleError(f"samples: {path!r} line 1 names column(s) {', '.join(map(repr, repeated))} more than once")
    if not rows:
        raise EnsembleError(f"samples: {path!r} has a header but no rows (one row per run)")
    for number, row in rows:
        if None in row or None in row.values():
            raise EnsembleError(f"samples: {path!r} line {number} has a different number of fields than the header")
    return [{key: cell_value(value, f"samples: {path!r} line {number}, column {key!r}") for key, value in row.items()}
            for number, row in rows]
