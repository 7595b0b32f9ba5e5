"""Port contract suites: written once, run against the in-memory adapters (tests/unit) and the
real stores (tests/integration), so that the fakes cannot drift from the real thing."""
