"""The web dashboard at `/ui`: server-rendered pages over the service layer (never the HTTP
API), behind a login with the server's API key. See docs/dashboard.md."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

from state_manager.dashboard import auth, catalog, compare, forks, runs, states
from state_manager.dashboard.guard import DashboardGuard
from state_manager.dashboard.login_limit import LoginLimiter
from state_manager.dashboard.render import HERE


def install(app: FastAPI) -> None:
    """Mount the pages, their static assets and the guard (session, origin, headers) on `app`,
    and keep the app's login limiter (one per app, so one per process) in `app.state`."""
    router = APIRouter(prefix="/ui", include_in_schema=False)
    router.add_api_route("", auth.home, methods=["GET"])
    router.add_api_route("/", auth.home, methods=["GET"])
    # forks before runs: its GET .../runs/{id}/fork is more specific than the confirmation pages'
    # .../runs/{id}/{action}.
    for module in (auth, forks, compare, runs, states, catalog):
        router.include_router(module.router)
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="dashboard-static")
    settings = app.state.context.settings
    app.state.login_limiter = LoginLimiter(
        settings.dashboard_login_max_failures, settings.dashboard_login_window_seconds
    )
    app.add_middleware(DashboardGuard, api_key=settings.state_manager_secret.get_secret_value())
