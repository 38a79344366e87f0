"""How the ``statestore`` command prints.

* What comes from data or the file system (values, keys, streams, paths,
  messages) is printed verbatim: plain text through click, or rich ``Text``
  objects on a console with markup, emoji and highlighting off. Nothing is
  ever parsed as rich markup.
* When stdout is not a terminal (a pipe, a file), a table is its column
  names on one line, then one record a line, columns separated by tabs,
  every cell whole: ``statestore log … | grep created`` finds every entry.
  A text cell holding a tab, a newline or another control character is
  written as a JSON string, so a record never spans two lines; so is a text
  that would read as JSON in a column that also holds other values.
* In a terminal, a table is drawn by rich (imported only then); long cells
  are cut with ``…``, never wrapped, and a footer says how to see them whole.
* Writing to stdout that fails (a full disk, a closed descriptor) raises
  :class:`OutputError`: one line on stderr and the command's error status.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
from collections.abc import Sequence
from typing import Any, TextIO, cast

import click

__all__ = [
    "CELL_WIDTH",
    "OutputError",
    "Table",
    "echo",
    "flush_stdout",
    "plain_cell",
    "quiet_stdout",
    "stdout",
    "stdout_is_terminal",
]

CELL_WIDTH = 48
_KEEP_WHOLE = 32  # columns at most this wide are never cut


class OutputError(click.ClickException):
    """Standard output cannot be written (closed, full disk, I/O error)."""


def stdout_is_terminal() -> bool:
    """True when stdout is a terminal (tables are drawn); False for a pipe, a file or a closed stdout."""
    stream = sys.stdout
    try:
        return stream is not None and stream.isatty()
    except (ValueError, AttributeError):  # closed, or a test runner's buffer without isatty
        return False


def _real_stdout() -> Any:
    stream = sys.stdout
    if stream is None:
        raise OutputError("standard output is closed: redirect it to a file or /dev/null instead")
    return stream


def _output_failed(exc: OSError) -> OutputError:
    quiet_stdout()  # exiting must not fail again flushing what is still buffered
    return OutputError(f"cannot write to standard output: {exc.strerror or exc}")


class _Stdout(io.TextIOBase):
    """sys.stdout (looked up at each write), turning a failed write into OutputError; BrokenPipe passes."""

    def write(self, text: str) -> int:
        stream = _real_stdout()
        try:
            return int(stream.write(text))
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise _output_failed(exc) from None

    def flush(self) -> None:
        flush_stdout()

    def close(self) -> None:
        """Nothing: this stands for sys.stdout, which is not ours to close (nor to flush at shutdown,
        when the interpreter finalises this object after clearing the modules it would need)."""

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return stdout_is_terminal()


stdout = cast(TextIO, _Stdout())


def echo(text: str = "", *, err: bool = False) -> None:
    """Print one line verbatim (to stderr if ``err``)."""
    if err:
        click.echo(text, err=True)
    else:
        click.echo(text, file=stdout)


def flush_stdout() -> None:
    """Flush stdout now, so a full disk is reported by the command, not ignored at exit."""
    stream = sys.stdout
    if stream is None:
        return
    try:
        stream.flush()
    except BrokenPipeError:
        raise
    except (OSError, ValueError) as exc:
        if isinstance(exc, OSError):
            raise _output_failed(exc) from None


def quiet_stdout() -> None:
    """Point stdout at /dev/null, so exiting does not fail again flushing into a closed pipe or a full disk."""
    stream = sys.stdout
    if stream is None:
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):  # no real descriptor (a test buffer)
        pass


def plain_cell(value: Any, *, mixed: bool = False) -> str:
    """A cell on one line: text as it is (as a JSON string if it holds a control character), the rest as JSON.

    In a ``mixed`` column (one that may hold text and other values: a
    ``str | None`` or ``Any`` field), a text that would read as JSON (``null``,
    ``42``, ``true``, ``"x"``, ``[1]``) is written as a JSON string too, so the
    text ``null`` and a missing value, or the text ``42`` and the number,
    print differently.
    """
    if isinstance(value, str):
        if any(c < " " or "\x7f" <= c <= "\x9f" or c in "\u2028\u2029" for c in value):
            return json.dumps(value)  # escapes every control and line-separator character
        if mixed and value:
            try:
                json.loads(value)
            except (ValueError, RecursionError):
                return value
            return json.dumps(value, ensure_ascii=False)
        return value
    from statestore.codec import dumps

    return dumps(value)


def _cut(text: str, width: int) -> tuple[str, bool]:
    return (text, False) if len(text) <= width else (text[: width - 1] + "…", True)


class Table:
    """Rows to print as plain tab-separated lines (piped) or a rich table (terminal)."""

    def __init__(
        self, columns: Sequence[str], *, right: Sequence[str] = (), mixed: Sequence[str] = (), title: str = ""
    ) -> None:
        """``right``: columns aligned right in a terminal; ``mixed``: columns whose texts are
        written as JSON strings when they would read as JSON (see ``plain_cell``)."""
        self.columns = list(columns)
        self.right = set(right)
        self._mixed = [c in set(mixed) for c in self.columns]
        self.title = title
        self.rows: list[list[Any]] = []

    def add_row(self, *cells: Any) -> None:
        """Add a row; cells are values (text shown as is, others as compact JSON)."""
        self.rows.append(list(cells))

    def print(self, *, err: bool = False, footer: str = "", cell_width: int = CELL_WIDTH) -> None:
        """Print the table (to stderr if ``err``); ``footer`` follows it only in a terminal."""
        terminal = _stderr_is_terminal() if err else stdout_is_terminal()
        if not terminal:
            if self.title:
                echo(self.title, err=err)
            echo("\t".join(self.columns), err=err)
            for row in self.rows:
                echo("\t".join(plain_cell(c, mixed=m) for c, m in zip(row, self._mixed)), err=err)
            return
        self._draw(err=err, footer=footer, cell_width=cell_width)

    def _draw(self, *, err: bool, footer: str, cell_width: int) -> None:
        from rich import box
        from rich.table import Table as RichTable
        from rich.text import Text

        console = console_for(err=err)
        texts = []
        cut_any = False
        for row in self.rows:
            cells = []
            for value, mixed in zip(row, self._mixed):
                text, cut = _cut(plain_cell(value, mixed=mixed), cell_width)
                cut_any = cut_any or cut
                cells.append(text)
            texts.append(cells)
        natural = [max([len(c), *(len(r[i]) for r in texts)]) for i, c in enumerate(self.columns)]
        # Short columns (keys, numbers, times) keep their width; the long ones share the rest, cut with "…".
        long = [i for i, w in enumerate(natural) if w > _KEEP_WHOLE]
        room = console.width - 3 * len(self.columns) - 1 - sum(w for i, w in enumerate(natural) if i not in long)
        widths = list(natural)
        for n, i in enumerate(long):
            share = max(room // (len(long) - n), 8)
            widths[i] = min(natural[i], share)
            room -= widths[i]
        table = RichTable(box=box.SIMPLE, title=Text(self.title) if self.title else None)
        for column, width in zip(self.columns, widths):
            table.add_column(
                Text(column),
                justify="right" if column in self.right else "left",
                no_wrap=True,
                overflow="ellipsis",
                width=width,
            )
        for cells in texts:
            table.add_row(*(Text(c, no_wrap=True, overflow="ellipsis") for c in cells))
        console.print(table)
        if cut_any or sum(w + 3 for w in natural) > console.width:
            footer = (footer + "; " if footer else "") + "long cells cut with …: --json or a pipe shows them whole"
        if footer:
            console.print(Text(footer, style="dim"))


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (ValueError, AttributeError):
        return False


def console_for(*, err: bool = False) -> Any:
    """A rich Console that never reads markup, emoji or highlights from what it prints."""
    from rich.console import Console

    width = shutil.get_terminal_size((80, 24)).columns
    return Console(
        file=sys.stderr if err else stdout,
        markup=False,
        emoji=False,
        highlight=False,
        width=width,
    )
