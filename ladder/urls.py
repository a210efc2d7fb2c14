from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path

from traces.api import api, api_not_found, submit_run_endpoint

# An error outside any view that says the database is unreachable is a 503, not a 500.
handler500 = "ladder.dbfaults.server_error"

urlpatterns = [
    # POST /api/v1/runs, the gateway's hot path, skips ninja's dispatch (traces/api.py).
    path("api/v1/runs", submit_run_endpoint),
    path("api/v1/", api.urls),
    re_path(r"^api/(?P<path>.*)$", api_not_found),
    path("admin/", admin.site.urls),
    # Sign in and out, and a password change for the signed-in. No password reset: it
    # needs mail, and its answers told which addresses have an account.
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "accounts/password_change/",
        auth_views.PasswordChangeView.as_view(),
        name="password_change",
    ),
    path(
        "accounts/password_change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("", include("approvals.urls")),
]
