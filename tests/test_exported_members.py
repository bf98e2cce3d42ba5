"""``muxs.__all__`` is exactly the public surface."""

import inspect

import muxs


def test_all_matches_the_public_names() -> None:
    public = {
        name
        for name, value in vars(muxs).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert set(muxs.__all__) == public
    assert sorted(muxs.__all__) == muxs.__all__
