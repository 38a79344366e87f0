"""Example applications built on statestore, used by the demo and the tests."""
