from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured


class TracesConfig(AppConfig):
    name = "traces"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from traces import names

        # Every process that may store a run (web workers, Celery, commands) needs the
        # name lists: load them now, before a server forks its workers (they then share
        # the memory), and refuse to start without them rather than store names in clear.
        try:
            names.gazetteer()
        except names.NamesDataMissing as exc:
            raise ImproperlyConfigured(str(exc)) from exc
