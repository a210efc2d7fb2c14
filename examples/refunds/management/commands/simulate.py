"""`manage.py simulate support-refund --runs 4200 --seed 7`: the worked example."""

import logging
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Play the worked example on simulated time: a support-refund workflow climbs from L1 "
        "to a capped L4 through the product's own services and SDK, then trips its breaker "
        "back to L3 (docs/worked-example.md)."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug", help="the workflow to create and play (it must not exist)")
        parser.add_argument("--runs", type=int, default=4200, help="tickets, one run each")
        parser.add_argument("--seed", type=int, default=7, help="the same seed, the same story")
        parser.add_argument(
            "--if-new",
            action="store_true",
            help="do nothing when the workflow exists already (make run uses it)",
        )

    def handle(self, *args, slug, runs, seed, if_new, **options):
        from django.core.exceptions import ValidationError

        from ladder.models import Workflow

        if not settings.LADDER_DEV_MODE:
            raise CommandError(
                "simulate writes a made-up shop's history (people, runs, promotions): it runs "
                "in development mode only (LADDER_DEV_MODE=1), never on a deployment's data"
            )
        try:
            Workflow._meta.get_field("slug").run_validators(slug)
        except ValidationError as exc:
            raise CommandError(
                f"{slug!r} is not a workflow slug: {' '.join(exc.messages)}"
            ) from None
        if if_new and Workflow.objects.filter(slug=slug).exists():
            self.stdout.write(f"{slug} exists already: the worked example was played before.")
            return
        from examples.refunds.story import Story
        from ladder.celery import app

        if app.conf.task_always_eager:  # kombu names the unused in-memory broker's host
            logging.getLogger("kombu.connection").setLevel(logging.ERROR)

        tty = sys.stderr.isatty()

        def progress(line: str) -> None:
            if tty:
                sys.stderr.write("\r\033[K" + line)
                sys.stderr.flush()

        def say(line: str) -> None:
            if tty:
                sys.stderr.write("\r\033[K")
            self.stdout.write(line)

        try:
            story = Story(slug=slug, runs=runs, seed=seed, say=say, progress=progress)
            result = story.play()
        except (ValueError, RuntimeError) as exc:
            raise CommandError(str(exc)) from exc
        last = result.promotion_ids[-1] if result.promotion_ids else None
        self.stdout.write(
            f"{result.runs:,} runs in {result.seconds:.0f} s; rung history: "
            + ", ".join(result.rung_changes)
        )
        if options["verbosity"] > 1:
            for what, seconds in result.spent.most_common():
                self.stdout.write(f"  {seconds:6.1f} s  {what}")
        if last:
            base = settings.LADDER_BASE_URL.rstrip("/")
            self.stdout.write(f"Dossier of the L4 promotion: {base}/promotions/{last}/dossier")
