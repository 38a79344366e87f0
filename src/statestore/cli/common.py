"""What the ``statestore`` commands share: errors as one line, the STORE argument and --json, opening to look."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from statestore.cli.output import echo
from statestore.errors import StateStoreError

if TYPE_CHECKING:
    from statestore.store import Store


F = TypeVar("F", bound=Callable[..., Any])


def friendly(fn: F) -> F:
    """Turn statestore errors into one line and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except StateStoreError as exc:
            raise click.ClickException(str(exc)) from None
        except BrokenPipeError:
            raise
        except OSError as exc:  # a path the user gave that the OS refuses
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{where}{exc.strerror or exc}") from None
        except (click.ClickException, click.Abort, click.exceptions.Exit):
            raise
        except Exception as exc:
            # A bug of ours: still one line for the user; STATESTORE_DEBUG=1 shows the traceback.
            if os.environ.get("STATESTORE_DEBUG"):
                raise
            raise click.ClickException(
                f"internal error: {type(exc).__name__}: {exc} (rerun with STATESTORE_DEBUG=1 and report it)"
            ) from None

    return wrapper  # type: ignore[return-value]


STORE = click.argument("store", metavar="STORE")


JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of a table.")


def open_read(location: str) -> Store:
    """Open ``location`` read-only, as the schemas stored in it describe it."""
    from statestore.open import open_store

    return open_store(location, mode="read")


def echo_json(data: Any) -> None:
    echo(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False))


def plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"
