from django.contrib import admin
from django.urls import include, path, re_path

from traces.api import api, api_not_found, submit_run_endpoint

urlpatterns = [
    # POST /api/v1/runs, the gateway's hot path, skips ninja's dispatch (traces/api.py).
    path("api/v1/runs", submit_run_endpoint),
    path("api/v1/", api.urls),
    re_path(r"^api/(?P<path>.*)$", api_not_found),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("approvals.urls")),
]
