from django.urls import path, re_path

from approvals import (
    audit_views,
    backtest_views,
    drift_views,
    drill_views,
    eval_views,
    history_views,
    promotion_views,
    settings_views,
    stop_views,
    views,
    workflow_views,
)

urlpatterns = [
    path("", views.home, name="queue"),
    path("queue/", views.queue, name="queue-page"),
    path("runs/<str:run_id>/", views.run_detail, name="run"),
    path("runs/<str:run_id>/decide", views.run_decide, name="run-decide"),
    path("runs/<str:run_id>/replay", views.run_replay_view, name="run-replay"),
    path("runs/<str:run_id>/eval-case", eval_views.run_eval_case, name="run-eval-case"),
    path("workflows/<slug:slug>/roles/", views.workflow_roles, name="workflow-roles"),
    path("workflows/", workflow_views.workflow_list, name="workflows"),
    path("workflows/<slug:slug>/", workflow_views.workflow_detail, name="workflow"),
    path(
        "workflows/<slug:slug>/gates/recompute",
        workflow_views.workflow_gates_recompute,
        name="workflow-gates-recompute",
    ),
    path("workflows/<slug:slug>/demote", workflow_views.workflow_demote, name="workflow-demote"),
    path(
        "workflows/<slug:slug>/drift/check",
        drift_views.workflow_drift_check,
        name="workflow-drift-check",
    ),
    path(
        "workflows/<slug:slug>/promotion",
        workflow_views.workflow_promotion_request,
        name="workflow-promotion-request",
    ),
    path("workflows/<slug:slug>/stop", stop_views.workflow_stop_view, name="workflow-stop"),
    path("workflows/<slug:slug>/resume", stop_views.workflow_resume_view, name="workflow-resume"),
    path("promotions/", promotion_views.promotion_list, name="promotions"),
    path("promotions/<int:request_id>/", promotion_views.promotion_detail, name="promotion"),
    path(
        "promotions/<int:request_id>/decide",
        promotion_views.promotion_decide_view,
        name="promotion-decide",
    ),
    path(
        "promotions/<int:request_id>/withdraw",
        promotion_views.promotion_withdraw_view,
        name="promotion-withdraw",
    ),
    path(
        "workflows/<slug:slug>/certificates/<uuid:certificate_id>.json",
        workflow_views.workflow_certificate_file,
        name="workflow-certificate",
    ),
    path("workflows/<slug:slug>/policy/", workflow_views.workflow_policy, name="workflow-policy"),
    path(
        "workflows/<slug:slug>/policy.json",
        workflow_views.workflow_policy_json,
        name="workflow-policy-json",
    ),
    path(
        "workflows/<slug:slug>/policy/edit",
        workflow_views.workflow_policy_edit,
        name="workflow-policy-edit",
    ),
    # With or without the trailing slash: a form posted to either keeps its data.
    re_path(
        r"^workflows/(?P<slug>[-a-zA-Z0-9_]+)/settings/?$",
        settings_views.workflow_settings,
        name="workflow-settings",
    ),
    path("workflows/<slug:slug>/evals/", eval_views.workflow_evals, name="workflow-evals"),
    path("history/", history_views.history_page, name="history"),
    path("history/export", history_views.history_export, name="history-export"),
    path("audit/", audit_views.audit_queue, name="audit"),
    path("audit/<str:run_id>/", audit_views.audit_run, name="audit-run"),
    path("workflows/<slug:slug>/drills", drill_views.drills, name="drills"),
    path("workflows/<slug:slug>/drills/<int:drill_id>/", drill_views.drill_detail, name="drill"),
    path("workflows/<slug:slug>/backtests/", backtest_views.backtests, name="backtests"),
    path(
        "workflows/<slug:slug>/backtests/<int:backtest_id>/",
        backtest_views.backtest_detail,
        name="backtest",
    ),
]
