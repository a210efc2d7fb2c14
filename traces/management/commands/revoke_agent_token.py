from django.core.management.base import BaseCommand, CommandError

from ladder.errors import Unprocessable
from traces.services.tokens import token_revoke


class Command(BaseCommand):
    help = (
        "Revoke an agent token by its prefix (the first 12 characters, as `agent_tokens` "
        "lists them) or the whole token. Every gateway process refuses it from its next request."
    )

    def add_arguments(self, parser):
        parser.add_argument("prefix", help="the token's first 12 characters, or all of it")

    def handle(self, *args, prefix, **options):
        try:
            token = token_revoke(prefix=prefix)
        except Unprocessable as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"revoked {token.prefix}… ({token.name})")
