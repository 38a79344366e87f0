"""``python -m statestore`` runs the ``statestore`` command."""

from statestore.cli import main

main(prog_name="statestore")
