"""The worked example: a small web shop's support desk (a payments ledger of customers,
orders, refunds and reversals) whose refund agent climbs the ladder (docs/worked-example.md)."""
