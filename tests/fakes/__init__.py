"""Hand-written fakes of core's ports, one module per feature, for unit tests of use cases (and the fake
side of contract suites)."""
