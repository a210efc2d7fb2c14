import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from ladder.errors import Unprocessable
from ladder.models import Workflow
from ladder.policies import policy_read_json, problem_lines
from ladder.policy import policy_text
from traces.services.policy import policy_set


class Command(BaseCommand):
    help = (
        "Load a policy envelope (JSON) as the workflow's new policy version and print the "
        "version number. In force at L4/L5; a draft evaluated in shadow at L2/L3."
    )

    def add_arguments(self, parser):
        parser.add_argument("workflow", metavar="workflow-slug")
        parser.add_argument("file", help="the policy document as JSON; - reads standard input")
        parser.add_argument("--note", default="", help="what changed and why (kept with it)")

    def handle(self, *args, workflow, file, note, **options):
        found = Workflow.objects.filter(slug=workflow).first()
        if found is None:
            raise CommandError(f"unknown workflow '{workflow}'")
        try:
            text = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc.strerror}") from exc
        try:
            version = policy_set(
                workflow=found, document=policy_read_json(text), by=None, note=note
            )
        except Unprocessable as exc:
            lines = "\n".join(f"  {line}" for line in problem_lines(exc))
            raise CommandError(f"the policy was not saved:\n{lines}") from exc
        self.stdout.write(str(version.number))
        if options["verbosity"] > 1:
            from ladder.policies import version_policy

            policy = version_policy(version)
            for line in policy_text(policy) if policy else []:
                self.stderr.write(f"- {line}")
