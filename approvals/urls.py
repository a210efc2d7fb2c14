from django.urls import path, re_path

from approvals import audit_views, settings_views, views

urlpatterns = [
    path("", views.queue, name="queue"),
    path("runs/<str:run_id>/", views.run_detail, name="run"),
    path("runs/<str:run_id>/decide", views.run_decide, name="run-decide"),
    path("runs/<str:run_id>/replay", views.run_replay_view, name="run-replay"),
    path("workflows/<slug:slug>/roles/", views.workflow_roles, name="workflow-roles"),
    # With or without the trailing slash: a form posted to either keeps its data.
    re_path(
        r"^workflows/(?P<slug>[-a-zA-Z0-9_]+)/settings/?$",
        settings_views.workflow_settings,
        name="workflow-settings",
    ),
    path("audit/", audit_views.audit_queue, name="audit"),
    path("audit/<str:run_id>/", audit_views.audit_run, name="audit-run"),
]
