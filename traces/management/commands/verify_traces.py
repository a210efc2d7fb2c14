from django.core.management.base import BaseCommand, CommandError

from traces.models import Run
from traces.selectors import chain_problems


class Command(BaseCommand):
    help = "Walk every trace chain and report each broken or missing link (exit 1 on any)."

    def handle(self, *args, **options):
        broken = 0
        for run_id, problem in chain_problems():
            broken += 1
            where = f"seq {problem.seq}" if problem.seq is not None else "chain"
            self.stdout.write(f"BROKEN run {run_id} {where}: {problem.problem}")
        total = Run.objects.count()
        if broken:
            raise CommandError(f"{broken} problem(s) found across {total} run(s)")
        self.stdout.write(self.style.SUCCESS(f"all {total} trace chain(s) verified"))
