import sys

from django.core.management.base import BaseCommand, CommandError

from ladder.models import Workflow
from traces.services.evals import EvalImportRefused, eval_cases_import


class Command(BaseCommand):
    help = (
        "Import eval cases into a workflow's eval set from JSON Lines (a file, or - for "
        "stdin): every line is checked, and nothing is stored if any line is bad "
        "(docs/evals.md)."
    )

    def add_arguments(self, parser):
        parser.add_argument("workflow", metavar="workflow-slug")
        parser.add_argument("file", help="a .jsonl file, or - to read standard input")

    def handle(self, *args, workflow, file, **options):
        found = Workflow.objects.filter(slug=workflow).first()
        if found is None:
            raise CommandError(f"unknown workflow '{workflow}'")
        try:
            if file == "-":
                text = sys.stdin.read()
            else:
                with open(file, encoding="utf-8") as handle:
                    text = handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {file}: {exc}") from None
        try:
            stored = eval_cases_import(workflow=found, text=text, by=None)
        except EvalImportRefused as exc:
            for number, problem in exc.problems:
                where = f"line {number}: " if number else ""
                self.stderr.write(f"{where}{problem}")
            raise CommandError(
                f"nothing was imported: {len(exc.problems)} problem(s) in {file}"
            ) from None
        self.stdout.write(f"{len(stored)} eval case(s) stored in {found.slug}.")
