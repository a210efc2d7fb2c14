from django.core.management.base import BaseCommand

from traces.models import AgentToken


class Command(BaseCommand):
    help = "List agent tokens: prefix, name, workflows, created and revoked (never the token)."

    def handle(self, *args, **options):
        tokens = AgentToken.objects.prefetch_related("workflows").order_by("created_at", "id")
        for token in tokens:
            slugs = ",".join(sorted(w.slug for w in token.workflows.all()))
            revoked = f"revoked {token.revoked_at:%Y-%m-%d %H:%M}" if token.revoked_at else "active"
            self.stdout.write(
                f"{token.prefix}…\t{token.name}\t{slugs}\t"
                f"created {token.created_at:%Y-%m-%d %H:%M}\t{revoked}"
            )
