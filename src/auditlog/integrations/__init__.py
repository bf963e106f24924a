"""Serving the log over HTTP, and opening a request's audit context in web apps.

- :mod:`.http`: ``GET /history/`` without a framework (authentication, parameters, scoping,
  errors), which every mount below shares;
- :mod:`.fastapi` (FastAPI and Starlette), :mod:`.flask`, :mod:`.server` (a WSGI app on the
  standard library): the endpoint, mounted;
- :mod:`.asgi`, :mod:`.wsgi`: middlewares that open an audit context per request, with
  :mod:`.proxies` deciding which client address to believe.

Each framework module imports its framework, installed with the matching extra.
"""
