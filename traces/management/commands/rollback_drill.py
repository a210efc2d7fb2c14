import time

from django.core.management.base import BaseCommand, CommandError

from ladder.errors import LadderError
from ladder.models import Workflow
from traces.models import RollbackDrill
from traces.services.drills import drill_start


class Command(BaseCommand):
    help = (
        "Run a timed rollback drill: revert a batch of the workflow's executed, reversible "
        "runs through their compensating actions (Celery workers), wait for it to finish "
        "and print its figures (docs/drills.md)."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug", help="the workflow's slug")
        parser.add_argument("--batch", type=int, default=50, help="runs to revert (default 50)")
        parser.add_argument(
            "--wait",
            type=float,
            default=300.0,
            help="seconds to wait for the drill to finish (default 300; 0: do not wait)",
        )

    def handle(self, *args, slug, batch, wait, **options):
        workflow = Workflow.objects.filter(slug=slug).first()
        if workflow is None:
            raise CommandError(f"unknown workflow: {slug}")
        if batch < 1:
            raise CommandError("--batch must be at least 1")
        try:
            drill = drill_start(
                workflow=workflow, batch=batch, actor=None, trigger=RollbackDrill.Trigger.COMMAND
            )
        except LadderError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"drill {drill.pk}: reverting {drill.picked} run(s) of {slug}")
        if wait <= 0:
            return
        deadline = time.monotonic() + wait
        while True:
            drill.refresh_from_db()
            if drill.finished or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if not drill.finished:
            raise CommandError(
                f"drill {drill.pk} still running after {wait:g} s: "
                f"{drill.succeeded} reverted, {drill.failed} failed so far (are workers up?)"
            )
        line = (
            f"drill {drill.pk}: size {drill.picked}, succeeded {drill.succeeded}, "
            f"failed {drill.failed}, duration {drill.duration_seconds:.2f} s, "
            f"gateway load {drill.load_rps:.1f} runs/s "
            f"({'under load' if drill.under_load else 'not under load'}): "
            f"{'PASSED' if drill.passed else 'FAILED'}"
        )
        if drill.passed:
            self.stdout.write(self.style.SUCCESS(line))
        else:
            raise CommandError(line)
