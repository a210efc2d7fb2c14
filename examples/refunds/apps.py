from django.apps import AppConfig


class RefundsConfig(AppConfig):
    name = "examples.refunds"
    label = "refunds"
    verbose_name = "Worked example: the shop's refunds ledger"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from examples.refunds import clock

        clock.follow_in_worker()
