"""The client matrix: ``suite/`` is the inner test suite the matrix runs, not tests of this run."""

collect_ignore = ["suite"]
