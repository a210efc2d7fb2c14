"""The documented deployment: `gunicorn -c gunicorn.conf.py` (README, "Performance").

gthread's thread pool for every request, with long polls parked instead of held
(traces/server.py). 2 workers x 8 threads is what bench/gateway.py measures on 2 cores.
"""

import os

wsgi_app = "ladder.wsgi:application"
worker_class = "traces.server.LongPollWorker"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
keepalive = 5
graceful_timeout = 5
