"""The example shop: customers, their orders, and the support tickets they write.

Everything is drawn from one `random.Random(seed)`, so a seed gives the same shop and the
same tickets every time. Each ticket carries its truth (what a careful person would do)
for the simulated reviewers and the later outcome labels; the agent never sees it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from examples.refunds.models import Customer, Order

FIRST = [
    "Maria",
    "Omar",
    "Yuki",
    "Liam",
    "Chloe",
    "Sofia",
    "Mateo",
    "Amara",
    "Jonas",
    "Ingrid",
    "Priya",
    "Tomasz",
    "Aisha",
    "Lucas",
    "Elena",
    "Kofi",
    "Hannah",
    "Diego",
    "Mei",
    "Noah",
    "Fatima",
    "Pieter",
    "Olga",
    "Rafael",
    "Saanvi",
    "Henrik",
    "Leila",
    "Marco",
    "Zeynep",
    "Samuel",
    "Ana",
    "Dmitri",
    "Nora",
    "Kwame",
    "Julia",
    "Hugo",
    "Lina",
    "Arjun",
    "Beatriz",
]
LAST = [
    "Novak",
    "Silva",
    "Jansen",
    "Murphy",
    "Dubois",
    "Rossi",
    "Keller",
    "Okafor",
    "Lindqvist",
    "Kowalski",
    "Haddad",
    "Moreau",
    "Fischer",
    "Tanaka",
    "Garcia",
    "Mensah",
    "Nielsen",
    "Costa",
    "Ivanova",
    "Berger",
    "Schmidt",
    "Oliveira",
    "Papadopoulos",
    "Andersson",
    "Nakamura",
    "Brennan",
    "Weber",
    "Santos",
    "Horvat",
    "Larsen",
]
STREETS = [
    *["Lindenstraße", "Rue des Lilas", "Calle Mayor", "Kastanjelaan", "Via Roma", "Baker Street"],
    *["Storgatan", "Ulica Długa", "Avenida da Liberdade", "Hauptstraße"],
]
CITIES = ["Berlin", "Lyon", "Madrid", "Utrecht", "Bologna", "Leeds", "Uppsala", "Gdańsk", "Porto"]
DOMAINS = ["example.com", "mail.example.org", "example.net", "kunde.example.de", "example.co.uk"]

# What tickets are about, with their share of the traffic.
KINDS = {
    "damaged": 0.30,  # refund the damaged item
    "late": 0.18,  # a goodwill refund of 15% of the order
    "duplicate_charge": 0.12,  # charged twice: refund the whole order
    "return_question": 0.25,  # how to return something: a reply, no refund
    "refund_status": 0.15,  # where is my refund: a reply, no refund
}
REFUND_KINDS = frozenset({"damaged", "late", "duplicate_charge"})


@dataclass
class Ticket:
    number: int
    arrives: datetime
    kind: str
    customer_name: str
    email: str
    address: str
    order_id: str
    order_total: Decimal
    item_price: Decimal
    fraud_adjacent: bool
    text: str
    # The truth: what a careful person would do with this ticket.
    action: str = ""
    amount: Decimal | None = None

    @property
    def wants_refund(self) -> bool:
        return self.kind in REFUND_KINDS


def _money(value: float) -> Decimal:
    return Decimal(str(round(value, 2))).quantize(Decimal("0.01"))


class Shop:
    """The shop's customers and orders (written to its ledger as they are made) and a
    stream of tickets, all from one seed."""

    def __init__(self, seed: int, *, prefix: str = "A") -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.prefix = prefix  # order and customer numbers: one shop's never meet another's
        self.tickets = 0
        self.customers: list[tuple[Customer, str, str, str]] = []  # customer, name, email, address
        self.frequent_refunders: set[int] = set()

    def _customer(self) -> int:
        rng = self.rng
        if self.customers and rng.random() < 0.35:  # a returning customer
            return rng.randrange(len(self.customers))
        first, last = rng.choice(FIRST), rng.choice(LAST)
        n = len(self.customers)
        email = f"{first}.{last}{n % 97}@{rng.choice(DOMAINS)}".lower()
        address = f"{rng.choice(STREETS)} {rng.randint(1, 180)}, {rng.choice(CITIES)}"
        customer, _ = Customer.objects.get_or_create(reference=f"{self.prefix}-C{n + 1:05d}")
        self.customers.append((customer, f"{first} {last}", email, address))
        if rng.random() < 0.04:  # a few customers ask for refunds far too often
            self.frequent_refunders.add(n)
        return n

    def ticket(self, arrives: datetime) -> Ticket:
        rng = self.rng
        index = self._customer()
        customer, name, email, address = self.customers[index]
        total = _money(rng.lognormvariate(4.2, 0.75))  # median ~67 EUR, some in the hundreds
        total = max(total, Decimal("9.90"))
        items = rng.randint(1, 4)
        item_price = _money(float(total) * rng.uniform(0.3, 1.0)) if items > 1 else total
        self.tickets += 1
        number = f"{self.prefix}-{self.tickets:06d}"
        order = Order.objects.create(
            number=number,
            customer=customer,
            total=total,
            currency="EUR",
            placed_at=arrives - timedelta(days=rng.randint(2, 20)),
        )
        kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
        fraud = index in self.frequent_refunders or rng.random() < 0.03
        ticket = Ticket(
            number=self.tickets,
            arrives=arrives,
            kind=kind,
            customer_name=name,
            email=email,
            address=address,
            order_id=order.number,
            order_total=total,
            item_price=item_price,
            fraud_adjacent=fraud and kind in REFUND_KINDS,
            text=_text(rng, kind, name, email, address, order.number, item_price, total),
        )
        if kind == "damaged":
            ticket.action, ticket.amount = "refund.issue", item_price
        elif kind == "late":
            ticket.action, ticket.amount = "refund.issue", _money(float(total) * 0.15)
        elif kind == "duplicate_charge":
            ticket.action, ticket.amount = "refund.issue", total
        else:
            ticket.action = "reply.send"
        return ticket


def _text(rng, kind, name, email, address, order, item, total) -> str:
    first = name.split()[0]
    body = {
        "damaged": f"the mug in order {order} arrived broken (it cost {item} EUR). "
        "Photos attached. I'd like my money back for it.",
        "late": f"order {order} came nine days late and I had to buy the gift elsewhere. "
        "Not happy.",
        "duplicate_charge": f"my card was charged twice for order {order} ({total} EUR "
        "each time). Please refund the second charge.",
        "return_question": f"how do I send back the jacket from order {order}? It is too small.",
        "refund_status": f"you said you would refund order {order}. When will I see it?",
    }[kind]
    sign = rng.choice(["Thanks", "Best", "Regards", "Kind regards", "Cheers"])
    return (
        f"Hi, this is {name}, {address}. {body[0].upper() + body[1:]} You can reach me at {email}. "
        f"{sign}, {first}"
    )
