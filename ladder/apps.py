from django.apps import AppConfig


class LadderConfig(AppConfig):
    name = "ladder"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.signals import request_started

        from ladder import checks  # noqa: F401 - registers the deployment checks
        from ladder.dbfaults import close_dead_connections

        # After Django's own close_old_connections (connected at import of django.db).
        request_started.connect(close_dead_connections, dispatch_uid="ladder-dead-connections")
