from django.core.management.base import BaseCommand, CommandError

from ladder.models import Workflow
from traces.services.tokens import token_create


class Command(BaseCommand):
    help = "Create an agent API token scoped to the given workflows and print it (once)."

    def add_arguments(self, parser):
        parser.add_argument("workflows", nargs="+", metavar="workflow-slug")
        parser.add_argument("--name", default="", help="a label for the token")

    def handle(self, *args, workflows, name, **options):
        found = list(Workflow.objects.filter(slug__in=workflows))
        missing = sorted(set(workflows) - {w.slug for w in found})
        if missing:
            raise CommandError(f"unknown workflow(s): {', '.join(missing)}")
        _token, raw = token_create(
            name=name or "agent for " + ", ".join(workflows), workflows=found
        )
        self.stdout.write(raw)
