"""Hypothesis strategies shared by the property tests."""

from hypothesis import strategies as st

from concert_domain.wallet import CHARGE_MAX

EMAILS = (
    "mina@example.com",
    "joon@example.com",
    "seo@example.com",
    "ha@example.com",
    "yun@example.com",
    "MINA@example.com",
)

emails = st.sampled_from(EMAILS)

# mostly valid charges around a seat's price, sometimes out of range
charge_amounts = st.one_of(
    st.sampled_from([20_000, 25_000, 40_000]),
    st.integers(min_value=1, max_value=40_000),
    st.sampled_from([0, -5, CHARGE_MAX + 1]),
)

# None: no key; a small pool so that retries and reuse happen often
idempotency_keys = st.one_of(st.none(), st.sampled_from(["k1", "k2", "k3"]))

# steps that land just before, on and after a hold's and a token's lifetime; short ones more
# often, so that flows get to finish before everything lapses
time_steps = st.sampled_from([1, 1, 5, 30, 30, 119, 120, 121, 300, 601])

# a seat of any date, taken modulo the seats there are: the first date's four most often
seat_indexes = st.one_of(
    st.integers(min_value=0, max_value=3), st.integers(min_value=0, max_value=63)
)
