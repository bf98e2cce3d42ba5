"""An access line's duration, written from its integer thousandths of a millisecond in a
batch, reads exactly as ``repr(round(ms, 3))``, the line's own text, writes it."""

from hypothesis import example, given
from hypothesis import strategies as st

from muxs.server.access_log import duration_columns

#: Up to 2.4 hours, where ``duration_columns`` writes a duration from its thousandths.
SECONDS = st.floats(min_value=0.0, max_value=8589.0, allow_nan=False)
#: Near a half of a thousandth of a millisecond (``x.yyy5`` ms), where rounding is closest.
NEAR_HALF = st.builds(
    lambda thousandths, nudge: (thousandths + 0.5) / 1e6 + nudge * 1e-14,
    st.integers(min_value=0, max_value=10**9),
    st.integers(min_value=-1000, max_value=1000),
)


def written(durations: list[float]) -> list[str] | None:
    columns = duration_columns(durations)
    if columns is None:
        return None
    whole, fractions = columns
    return [f"{q}.{f}" for q, f in zip(whole, fractions, strict=True)]


@given(st.lists(st.one_of(SECONDS, NEAR_HALF), min_size=1))
@example([0.0, 1e-7, 5e-7, 0.0000625, 0.0005, 0.001, 0.1, 1.0, 1.5, 0.0123456])
def test_a_duration_reads_as_repr_of_its_milliseconds_rounded(durations: list[float]) -> None:
    expected = [repr(round(seconds * 1000, 3)) for seconds in durations]
    for seconds, text in zip(durations, expected, strict=True):
        assert written([seconds]) in ([text], None)  # None: its line is written as it is
    assert written(durations) in (expected, None)


@given(st.lists(SECONDS, min_size=1, max_size=8))
def test_a_duration_is_written_from_its_thousandths_unless_too_near_a_half(
    durations: list[float],
) -> None:
    # Only a product within 2**-20 of a half of a thousandth is left to the line's own text.
    near = [
        abs(abs(s * 1000 * 1000.0 - round(s * 1000 * 1000.0)) - 0.5) <= 2**-20 for s in durations
    ]
    assert (written(durations) is None) is any(near)


def test_a_duration_out_of_range_is_left_to_the_lines_own_text() -> None:
    for durations in ([3 * 3600.0], [-1.0], [float("nan")], [float("inf")]):
        assert duration_columns(durations) is None
