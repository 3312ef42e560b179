"""The paths of the service that are not its API: the docs here, and each feature's.

Features add theirs (probes, scrapes) as ``Feature.infrastructure_paths``; the service
gathers them in ``Service.infrastructure_paths``, the one list that the access log,
the metrics, the rate limiter and the traces all leave out of the API.
"""

from starlette.types import Scope

DOCS_URL = "/docs"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
REDOC_URL = "/redoc"
OPENAPI_URL = "/openapi.json"
# The HTML pages of the docs: their scripts and styles come from CDNs.
DOCS_PAGES = frozenset({DOCS_URL, OAUTH2_REDIRECT_URL, REDOC_URL})
DOCS_PATHS = DOCS_PAGES | {OPENAPI_URL}


def route_path(scope: Scope) -> str:
    """The request's path below the root path the app is served at.

    Routes match this path: behind a proxy that serves the app under ``/orders``,
    ``/orders/api/v1/items`` is ``/api/v1/items``.
    """
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path + "/"):
        return path[len(root_path) :]
    return path
