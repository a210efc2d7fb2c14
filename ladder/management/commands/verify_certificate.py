from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ladder import certificates

NO_EXPIRY = "no expiry (below L4 a person decides every action)"


def _when(at: datetime | None) -> str:
    return certificates.timestamp(at) if at is not None else "—"


class Command(BaseCommand):
    help = (
        "Verify an autonomy certificate file offline (no database): its Ed25519 signature "
        "against the published public key, and whether it has expired. Exit 0 when the "
        "signature holds (expired or not), 1 with the reason when it does not."
    )
    # Offline: an examiner runs this with no database, so no check may reach for one.
    requires_system_checks: list = []

    def add_arguments(self, parser):
        parser.add_argument("file", help="the certificate file (JSON) to verify")
        parser.add_argument(
            "--public-key",
            metavar="PEMFILE",
            help="the public key to verify against (PEM, as GET /api/v1/certificates/"
            "public-key serves it); default: this installation's key",
        )

    def handle(self, *args, **options):
        if options["public_key"]:
            try:
                text = Path(options["public_key"]).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise CommandError(f"cannot read the public key: {exc}") from None
            try:
                public = certificates.public_key_from_pem(text)
            except certificates.CertificateError as exc:
                raise CommandError(f"{options['public_key']}: {exc}") from None
        else:
            public = certificates.private_key_from_pem(settings.LADDER_CERTIFICATE_KEY).public_key()
        try:
            document = Path(options["file"]).read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read the certificate: {exc}") from None
        try:
            verified = certificates.certificate_verify(document, public)
        except certificates.CertificateError as exc:
            raise CommandError(f"NOT VALID: {exc}") from None
        now = datetime.now(UTC)
        c = verified.payload
        workflow = c["workflow"] if isinstance(c["workflow"], dict) else {}
        who = c["approved_by"]
        approver = (
            f"{who.get('name')} (user id {who.get('id')})"
            if isinstance(who, dict)
            else "the system"
        )
        if verified.valid_until is None:
            status = NO_EXPIRY
        elif verified.expired(now):
            status = f"EXPIRED at {_when(verified.valid_until)}"
        else:
            status = f"valid until {_when(verified.valid_until)}"
        policy = c["policy_version"]
        lines = [
            f"Signature valid: autonomy certificate {c['serial']}",
            f"  workflow:       {workflow.get('slug')} ({workflow.get('name')})",
            f"  rung:           L{c['rung']}",
            f"  policy version: {policy if policy is not None else 'none'}",
            f"  evidence:       sha256 {c['evidence_hash']}",
            f"  approved by:    {approver}",
            f"  issued at:      {_when(verified.issued_at)}",
            f"  as of now:      {status}",
            f"  signed by key:  {c['key_id']}",
        ]
        if c["promotion"]:
            lines.insert(7, f"  promotion:      {c['promotion']}")
        self.stdout.write("\n".join(lines))
