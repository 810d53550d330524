"""The API reference pages, served from assets shipped in the package (no CDN), so they work
on a host without internet access:

- `GET /docs`: Swagger UI; `GET /docs/oauth2-redirect`: its OAuth2 redirect page;
- `GET /redoc`: ReDoc;
- `/docs/assets/...`: the vendored scripts and styles (see `static/README.md`) and our
  `swagger-init.js`, which starts Swagger UI from the page's `data-` attributes.

The pages carry no inline script, and a Content-Security-Policy that lets them load nothing
from another host: ReDoc's attribution logo, which it fetches from its CDN, is not requested.
`install_api_docs(app)` mounts all this and finishes the OpenAPI document (`openapi_docs.py`);
the app must be created with `docs_url=None, redoc_url=None` so FastAPI's CDN pages are off.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from state_manager.api.openapi_docs import complete_reference

STATIC_DIR = Path(__file__).parent / "static"
ASSETS_PATH = "/docs/assets"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"
FAVICON = "swagger-ui/favicon-32x32.png"

# Styles may be inline (both UIs set style attributes), ReDoc builds its search worker from a
# blob; everything else comes from this origin only.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
)

router = APIRouter(include_in_schema=False)


def _root(request: Request) -> str:
    """The prefix the app is served under (behind a proxy that strips it), or ""."""
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


def _asset(request: Request, name: str) -> str:
    return escape(f"{_root(request)}{ASSETS_PATH}/{name}")


def _page(request: Request, head: str, body: str) -> HTMLResponse:
    title = escape(f"{request.app.title} - API reference")
    html = (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n"
        f'<link rel="icon" type="image/png" href="{_asset(request, FAVICON)}">\n'
        f"{head}</head>\n<body>\n{body}</body>\n</html>\n"
    )
    return HTMLResponse(html, headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    openapi_url = escape(f"{_root(request)}{request.app.openapi_url}")
    redirect_url = escape(f"{_root(request)}{OAUTH2_REDIRECT_PATH}")
    return _page(
        request,
        f'<link rel="stylesheet" href="{_asset(request, "swagger-ui/swagger-ui.css")}">\n',
        '<div id="swagger-ui"></div>\n'
        f'<script src="{_asset(request, "swagger-ui/swagger-ui-bundle.js")}"></script>\n'
        f'<script src="{_asset(request, "swagger-init.js")}" data-openapi-url="{openapi_url}" '
        f'data-oauth2-redirect-url="{redirect_url}"></script>\n',
    )


@router.get(OAUTH2_REDIRECT_PATH)
async def swagger_ui_redirect(request: Request) -> HTMLResponse:
    return _page(request, "", f'<script src="{_asset(request, "swagger-ui/oauth2-redirect.js")}"></script>\n')


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    openapi_url = escape(f"{_root(request)}{request.app.openapi_url}")
    return _page(
        request,
        "",
        f'<redoc spec-url="{openapi_url}"></redoc>\n'
        f'<script src="{_asset(request, "redoc/redoc.standalone.js")}"></script>\n',
    )


def install_api_docs(app: FastAPI) -> None:
    """Serve the reference pages and their assets, and finish the OpenAPI document once, when
    it is first asked for (by then every router is included)."""
    app.include_router(router)
    app.mount(ASSETS_PATH, StaticFiles(directory=STATIC_DIR), name="api-docs-assets")
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete_reference(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
