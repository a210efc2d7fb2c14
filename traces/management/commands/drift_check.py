import time

from django.core.management.base import BaseCommand, CommandError

from ladder.models import DriftCheck, Workflow
from ladder.rungs import Rung
from traces.services.drift import drift_check_all


class Command(BaseCommand):
    help = (
        "Run a drift check of every L4/L5 workflow (or of the ones named), and hold L5 "
        "workflows to continuous evals; print each check (docs/drift.md)."
    )

    def add_arguments(self, parser):
        parser.add_argument("slugs", nargs="*", help="workflow slugs (default: all at L4/L5)")
        parser.add_argument("--quiet", action="store_true", help="print only the totals")

    def handle(self, *args, slugs, quiet, **options):
        workflows = None
        if slugs:
            known = {w.slug: w for w in Workflow.objects.filter(slug__in=slugs)}
            unknown = [s for s in slugs if s not in known]
            if unknown:
                raise CommandError(f"unknown workflow(s): {', '.join(unknown)}")
            below = [s for s in slugs if known[s].rung < Rung.L4]
            if below:
                raise CommandError(
                    f"drift is checked at L4 and L5 only: {', '.join(below)} stand(s) lower"
                )
            workflows = [known[s] for s in slugs]
        started = time.perf_counter()
        checks = drift_check_all(trigger=DriftCheck.Trigger.COMMAND, workflows=workflows)
        took = time.perf_counter() - started
        if not quiet:
            for check in checks:
                self._show(check)
        breached = sum(c.breached for c in checks)
        self.stdout.write(
            self.style.SUCCESS(f"{len(checks)} drift check(s) in {took:.2f} s; {breached} breached")
        )

    def _show(self, check: DriftCheck) -> None:
        head = "DRIFT" if check.breached else "no drift"
        self.stdout.write(f"{check.workflow.slug}: L{check.rung} {head}")
        for c in check.checks:
            self.stdout.write(f"  [{c['verdict']}] {c['label']}: {c['sentence']}")
