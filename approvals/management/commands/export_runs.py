"""Export runs, trace events or reviews created in a date range (docs/history.md).

    manage.py export_runs --since 2026-11-01 --until 2026-11-30 --kind events \
        --format jsonl --output events.jsonl

The command is the system: it reads every workflow (or the one named). Rows are streamed
to the output as they are read, as the page's export does.
"""

from django.core.management.base import BaseCommand, CommandError

from approvals import exports, history
from ladder.models import Workflow


class Command(BaseCommand):
    help = "Export runs, trace events or reviews (redacted, as stored) as CSV or JSON Lines."

    def add_arguments(self, parser):
        parser.add_argument("--since", required=True, help="YYYY-MM-DD (from 00:00 UTC) or ISO")
        parser.add_argument(
            "--until", required=True, help="YYYY-MM-DD (through that whole day, UTC) or ISO"
        )
        parser.add_argument("--workflow", default="", help="a workflow's slug (default: all)")
        parser.add_argument("--kind", choices=exports.KINDS, default="runs")
        parser.add_argument("--format", choices=exports.FORMATS, default="csv")
        parser.add_argument("--output", default="-", help="a file, or - for stdout")

    def handle(self, *args, since, until, workflow, kind, format, output, **options):
        try:
            start = history.parse_moment(since, end=False)
            end = history.parse_moment(until, end=True)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if start >= end:
            raise CommandError("--until must not be before --since")
        every = frozenset(Workflow.objects.values_list("id", flat=True))
        if workflow and not Workflow.objects.filter(slug=workflow).exists():
            raise CommandError(f"no workflow {workflow!r}")
        scope = history.Scope(workflow_ids=every, decided_in=frozenset(), person_id=None)
        parsed = history.Parsed(
            filters=history.HistoryFilters(workflow=workflow), since=start, until=end
        )
        runs = history.history_runs(scope=scope, parsed=parsed)
        lines = exports.export_lines(kind=kind, fmt=format, runs=runs)
        if output == "-":
            for line in lines:
                self.stdout.write(line, ending="")
            self.stdout.flush()
            return
        # newline="": the csv module writes its own \r\n line ends.
        with open(output, "w", encoding="utf-8", newline="") as out:
            self._write(lines, out)

    def _write(self, lines, out) -> None:
        for line in lines:
            out.write(line)
        out.flush()
