"""Bench-only WSGI entry point: the project's own app plus one minimal JSON endpoint.

`gunicorn bench.baseline:application` serves exactly what `ladder.wsgi` serves (same
settings, same middleware stack, same database connection handling), plus
`POST /bench/baseline`: parse the JSON body, insert it as one row, answer 201. That is the
floor any write endpoint of this stack pays, so the gateway is measured against it in the
same server process, with no edit to the project's urls.py.

The table is created by bench/gateway.py before the server starts (BASELINE_TABLE_SQL).
"""

import json
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ladder.settings")

BASELINE_TABLE_SQL = (
    "CREATE TABLE IF NOT EXISTS bench_baseline "
    "(id bigserial PRIMARY KEY, body jsonb, created_at timestamptz DEFAULT now())"
)


def _use_bench_urls() -> None:
    # Point the URL resolver here before the first request. Done on the settings object,
    # not in a settings module, so every other setting is the project's own, untouched.
    from django.conf import settings

    settings.ROOT_URLCONF = __name__


_use_bench_urls()
application = get_wsgi_application()

if os.environ.get("BENCH_WITHOUT_NAMES") == "1":
    # `bench/gateway.py --without-names`: the "before" half of an A/B on the same machine,
    # minutes apart: the gateway with name/address detection switched off in this bench
    # server only. The product has no such switch.
    from traces import names as _names

    _names.find_people_and_addresses = lambda text: []

# Below here Django is set up (get_wsgi_application ran django.setup()).
from django.db import connection  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.urls import include, path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402


@csrf_exempt
def baseline(request):
    if request.method != "POST":
        return JsonResponse({"error": "POST only"}, status=405)
    try:
        body = json.loads(request.body)
    except ValueError:
        return JsonResponse({"error": "invalid JSON"}, status=400)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO bench_baseline (body) VALUES (%s::jsonb) RETURNING id",
            [json.dumps(body)],
        )
        row_id = cursor.fetchone()[0]
    return JsonResponse({"id": row_id}, status=201)


def worker(request):
    # Which gunicorn worker holds this connection: the load generator asks once per
    # connection, before measuring, to spread its connections evenly (bench/README.md).
    return JsonResponse({"pid": os.getpid()})


urlpatterns = [
    path("bench/baseline", baseline),
    path("bench/worker", worker),
    path("", include("ladder.urls")),
]

# The same app under ASGI, only to compare servers (`bench/gateway.py --worker-class asgi
# --app bench.baseline:asgi_application`); the deployment is WSGI (bench/README.md).
from django.core.asgi import get_asgi_application  # noqa: E402

asgi_application = get_asgi_application()
