"""The muxs server: assembly and drain, the call pipeline, limits, services, settings.

The SDK never imports this package (tests/test_lazy_imports.py). Its public names are
``muxs.serve``, ``muxs.build_server``, ``muxs.RunningServer``, ``muxs.ServerSettings``,
``muxs.HostedService``, ``muxs.CallContext``, ``muxs.ServerInterceptor`` and ``muxs.ServerProceed``;
inside a call, ``muxs.server.context.current()`` is the call's ``CallContext``.
"""
