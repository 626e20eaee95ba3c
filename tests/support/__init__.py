"""What test modules share, as plain modules: test modules never import each other (a unit test
of the test layout checks it), so a helper two of them need lives here, a fixture two of them
need in a conftest.py, and what the benchmarks use too in :mod:`testkit`."""
