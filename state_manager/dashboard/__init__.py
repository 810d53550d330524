"""The web dashboard at `/ui`: server-rendered pages over the service layer (never the HTTP
API), behind a login with an API key (the server's, or a scoped key: each page checks its role
and namespaces, access.py). See docs/dashboard.md."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from state_manager.dashboard import access, admin, auth, catalog, compare, forks, runs, states
from state_manager.dashboard.common import refused_page
from state_manager.dashboard.guard import DashboardGuard
from state_manager.dashboard.login_limit import LoginLimiter
from state_manager.dashboard.render import HERE

# The modules whose routers make the pages; forks before runs: its GET .../runs/{id}/fork is more
# specific than the confirmation pages' .../runs/{id}/{action}.
PAGES = (auth, forks, compare, runs, states, catalog, admin)


def install(app: FastAPI) -> None:
    """Mount the pages (each behind the access check), their static assets and the guard
    (session, origin, headers) on `app`, and keep the app's login limiter (one per app, so one per
    process) in `app.state`."""
    router = APIRouter(prefix="/ui", include_in_schema=False, dependencies=[Depends(access.check)])
    router.add_api_route("", auth.home, methods=["GET"])
    router.add_api_route("/", auth.home, methods=["GET"])
    for module in PAGES:
        router.include_router(module.router)
    app.include_router(router)
    app.add_exception_handler(access.Refused, refused_page)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="dashboard-static")
    settings = app.state.context.settings
    app.state.login_limiter = LoginLimiter(
        settings.dashboard_login_max_failures, settings.dashboard_login_window_seconds
    )
    app.add_middleware(DashboardGuard, api_key=settings.state_manager_secret.get_secret_value())
