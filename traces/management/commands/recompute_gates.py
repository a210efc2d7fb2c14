import time

from django.core.management.base import BaseCommand, CommandError

from ladder.models import GateSnapshot, Workflow
from traces.services.gates import gates_recompute_all


class Command(BaseCommand):
    help = (
        "Compute a gate snapshot for every workflow (or the ones named) from its runs "
        "and print each verdict (docs/gates.md)."
    )

    def add_arguments(self, parser):
        parser.add_argument("slugs", nargs="*", help="workflow slugs (default: all)")
        parser.add_argument("--quiet", action="store_true", help="print only the totals")

    def handle(self, *args, slugs, quiet, **options):
        workflows = list(Workflow.objects.order_by("slug"))
        if slugs:
            known = {w.slug: w for w in workflows}
            unknown = [s for s in slugs if s not in known]
            if unknown:
                raise CommandError(f"unknown workflow(s): {', '.join(unknown)}")
            workflows = [known[s] for s in slugs]
        started = time.perf_counter()
        snapshots = gates_recompute_all(trigger=GateSnapshot.Trigger.COMMAND, workflows=workflows)
        took = time.perf_counter() - started
        if not quiet:
            for workflow, snap in zip(workflows, snapshots, strict=True):
                self._show(workflow, snap)
        eligible = sum(s.eligible for s in snapshots)
        self.stdout.write(
            self.style.SUCCESS(
                f"{len(snapshots)} snapshot(s) in {took:.2f} s; {eligible} workflow(s) eligible"
            )
        )

    def _show(self, workflow, snap) -> None:
        if snap.target_rung is None:
            self.stdout.write(f"{workflow.slug}: L{snap.rung}, the top rung")
            return
        head = "eligible" if snap.eligible else "not eligible"
        self.stdout.write(f"{workflow.slug}: L{snap.rung} -> L{snap.target_rung} {head}")
        for gate in snap.gates:
            self.stdout.write(f"  [{gate['verdict']}] {gate['label']}: {gate['sentence']}")
