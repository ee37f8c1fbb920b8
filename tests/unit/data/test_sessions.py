"""Eq. 4 and sessionization: every branch, scalar and vectorised forms agree."""

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jump_core.sessions import (
    C1_DEFAULT,
    C2_DEFAULT,
    censor,
    censor_gap,
    is_new_session,
    session_starts,
    split_sessions,
)


def test_defaults_are_the_papers():
    assert (C1_DEFAULT, C2_DEFAULT) == (2000.0, 30.0)


def test_eq4_branch_observed():
    assert censor_gap(120.5) == (120.5, 0)
    assert censor_gap(0.0) == (0.0, 0)
    assert censor_gap(1999.999) == (1999.999, 0)


def test_eq4_branch_distracted_is_censored_at_c1():
    assert censor_gap(2000.0) == (2000.0, 1)  # Delta >= c1, boundary included
    assert censor_gap(10_800.0) == (2000.0, 1)
    assert censor_gap(500.0, c1=200.0) == (200.0, 1)


def test_eq4_branch_last_click_is_c2_censored():
    tau, delta = censor([100.0, 160.0, 5000.0], c1=2000, c2=30)
    assert tau.tolist() == [60.0, 2000.0, 30.0]
    assert delta.tolist() == [0, 1, 1]
    tau, delta = censor([42.0])  # single click: only the last-click branch
    assert tau.tolist() == [30.0] and delta.tolist() == [1]


def test_censor_many_sessions_matches_one_by_one():
    ts = [0.0, 10.0, 3000.0, 5.0, 6.0, 100.0]
    offsets = [0, 3, 4, 6]
    tau, delta = censor(ts, offsets)
    parts = [censor(ts[a:b]) for a, b in itertools.pairwise(offsets)]
    assert tau.tolist() == [x for p in parts for x in p[0].tolist()]
    assert delta.tolist() == [x for p in parts for x in p[1].tolist()]


def test_out_of_order_clicks_are_an_error():
    with pytest.raises(ValueError, match="time order"):
        censor([10.0, 5.0])
    with pytest.raises(ValueError):
        censor_gap(float("nan"))


def test_gap_rule_is_strict():
    assert not is_new_session(0.0, 3600.0, 3600.0)
    assert is_new_session(0.0, 3600.001, 3600.0)
    assert not is_new_session(0.0, 1e9, None)  # given session ids: time never splits


def test_split_sessions_and_vectorised_starts_agree():
    ts = [0, 100, 4000, 4100, 9000]
    assert split_sessions(ts, 3600) == [(0, 2), (2, 4), (4, 5)]
    assert split_sessions(ts, None) == [(0, 5)]
    keys = np.array([1, 1, 1, 2, 2])
    starts = session_starts(keys, np.array([0, 100, 4000, 4001, 4002.0]), 3600)
    assert starts.tolist() == [True, False, True, True, False]


@given(st.lists(st.floats(0, 1e5, allow_nan=False), min_size=1, max_size=30), st.floats(1, 5000), st.floats(1, 100))
def test_censor_properties(raw, c1, c2):
    ts = np.sort(np.asarray(raw))
    tau, delta = censor(ts, c1=c1, c2=c2)
    assert tau[-1] == c2 and delta[-1] == 1
    assert np.all(tau[:-1] <= c1)
    gaps = np.diff(ts)
    np.testing.assert_array_equal(delta[:-1] == 1, gaps >= c1)
    np.testing.assert_allclose(tau[:-1][delta[:-1] == 0], gaps[gaps < c1])


def test_session_id_is_key_and_first_click_ms():
    from jump_core.sessions import session_id

    assert session_id("user7", 1396310400.1234) == "user7@1396310400123"
    assert session_id("user7", 1396310400.1234) != session_id("user7", 1396310401.0)
