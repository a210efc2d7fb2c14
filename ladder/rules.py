"""The tables a workflow's rules live in: what the gateway decides a run by.

The gateway keeps each workflow's rules in memory (traces.fastpath) and acts on them only
while `Workflow.rules_version` still has the value it read them at; database triggers
bump that number on every change to a row of these tables (migration 0002), whoever
writes it. A table the gateway starts to read to decide (policy versions, say) goes in
this list together with its trigger, or the memo would go on deciding by stale rules:
tests/ladder/test_rule_tables.py derives the tables from the gateway's own read and
fails until both are done.
"""

RULE_TABLES = (
    "ladder_workflow",
    "ladder_actiontype",
    "ladder_policyversion",
    # L4/L5 runs are handled at that rung only under a valid autonomy certificate.
    "ladder_certificate",
)
# Rule tables whose rows never change once written (a new row is a new version): their
# INSERT bumps rules_version, and triggers refuse UPDATE and DELETE outright.
APPEND_ONLY_RULE_TABLES = ("ladder_policyversion", "ladder_certificate")
