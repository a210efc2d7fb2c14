from django.core.management.base import BaseCommand

from ladder.services import certificate_key_id, certificate_public_key_pem


class Command(BaseCommand):
    help = (
        "Print the public key autonomy certificates are verified with (PEM), the same "
        "text GET /api/v1/certificates/public-key serves. --key-id prints its fingerprint."
    )
    requires_system_checks: list = []

    def add_arguments(self, parser):
        parser.add_argument("--key-id", action="store_true", help="print the key's sha256 id")

    def handle(self, *args, **options):
        if options["key_id"]:
            self.stdout.write(certificate_key_id())
        else:
            self.stdout.write(certificate_public_key_pem(), ending="")
