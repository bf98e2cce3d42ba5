"""``muxs.__all__`` is exactly the public surface, the server's lazily imported names included."""

import inspect

import muxs
import muxs.server.serving
import muxs.server.settings


def test_all_matches_the_public_names() -> None:
    public = {
        name
        for name in dir(muxs)
        if not name.startswith("_") and not inspect.ismodule(getattr(muxs, name))
    }
    assert set(muxs.__all__) == public
    assert sorted(muxs.__all__) == muxs.__all__


def test_the_server_names_are_the_server_modules_own() -> None:
    assert muxs.serve is muxs.server.serving.serve
    assert muxs.build_server is muxs.server.serving.build_server
    assert muxs.RunningServer is muxs.server.serving.RunningServer
    assert muxs.ServerSettings is muxs.server.settings.ServerSettings


def test_an_unknown_name_is_an_attribute_error() -> None:
    assert not hasattr(muxs, "no_such_name")


def test_the_embedding_names_are_the_server_modules_own() -> None:
    import muxs.server.context
    import muxs.server.hosting
    import muxs.server.interceptors

    assert muxs.CallContext is muxs.server.context.CallContext
    assert muxs.HostedService is muxs.server.hosting.HostedService
    assert muxs.ServerInterceptor is muxs.server.interceptors.ServerInterceptor
    assert muxs.ServerProceed is muxs.server.interceptors.ServerProceed
