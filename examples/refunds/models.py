"""The example shop's payments ledger: what the refund agent's actions change.

Customers are kept by a shop reference, never by name. A refund is written once per
idempotency key (the run's id, from the gateway's executor call), so a retried execution
pays nothing twice; a reversal is written once per refund.
"""

from decimal import Decimal

from django.db import models


class Customer(models.Model):
    reference = models.CharField(max_length=20, unique=True)  # "7F3-C00421"

    def __str__(self) -> str:
        return self.reference


class Order(models.Model):
    number = models.CharField(max_length=20, unique=True)  # "7F3-000421"
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="orders")
    total = models.DecimalField(max_digits=10, decimal_places=2)
    currency = models.CharField(max_length=3, default="EUR")
    placed_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.number

    def refunded(self) -> Decimal:
        """What has been paid back on this order and not reversed."""
        live = self.refunds.filter(reversal__isnull=True)
        return live.aggregate(s=models.Sum("amount"))["s"] or Decimal("0")


class Refund(models.Model):
    idempotency_key = models.CharField(max_length=100, unique=True)
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="refunds")
    amount = models.DecimalField(max_digits=10, decimal_places=2)
    currency = models.CharField(max_length=3)
    reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="refund_amount_positive")
        ]

    def __str__(self) -> str:
        return f"{self.amount} {self.currency} on {self.order_id}"


class Reversal(models.Model):
    """A refund taken back (a rollback drill's compensation, or a correction)."""

    idempotency_key = models.CharField(max_length=100, unique=True)
    refund = models.OneToOneField(Refund, on_delete=models.PROTECT, related_name="reversal")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"reversal of {self.refund_id}"
