from django.contrib import admin
from django.urls import include, path, re_path

from traces.api import api, api_not_found

urlpatterns = [
    path("api/v1/", api.urls),
    re_path(r"^api/(?P<path>.*)$", api_not_found),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("approvals.urls")),
]
